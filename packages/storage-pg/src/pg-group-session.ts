/**
 * A consumer-group member's session: one dedicated connection that holds the member's partition
 * locks and LISTENs for the group's and its topics' notifications. When the connection dies —
 * process killed, backend terminated, network cut — Postgres releases the locks and the member
 * is told (`onLost`) so it stops before it could commit anything (its commits would be fenced
 * anyway).
 */
import {
  IllegalGenerationError,
  type GroupSession,
  type GroupSessionEvents,
  type LiveMember,
  type MemberMetadata,
  type PartitionClaim,
} from '@annals/core';
import type pg from 'pg';
import { attachListeners } from './internal/listeners.js';
import { translatePgError } from './internal/pg-errors.js';
import type { Statement, Tables } from './plans.js';
import * as plans from './plans-groups.js';

export type SessionClient = pg.Client | pg.PoolClient;

export class PgGroupSession implements GroupSession {
  readonly groupId: string;
  readonly memberId: string;
  readonly #t: Tables;
  readonly #client: SessionClient;
  readonly #close: (client: SessionClient, broken: boolean) => Promise<void>;
  readonly #events: GroupSessionEvents;
  readonly #topics: Set<string>;
  readonly #held = new Set<string>();
  #lost: unknown;
  #left = false;
  #detach: () => void = () => {};
  #queue: Promise<unknown> = Promise.resolve();

  constructor(args: {
    tables: Tables;
    groupId: string;
    memberId: string;
    client: SessionClient;
    close: (client: SessionClient, broken: boolean) => Promise<void>;
    events: GroupSessionEvents;
    topics: readonly string[];
  }) {
    this.#t = args.tables;
    this.groupId = args.groupId;
    this.memberId = args.memberId;
    this.#client = args.client;
    this.#close = args.close;
    this.#events = args.events;
    this.#topics = new Set(args.topics);
    const client = this.#client;
    const onNotification = (message: pg.Notification) => {
      if (message.channel !== this.#t.channel || !message.payload) return;
      if (message.payload.startsWith('#g/')) {
        if (message.payload.slice(3) === this.groupId) this.#events.onGroupChange();
        return;
      }
      const slash = message.payload.lastIndexOf('/');
      const topic = message.payload.slice(0, slash);
      if (this.#topics.has(topic)) this.#events.onAppend(topic, Number(message.payload.slice(slash + 1)));
    };
    const onLost = (error: unknown) => {
      if (this.#lost !== undefined || this.#left) return;
      this.#lost = error ?? new Error('The group session connection ended.');
      this.#held.clear();
      this.#events.onLost(this.#lost);
    };
    // Taken off in leave(): a client of the application's pool goes back without them, or they
    // would pile up there and keep this session (and its consumer) reachable.
    this.#detach = attachListeners(client, { notification: onNotification, error: onLost, end: () => onLost(undefined) });
  }

  /** Joins: registers the member and LISTENs. */
  async start(m: MemberMetadata, applicationName: string): Promise<void> {
    await this.#run(plans.joinStatement(this.#t, this.groupId, this.memberId, { ...m, applicationName }));
    // Through #run: a connection lost here is a (retriable) ConnectionError, not a raw driver error
    // that would stop the consumer for good (issue 9: a reset right after the join).
    await this.#run({ text: `LISTEN ${this.#t.channelIdent}`, values: [] });
  }

  // One query at a time on the session, in call order.
  #run<R extends pg.QueryResultRow = any>(statement: Statement): Promise<pg.QueryResult<R>> {
    const next = this.#queue.then(async () => {
      if (this.#lost !== undefined) {
        throw new IllegalGenerationError(`Member ${this.memberId} lost its group session; it must rejoin.`, {
          groupId: this.groupId,
          cause: this.#lost,
        });
      }
      try {
        return await this.#client.query<R>(statement.text, statement.values);
      } catch (error) {
        throw translatePgError(error, { groupId: this.groupId });
      }
    });
    this.#queue = next.catch(() => {});
    return next;
  }

  async heartbeat(): Promise<LiveMember[]> {
    const beat = await this.#run(plans.heartbeatStatement(this.#t, this.groupId, this.memberId));
    if (beat.rowCount === 0) {
      throw new IllegalGenerationError(
        `Member ${this.memberId} was expired from group "${this.groupId}" (no heartbeat within its session timeout); it must rejoin.`,
        { groupId: this.groupId },
      );
    }
    await this.#run(plans.expireStatement(this.#t, this.groupId));
    const { rows } = await this.#run<plans.LiveMemberRow>(plans.liveMembersStatement(this.#t, this.groupId));
    return rows.map(plans.toLiveMember);
  }

  async claim(topic: string, partition: number): Promise<PartitionClaim> {
    const key = `${topic}/${partition}`;
    const locked = await this.#run<{ acquired: boolean }>(plans.tryLockStatement(this.#t, this.groupId, topic, partition));
    if (!locked.rows[0]?.acquired) return { acquired: false };
    try {
      await this.#run({ text: 'BEGIN', values: [] });
      // Waits (bounded) for a former owner's in-flight fenced commit; then bumps the generation.
      await this.#run({ text: `SET LOCAL lock_timeout = '5s'`, values: [] });
      const claimed = await this.#run<{ generation: string }>(plans.claimStatement(this.#t, this.groupId, topic, partition, this.memberId));
      await this.#run({ text: 'COMMIT', values: [] });
      // A new statement, a new snapshot: it sees the offset that commit wrote.
      const offset = await this.#run<{ committed_offset: string }>(plans.committedOffsetStatement(this.#t, this.groupId, topic, partition));
      this.#held.add(key);
      const committed = offset.rows[0]?.committed_offset;
      return { acquired: true, generation: BigInt(claimed.rows[0]!.generation), committedOffset: committed === undefined ? null : BigInt(committed) };
    } catch (error) {
      await this.#run({ text: 'ROLLBACK', values: [] }).catch(() => {});
      await this.#run(plans.unlockStatement(this.#t, this.groupId, topic, partition)).catch(() => {});
      if ((error as { retriable?: boolean }).retriable) return { acquired: false };
      throw error;
    }
  }

  async release(topic: string, partition: number): Promise<void> {
    const key = `${topic}/${partition}`;
    if (!this.#held.has(key)) return;
    this.#held.delete(key);
    await this.#run(plans.releaseStatement(this.#t, this.groupId, topic, partition, this.memberId));
    await this.#run(plans.unlockStatement(this.#t, this.groupId, topic, partition));
  }

  async leave(): Promise<void> {
    if (this.#left) return;
    this.#left = true;
    let broken = this.#lost !== undefined;
    if (!broken) {
      try {
        for (const s of plans.leaveStatements(this.#t, this.groupId, this.memberId)) await this.#client.query(s.text, s.values);
        await this.#client.query('SELECT pg_advisory_unlock_all()');
        await this.#client.query(`UNLISTEN ${this.#t.channelIdent}`);
      } catch {
        // Not cleaned up (a timeout, a lock wait cut short): the connection must be closed, not
        // reused — its session-level partition locks and LISTEN die only with it. A client of
        // the application's pool is destroyed, never handed back still holding them.
        broken = true;
      }
    }
    this.#held.clear();
    this.#detach();
    await this.#close(this.#client, broken);
  }
}
