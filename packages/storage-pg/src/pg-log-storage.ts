/**
 * `PgLogStorage`: the storage port on PostgreSQL.
 *
 * Hot paths (append, fetch) use `pg` directly with statements from `plans.ts`; the application's
 * own writes go through a Kysely handle (`tx.db`) bound to the same connection and transaction.
 * Appends outside a transaction are one autocommitted statement (one round trip); inside one,
 * the caller (the client runtime) buffers publishes and appends them just before COMMIT, so head
 * locks are held for as short a time as possible.
 */
import {
  ConcurrentTransactionsError,
  ConnectionError,
  DEFAULT_TOPIC_CONFIG,
  GroupNotEmptyError,
  IllegalGenerationError,
  InvalidOptionsError,
  InvalidPartitionsError,
  InvalidTransactionStateError,
  NotConnectedError,
  OutOfOrderSequenceError,
  ProducerFencedError,
  TopicAlreadyExistsError,
  TransactionTimeoutError,
  UnknownTopicOrPartitionError,
  resolveTopicConfig,
  type AppendListener,
  type AppendOptions,
  type CommitFence,
  type CommittedOffset,
  type GroupDescription,
  type GroupSession,
  type GroupSessionEvents,
  type LagQuery,
  type LagSnapshot,
  type MemberMetadata,
  type DeferredTransaction,
  type OffsetCommit,
  type FetchLimits,
  type FetchResult,
  type LogStorage,
  type PartitionAppend,
  type PartitionAppendResult,
  type PartitionWatermarks,
  type ProducerIdentity,
  type StorageTransaction,
  type StorageTransactionOptions,
  type StoredRecord,
  type TopicConfig,
  type TopicDescription,
  type TopicSpec,
  type SnapshotWrite,
  type StreamAppendOptions,
  type StreamAppendResult,
  type StreamExpectation,
  type StreamReadOptions,
  type StreamSlice,
  type CleanerStorage,
} from '@annals/core';
import { Kysely, PostgresDialect } from 'kysely';
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { decodeHeaders, encodeHeaders } from './internal/headers.js';
import { validateSchemaName } from './internal/ident.js';
import { attachListeners } from './internal/listeners.js';
import { isConnectionFailure, translateCommitError, translatePgError } from './internal/pg-errors.js';
import { migrateToLatest } from './migrations.js';
import { PgSchemaRegistry } from './pg-schema-registry.js';
import { PgGroupSession, type SessionClient } from './pg-group-session.js';
import { PgProjectionStore } from './pg-projection-store.js';
import { acquirePgCleaner } from './pg-cleaner.js';
import * as plans from './plans.js';
import { createHash } from 'node:crypto';
import {
  readStreamStatement,
  saveSnapshotStatement,
  deleteSnapshotsStatement,
  streamAppendBatchStatement,
  streamAppendOneStatement,
  streamAppendStatement,
  streamTables,
  type StreamAppendBatchRow,
  type StreamAppendOneRow,
  type StreamBatchEntry,
  type StreamCheck,
  type StreamAppendRow,
  type StreamReadRow,
  type StreamTables,
} from './plans-aggregates.js';
import { interpretStreamAppend, interpretStreamAppendOne, interpretStreamRead, prepareStreamAppend, singleStream } from './pg-streams.js';
import {
  commitOffsetsStatement,
  deleteGroupStatements,
  describeGroupStatement,
  describeLagStatement,
  fetchCommittedStatement,
  listGroupsStatement,
  liveMembersStatement,
  toLiveMember,
  type LiveMemberRow,
} from './plans-groups.js';

/** Options of {@link PgLogStorage}: exactly one of `connectionString`, `pool` or `connect`. */
export interface PgLogStorageInput {
  /** A PostgreSQL URL, e.g. `postgres://user@host:5432/db`. */
  readonly connectionString?: string;
  /** A pool you own. Annals never ends it. */
  readonly pool?: pg.Pool;
  /** Resolves a connection string when `connect()` runs (used by the embedded server). */
  readonly connectionStringProvider?: () => Promise<string>;
  /** Schema holding the log's tables. @default 'annals' */
  readonly schema?: string;
  /** Size of the pool Annals creates (ignored with `pool`). @default 10 */
  readonly poolSize?: number;
  /** Apply pending migrations on `connect()`. @default true */
  readonly migrate?: boolean;
  /** Milliseconds before a connection attempt fails. @default 10000 */
  readonly connectionTimeoutMs?: number;
  /**
   * Least milliseconds between two wake-ups (the NOTIFY sent after appends commit, which wakes
   * readers and consumers). Appends committed meanwhile share the next wake-up, so a fast writer
   * sends one every `wakeupIntervalMs` rather than one per append; a reader may learn of a record
   * up to this much later. 0 sends each as soon as the previous one is acknowledged.
   * @default 1
   */
  readonly wakeupIntervalMs?: number;
  /**
   * How long a watcher's registration lasts (a reader or consumer waiting for new records of a
   * topic). Appends send wake-ups only for partitions with a live registration, so producing to a
   * topic nobody is waiting on costs no NOTIFY; a watching process renews its registration every
   * quarter of this. A process that dies leaves it to lapse after at most this long.
   * @default 60000
   */
  readonly watchLeaseMs?: number;
}

interface ResolvedOptions {
  readonly connectionString: string | undefined;
  readonly pool: pg.Pool | undefined;
  readonly connectionStringProvider: (() => Promise<string>) | undefined;
  readonly schema: string;
  readonly poolSize: number;
  readonly migrate: boolean;
  readonly connectionTimeoutMs: number;
  readonly wakeupIntervalMs: number;
  readonly watchLeaseMs: number;
}

function resolveOptions(input: PgLogStorageInput): ResolvedOptions {
  const sources = [input.connectionString, input.pool, input.connectionStringProvider].filter((x) => x !== undefined);
  if (sources.length !== 1) {
    throw new InvalidOptionsError(
      'postgres(...) needs exactly one of { connectionString } or { pool } (or use embeddedPostgres() for a local server).',
    );
  }
  const poolSize = input.poolSize ?? 10;
  if (!Number.isInteger(poolSize) || poolSize < 2) {
    throw new InvalidOptionsError(`poolSize must be an integer ≥ 2, got ${String(input.poolSize)}.`);
  }
  const connectionTimeoutMs = input.connectionTimeoutMs ?? 10_000;
  if (!Number.isInteger(connectionTimeoutMs) || connectionTimeoutMs < 1) {
    throw new InvalidOptionsError(`connectionTimeoutMs must be a positive integer, got ${String(input.connectionTimeoutMs)}.`);
  }
  const wakeupIntervalMs = input.wakeupIntervalMs ?? 1;
  if (typeof wakeupIntervalMs !== 'number' || !Number.isFinite(wakeupIntervalMs) || wakeupIntervalMs < 0 || wakeupIntervalMs > 1000) {
    throw new InvalidOptionsError(`wakeupIntervalMs must be a number of milliseconds from 0 to 1000, got ${String(input.wakeupIntervalMs)}.`);
  }
  const watchLeaseMs = input.watchLeaseMs ?? 60_000;
  if (!Number.isInteger(watchLeaseMs) || watchLeaseMs < 1_000 || watchLeaseMs > 3_600_000) {
    throw new InvalidOptionsError(`watchLeaseMs must be an integer number of milliseconds from 1000 to 3600000, got ${String(input.watchLeaseMs)}.`);
  }
  return Object.freeze({
    connectionString: input.connectionString,
    pool: input.pool,
    connectionStringProvider: input.connectionStringProvider,
    schema: validateSchemaName(input.schema ?? 'annals'),
    poolSize,
    migrate: input.migrate ?? true,
    connectionTimeoutMs,
    wakeupIntervalMs,
    watchLeaseMs,
  });
}

const guardedClients = new WeakSet<pg.PoolClient>();

/**
 * Checks a client out of a pool with an 'error' listener on it before anything else can run.
 *
 * pg-pool removes its own listener as it hands a client over. A backend that dies between two of
 * our queries then emits 'error' on a client nobody listens to, which Node turns into an uncaught
 * exception. Attaching the listener after `await pool.connect()` is too late for one case: a new
 * backend terminated just after its startup can send its FATAL in the same packet as
 * ReadyForQuery, and the parser emits it in the same tick as the hand-over, before any promise
 * continuation runs. So the listener goes on inside pg-pool's callback, synchronously. Failures
 * still reach callers, through their next query.
 */
function checkoutGuarded(pool: pg.Pool): Promise<pg.PoolClient> {
  return new Promise((resolve, reject) => {
    pool.connect((error, client) => {
      if (error || !client) return reject(error ?? new Error('pg-pool handed over no client.'));
      if (!guardedClients.has(client)) {
        guardedClients.add(client);
        client.on('error', () => {});
      }
      resolve(client);
    });
  });
}

type AppendRow = plans.AppendResultRow;

/**
 * Append results whose partition had no live watch lease as its head moved: no wake-up is sent
 * for them after the commit. (Kept beside the results, not on them: callers see the port's shape.)
 */
const UNWATCHED = new WeakSet<PartitionAppendResult>();

/** Marks `result` unwatched when the statement said so (`w` false or null); unknown (`undefined`) wakes. */
function withLease<T extends PartitionAppendResult>(result: T, watched: boolean | null | undefined): T {
  if (watched === false || watched === null) UNWATCHED.add(result);
  return result;
}

/** "no partition of relation … found for row": an append reached offsets with no segment yet. */
function isMissingSegment(error: unknown): boolean {
  return (error as { code?: string })?.code === '23514' && /no partition of relation/.test((error as Error).message ?? '');
}

/** Rows per append statement: 4 parameters each stay well under Postgres's 65,535. */
const MAX_ROWS_PER_STATEMENT = 8_000;
/** Lean stream appends one storage runs at once; more queue and leave together (`#leanStreamAppend`). */
const STREAM_APPENDS_IN_FLIGHT = 2;
/** At most this many appends in one batch statement. */
const STREAM_BATCH_MAX = 64;

/** A lean stream append: one stream, its own records (see `streamAppendOneStatement`). */
interface LeanStreamAppend {
  readonly entry: StreamBatchEntry;
  readonly appends: readonly PartitionAppend[];
  readonly heads: ReadonlyArray<{ topic: string; partition: number }>;
  readonly stream: StreamExpectation;
  readonly check: StreamCheck;
}
type StreamAppendOneVerdict = ReturnType<typeof interpretStreamAppendOne>;
interface QueuedStreamAppend extends LeanStreamAppend {
  readonly resolve: (verdict: StreamAppendOneVerdict) => void;
  readonly reject: (error: unknown) => void;
}

// int8 as string (we turn offsets into bigint ourselves); bytea as Buffer (pg's default).
const toBigInt = (s: string): bigint => BigInt(s);

/** A Postgres pool adapter that always hands out one client: how `tx.db` shares our transaction. */
function singleClientPool(client: pg.PoolClient) {
  const lease = {
    query: client.query.bind(client),
    release: () => {},
  };
  return { connect: async () => lease, end: async () => {} };
}

/** The Postgres implementation of the storage port. Create it with `postgres(...)`. */
export class PgLogStorage<DB = unknown> implements LogStorage<Kysely<DB>> {
  readonly #options: ResolvedOptions;
  readonly #tables: plans.Tables;
  #pool: pg.Pool | undefined;
  #ownsPool = false;
  #connecting: Promise<void> | undefined;
  #listener: PgListener | undefined;

  constructor(input: PgLogStorageInput) {
    this.#options = resolveOptions(input);
    this.#tables = plans.tables(this.#options.schema);
  }

  get description(): string {
    return `postgres (schema ${this.#options.schema})`;
  }

  /** The schema holding the log's tables. */
  get schema(): string {
    return this.#options.schema;
  }

  /** The pool in use (after `connect()`). */
  get pool(): pg.Pool {
    if (!this.#pool) throw new NotConnectedError('The Postgres storage is not connected: call connect() first.');
    return this.#pool;
  }

  connect(): Promise<void> {
    this.#connecting ??= this.#doConnect().catch((error) => {
      this.#connecting = undefined;
      throw translatePgError(error);
    });
    return this.#connecting;
  }

  async #doConnect(): Promise<void> {
    const o = this.#options;
    if (o.pool) {
      this.#pool = o.pool;
      this.#ownsPool = false;
    } else {
      const connectionString = o.connectionString ?? (await o.connectionStringProvider!());
      const pool = new pg.Pool({
        connectionString,
        max: o.poolSize,
        allowExitOnIdle: true,
        connectionTimeoutMillis: o.connectionTimeoutMs,
      });
      // An idle client whose server went away emits 'error'; the pool drops it and the next query
      // opens a new connection. Without a listener Node would crash the process.
      pool.on('error', () => {});
      // A backend terminated right after its startup can send its FATAL in the same packet as
      // ReadyForQuery: pg-pool hands the client over (idle listener removed) and the error is
      // emitted before the caller could attach one — an uncaught exception. Every client of our
      // pool carries a listener from birth; failures still reach callers through their queries.
      pool.on('connect', (client) => {
        guardedClients.add(client);
        client.on('error', () => {});
      });
      this.#pool = pool;
      this.#ownsPool = true;
    }
    if (!o.migrate) return;
    try {
      await this.migrate();
    } catch (error) {
      // Not connected after all: end the pool we opened (never a pool the user passed in).
      const pool = this.#pool;
      this.#pool = undefined;
      if (pool && this.#ownsPool) await pool.end().catch(() => {});
      throw error;
    }
  }

  /** Applies pending migrations (also done by `connect()` unless `migrate: false`). */
  async migrate(): Promise<string[]> {
    // Kysely checks clients out itself: through checkoutGuarded, so that a pool the application
    // passed in is as safe during migrations as our own.
    const pool = this.pool;
    const db = new Kysely<unknown>({
      dialect: new PostgresDialect({ pool: { connect: () => checkoutGuarded(pool), end: async () => {} } as never }),
    });
    const { applied } = await migrateToLatest(db, this.#options.schema);
    return applied;
  }

  async disconnect(): Promise<void> {
    const connecting = this.#connecting;
    if (!connecting) return;
    this.#connecting = undefined;
    await connecting.catch(() => {});
    // Wake-ups of appends already committed go out before the pool closes.
    await this.#waking;
    const listener = this.#listener;
    this.#listener = undefined;
    if (this.#leaseTimer) clearInterval(this.#leaseTimer);
    this.#leaseTimer = undefined;
    this.#leaseHolders.clear();
    await listener?.close();
    const pool = this.#pool;
    this.#pool = undefined;
    if (pool && this.#ownsPool) await pool.end();
  }

  async #client(): Promise<pg.PoolClient> {
    try {
      return await checkoutGuarded(this.pool);
    } catch (error) {
      throw translatePgError(error);
    }
  }

  async #query<R extends pg.QueryResultRow>(statement: plans.Statement | pg.QueryConfig): Promise<pg.QueryResult<R>> {
    try {
      return await this.pool.query<R>(statement as pg.QueryConfig);
    } catch (error) {
      throw translatePgError(error);
    }
  }

  /** Runs `fn` on one client inside BEGIN/COMMIT. */
  async #inTransaction<T>(fn: (client: pg.PoolClient) => Promise<T>, options: StorageTransactionOptions = {}): Promise<T> {
    const client = await this.#client();
    let broken: unknown;
    let committing = false;
    const started = Date.now();
    try {
      await client.query('BEGIN');
      if (options.acks !== undefined && options.acks !== -1) {
        await client.query(`SET LOCAL synchronous_commit = ${options.acks === 1 ? 'local' : 'off'}`);
      }
      if (options.timeoutMs !== undefined) {
        // Backstop: a transaction forgotten idle (holding locks) is ended by the server itself.
        await client.query(`SET LOCAL idle_in_transaction_session_timeout = ${Math.max(1, Math.floor(options.timeoutMs))}`);
      }
      const result = await fn(client);
      if (options.timeoutMs !== undefined && Date.now() - started > options.timeoutMs) {
        throw new TransactionTimeoutError(
          `The transaction stayed open ${Date.now() - started} ms, longer than transactionTimeout (${options.timeoutMs} ms), and was aborted.`,
        );
      }
      committing = true;
      await client.query('COMMIT');
      return result;
    } catch (error) {
      if (isConnectionFailure(error)) broken = error;
      if (!broken) {
        try {
          await client.query('ROLLBACK');
        } catch (rollbackError) {
          broken = rollbackError;
        }
      }
      throw committing ? translateCommitError(error) : translatePgError(error);
    } finally {
      client.release(broken instanceof Error ? broken : broken ? true : undefined);
    }
  }

  // ---- admin -------------------------------------------------------------------------------

  async createTopics(specs: readonly TopicSpec[]): Promise<void> {
    await this.#inTransaction(async (client) => {
      for (const spec of specs) {
        const [insertTopic, ...rest] = plans.createTopicStatements(this.#tables, spec.name, spec.partitions, spec.config);
        const inserted = await client.query(insertTopic!.text, insertTopic!.values);
        if (inserted.rowCount === 0) {
          throw new TopicAlreadyExistsError(`Topic "${spec.name}" already exists. Nothing was created.`, { topic: spec.name });
        }
        for (const st of rest) await client.query(st.text, st.values);
      }
    });
    // The new partitions have segments [0, 2 × size): the next one is due once the log end passes size.
    for (const spec of specs) this.#seedSegmentMarks(spec.name, 0, spec.partitions, spec.config['segment.records']);
  }

  #seedSegmentMarks(topic: string, from: number, to: number, size: number): void {
    for (let p = from; p < to; p++) this.#segmentAheadAt.set(`${topic}\u0000${p}`, BigInt(size));
  }

  async deleteTopics(names: readonly string[]): Promise<void> {
    await this.#inTransaction(async (client) => {
      const lookup = plans.topicTablesStatement(this.#tables, names);
      const found = await client.query<{ name: string; table_name: string }>(lookup.text, lookup.values);
      const known = new Set(found.rows.map((r) => r.name));
      const missing = names.find((n) => !known.has(n));
      if (missing !== undefined) {
        throw new UnknownTopicOrPartitionError(`Topic "${missing}" does not exist. Nothing was deleted.`, { topic: missing });
      }
      for (const st of plans.deleteTopicStatements(this.#tables, names, found.rows.map((r) => r.table_name))) await client.query(st.text, st.values);
    });
    const gone = new Set(names);
    for (const k of this.#segmentAheadAt.keys()) if (gone.has(k.slice(0, k.indexOf('\u0000')))) this.#segmentAheadAt.delete(k);
  }

  async createPartitions(topic: string, count: number): Promise<void> {
    await this.#inTransaction(async (client) => {
      const lock = plans.lockTopicStatement(this.#tables, topic);
      const { rows } = await client.query<{ partitions: number; config: unknown }>(lock.text, lock.values);
      const current = rows[0]?.partitions;
      if (current === undefined) throw new UnknownTopicOrPartitionError(`Topic "${topic}" does not exist.`, { topic });
      if (count <= current) {
        throw new InvalidPartitionsError(
          `Topic "${topic}" has ${current} partitions; createPartitions can only increase the count (asked for ${count}).`,
          { topic },
        );
      }
      for (const s of plans.addPartitionsStatements(this.#tables, topic, current, count)) await client.query(s.text, s.values);
      const size = this.#storedConfig(rows[0]!.config, topic)['segment.records'];
      const ensure = plans.ensureSegmentsStatement(this.#tables, topic, current, count, 0n, size);
      await client.query(ensure.text, ensure.values);
      return { current, size };
    }).then(({ current, size }) => this.#seedSegmentMarks(topic, current, count, size));
  }

  async listTopics(): Promise<string[]> {
    const { rows } = await this.#query<{ name: string }>(plans.describeTopicsStatement(this.#tables));
    return rows.map((r) => r.name);
  }

  async describeTopics(names?: readonly string[]): Promise<TopicDescription[]> {
    const { rows } = await this.#query<{ name: string; partitions: number; config: unknown }>(
      plans.describeTopicsStatement(this.#tables, names),
    );
    if (names) {
      const found = new Set(rows.map((r) => r.name));
      const missing = names.find((n) => !found.has(n));
      if (missing !== undefined) throw new UnknownTopicOrPartitionError(`Topic "${missing}" does not exist.`, { topic: missing });
    }
    return rows.map((r) => ({ name: r.name, partitions: r.partitions, config: this.#storedConfig(r.config, r.name) }));
  }

  #storedConfig(raw: unknown, topic: string): TopicConfig {
    return resolveTopicConfig(raw as Record<string, never>, DEFAULT_TOPIC_CONFIG, topic);
  }

  async alterTopicConfig(topic: string, update: (current: TopicConfig) => TopicConfig): Promise<TopicConfig> {
    return this.#inTransaction(async (client) => {
      const lock = plans.lockTopicStatement(this.#tables, topic);
      const { rows } = await client.query<{ config: unknown }>(lock.text, lock.values);
      const row = rows[0];
      if (!row) throw new UnknownTopicOrPartitionError(`Topic "${topic}" does not exist.`, { topic });
      const next = update(this.#storedConfig(row.config, topic));
      const s = plans.updateConfigStatement(this.#tables, topic, next);
      await client.query(s.text, s.values);
      return next;
    });
  }

  async fetchWatermarks(topic: string): Promise<PartitionWatermarks[]> {
    const { rows } = await this.#query<{ partition: number; low: string; high: string }>(plans.watermarksStatement(this.#tables, topic));
    if (rows.length === 0) throw new UnknownTopicOrPartitionError(`Topic "${topic}" does not exist.`, { topic });
    return rows.map((r) => ({ partition: r.partition, low: toBigInt(r.low), high: toBigInt(r.high) }));
  }

  async deleteRecords(
    topic: string,
    partitions: ReadonlyArray<{ partition: number; offset: bigint }>,
  ): Promise<Array<{ partition: number; lowWatermark: bigint }>> {
    return this.#inTransaction(async (client) => {
      const statement = plans.deleteRecordsStatement(this.#tables, topic, partitions);
      const { rows } = await client.query<{ partition: number; low: string }>(statement.text, statement.values);
      if (rows.length !== new Set(partitions.map((p) => p.partition)).size) {
        // Rolls the whole request back: nothing is deleted.
        throw new UnknownTopicOrPartitionError(
          `Topic "${topic}" or one of the partitions ${partitions.map((p) => p.partition).join(', ')} does not exist. Nothing was deleted.`,
          { topic },
        );
      }
      return rows.map((r) => ({ partition: r.partition, lowWatermark: toBigInt(r.low) }));
    });
  }

  async fetchOffsetsByTimestamp(topic: string, timestamp: number): Promise<Array<{ partition: number; offset: bigint }>> {
    const { rows } = await this.#query<{ partition: number; offset: string }>(
      plans.offsetsByTimestampStatement(this.#tables, topic, new Date(timestamp)),
    );
    if (rows.length === 0) throw new UnknownTopicOrPartitionError(`Topic "${topic}" does not exist.`, { topic });
    return rows.map((r) => ({ partition: r.partition, offset: toBigInt(r.offset) }));
  }

  // ---- producing -----------------------------------------------------------------------------

  async initProducer(transactionalId?: string): Promise<ProducerIdentity> {
    if (transactionalId === undefined) {
      const { rows } = await this.#query<{ producer_id: string }>(plans.nextProducerIdStatement(this.#tables));
      return { producerId: toBigInt(rows[0]!.producer_id), epoch: 0 };
    }
    const { rows } = await this.#query<{ producer_id: string; epoch: number }>(
      plans.initTransactionalProducerStatement(this.#tables, transactionalId),
    );
    return { producerId: toBigInt(rows[0]!.producer_id), epoch: rows[0]!.epoch };
  }

  async append(appends: readonly PartitionAppend[], options: AppendOptions = {}): Promise<PartitionAppendResult[]> {
    if (appends.length === 0) return [];
    const rows = appends.reduce((n, a) => n + a.records.length, 0);
    const simple = options.producerId === undefined && options.fence === undefined && (options.acks ?? -1) === -1 && rows <= MAX_ROWS_PER_STATEMENT;
    if (!simple) {
      const results = await this.#inTransaction((client) => this.appendOn(client, appends, options), { acks: options.acks ?? -1 });
      this.wakeAfterCommit(results);
      return results;
    }
    // One autocommitted statement: one round trip. A connection lost meanwhile leaves the outcome unknown.
    const query = this.#appendQuery(groupsOf(appends));
    let client: pg.PoolClient | undefined;
    let broken: unknown;
    try {
      client = await this.#client();
      let result: pg.QueryResult<AppendRow>;
      try {
        result = await client.query<AppendRow>(query);
      } catch (error) {
        if (!isMissingSegment(error)) throw error;
        // A burst outran the segment kept ahead: create it (own transaction), then append again.
        await this.#ensureAhead(appends);
        result = await client.query<AppendRow>(query);
      }
      const results = resultsOf(appends, result.rows);
      this.wakeAfterCommit(results);
      this.#checkSegments(appends, results);
      return results;
    } catch (error) {
      if (!client) throw error;
      if (isConnectionFailure(error)) broken = error;
      throw this.#appendError(error, appends, true);
    } finally {
      client?.release(broken instanceof Error ? broken : undefined);
    }
  }

  #appendError(error: unknown, appends: readonly PartitionAppend[], autocommit: boolean) {
    const e = error as { code?: string; column?: string };
    // A NULL offset (no head row) or no segment even after creating one ahead: the topic or
    // partition does not exist (deleted meanwhile, or out of range).
    if ((e?.code === '23502' && e.column === 'offset') || isMissingSegment(error)) {
      const first = appends[0]!;
      return new UnknownTopicOrPartitionError(
        `Cannot append: a topic or partition among ${[...new Set(appends.map((a) => `${a.topic}[${a.partition}]`))].join(', ')} does not exist. Nothing was written.`,
        { topic: first.topic },
      );
    }
    return autocommit ? translateCommitError(error) : translatePgError(error);
  }

  /** Appends on a client that is inside a transaction (used by `append` and storage transactions). */
  async appendOn(client: pg.PoolClient, appends: readonly PartitionAppend[], options: AppendOptions = {}): Promise<PartitionAppendResult[]> {
    if (appends.length === 0) return [];
    try {
      if (options.fence) {
        const s = plans.fenceStatement(this.#tables, options.fence.transactionalId);
        const { rows } = await client.query<{ producer_id: string; epoch: number }>(s.text, s.values);
        const row = rows[0];
        if (!row || toBigInt(row.producer_id) !== options.fence.producerId || row.epoch !== options.fence.epoch) {
          throw new ProducerFencedError(
            `Producer with transactionalId "${options.fence.transactionalId}" (epoch ${options.fence.epoch}) was fenced by a newer producer with the same id; this transaction was aborted.`,
          );
        }
      }
      if (options.producerId === undefined) return await this.#appendChunked(client, appends);
      return await this.#appendIdempotent(client, appends, options.producerId);
    } catch (error) {
      throw this.#appendError(error, appends, false);
    }
  }

  /**
   * Appends in statements of at most MAX_ROWS_PER_STATEMENT rows (Postgres allows 65,535
   * parameters per statement). The client is inside a transaction, so the pieces of one
   * partition are contiguous: its head stays locked between them.
   */
  async #appendChunked(client: pg.PoolClient, appends: readonly PartitionAppend[]): Promise<PartitionAppendResult[]> {
    const bases = new Map<string, bigint>();
    const watched = new Set<string>();
    let chunk: PartitionAppend[] = [];
    let size = 0;
    const flush = async () => {
      if (chunk.length === 0) return;
      const query = this.#appendQuery(groupsOf(chunk));
      // Under a savepoint: if a burst outran the segment kept ahead, only this statement rolls
      // back; the segment is created in its own transaction and the statement runs again.
      await client.query('SAVEPOINT annals_append');
      let rows: AppendRow[];
      try {
        rows = (await client.query<AppendRow>(query)).rows;
      } catch (error) {
        if (!isMissingSegment(error)) throw error;
        await client.query('ROLLBACK TO SAVEPOINT annals_append');
        await this.#ensureAhead(chunk);
        rows = (await client.query<AppendRow>(query)).rows;
      }
      await client.query('RELEASE SAVEPOINT annals_append');
      const written = resultsOf(chunk, rows);
      this.#checkSegments(chunk, written);
      for (const r of written) {
        const k = `${r.topic}\u0000${r.partition}`;
        if (!bases.has(k)) bases.set(k, r.baseOffset);
        if (!UNWATCHED.has(r)) watched.add(k);
      }
      chunk = [];
      size = 0;
    };
    for (const a of sortAppends(appends)) {
      for (let i = 0; i < a.records.length; ) {
        const take = Math.min(a.records.length - i, MAX_ROWS_PER_STATEMENT - size);
        chunk.push({ ...a, records: a.records.slice(i, i + take) });
        size += take;
        i += take;
        if (size >= MAX_ROWS_PER_STATEMENT) await flush();
      }
    }
    await flush();
    return appends.map((a): PartitionAppendResult => {
      const k = `${a.topic}\u0000${a.partition}`;
      return withLease({ topic: a.topic, partition: a.partition, baseOffset: bases.get(k)!, duplicate: false }, watched.has(k));
    });
  }

  async #appendIdempotent(client: pg.PoolClient, appends: readonly PartitionAppend[], producerId: bigint): Promise<PartitionAppendResult[]> {
    const sorted = sortAppends(appends);
    // Lock the heads first: a retry racing its own still-running original waits here, and the
    // producer-state read below (a new statement, a new snapshot) then sees what the original wrote.
    const lock = plans.lockHeadsStatement(this.#tables, sorted);
    const locked = await client.query(lock.text, lock.values);
    if (locked.rowCount !== sorted.length) {
      const present = new Set(locked.rows.map((r: { topic: string; partition: number }) => `${r.topic}\u0000${r.partition}`));
      const missing = sorted.find((a) => !present.has(`${a.topic}\u0000${a.partition}`))!;
      throw new UnknownTopicOrPartitionError(`Partition ${missing.partition} of topic "${missing.topic}" does not exist. Nothing was written.`, {
        topic: missing.topic,
        partition: missing.partition,
      });
    }
    const stateQuery = plans.producerStateStatement(this.#tables, producerId, sorted);
    const state = await client.query<{ topic: string; partition: number; base_sequence: number; last_sequence: number; base_offset: string }>(
      stateQuery.text,
      stateQuery.values,
    );
    const stateByKey = new Map(state.rows.map((r) => [`${r.topic}\u0000${r.partition}`, r]));
    const results = new Map<string, PartitionAppendResult>();
    const fresh: PartitionAppend[] = [];
    for (const a of sorted) {
      const seq = a.baseSequence;
      if (seq === undefined) throw new InvalidOptionsError('An idempotent append needs a baseSequence for every partition.');
      const key = `${a.topic}\u0000${a.partition}`;
      const prev = stateByKey.get(key);
      if (prev && seq === prev.base_sequence) {
        results.set(key, { topic: a.topic, partition: a.partition, baseOffset: toBigInt(prev.base_offset), duplicate: true });
        continue;
      }
      const expected = prev ? prev.last_sequence + 1 : 0;
      if (seq !== expected) {
        throw new OutOfOrderSequenceError(
          `Producer ${producerId} sent sequence ${seq} to ${a.topic}[${a.partition}], expected ${expected}. Records may be missing; recreate the producer.`,
          { topic: a.topic, partition: a.partition },
        );
      }
      fresh.push(a);
    }
    if (fresh.length > 0) {
      const written = await this.#appendChunked(client, fresh);
      for (const r of written) results.set(`${r.topic}\u0000${r.partition}`, r);
      const upsert = plans.upsertProducerStateStatement(
        this.#tables,
        producerId,
        fresh.map((a) => ({
          topic: a.topic,
          partition: a.partition,
          baseSequence: a.baseSequence!,
          lastSequence: a.baseSequence! + a.records.length - 1,
          baseOffset: results.get(`${a.topic}\u0000${a.partition}`)!.baseOffset,
        })),
      );
      await client.query(upsert.text, upsert.values);
    }
    return appends.map((a) => results.get(`${a.topic}\u0000${a.partition}`)!);
  }

  async transaction<T>(fn: (tx: StorageTransaction<Kysely<DB>>) => Promise<T>, options: StorageTransactionOptions = {}): Promise<T> {
    const tx = this.deferredTransaction(options);
    let result: T;
    try {
      result = await fn(tx);
    } catch (error) {
      await tx.rollback();
      throw error;
    }
    await tx.commit();
    return result;
  }

  deferredTransaction(options: StorageTransactionOptions = {}): DeferredTransaction<Kysely<DB>> {
    return new PgDeferredTransaction<DB>(this, options);
  }

  /** Creates the segments the appends need now, past their records (each in its own transaction). */
  async #ensureAhead(appends: ReadonlyArray<{ topic: string; partition: number; records?: readonly unknown[]; n?: number }>): Promise<void> {
    const seen = new Set<string>();
    for (const a of appends) {
      const k = `${a.topic}\u0000${a.partition}`;
      if (seen.has(k)) continue;
      seen.add(k);
      this.#segmentAheadAt.delete(k);
      await this.#query(plans.ensureAheadStatement(this.#tables, a.topic, a.partition, a.records?.length ?? a.n ?? 0));
    }
  }

  /**
   * An append's statement, always prepared: a small append to one partition as
   * `appendOneStatement` (its text depends only on the record count), anything else as
   * `appendStatement` (one text for every shape).
   */
  #appendQuery(groups: readonly plans.AppendGroup[]): pg.QueryConfig {
    const only = groups.length === 1 ? groups[0]! : undefined;
    if (only && only.rows.length <= plans.SMALL_APPEND_ROWS) return this.#prepared(plans.appendOneStatement(this.#tables, only), true);
    return this.#prepared(plans.appendStatement(this.#tables, groups), true);
  }

  /**
   * Per partition, the log end past which it needs its next segment ahead (see
   * `segmentAheadAtStatement`). Cached, so appends never query `segments`: a partition not in the
   * cache (first append from this process) or past its mark gets `#scheduleAhead`. A stale entry
   * (topic re-created, segments changed by another process) costs nothing worse than an append
   * outrunning its segments, which the append path handles (`isMissingSegment`: create, retry).
   */
  readonly #segmentAheadAt = new Map<string, bigint>();
  readonly #aheadPending = new Set<string>();

  /** After an append: schedules the next segment of every partition whose new log end passed its mark. */
  #checkSegments(appends: ReadonlyArray<{ topic: string; partition: number; records: readonly unknown[] }>, results: readonly PartitionAppendResult[]): void {
    results.forEach((r, i) => {
      const end = r.baseOffset + BigInt(appends[i]!.records.length);
      this.#checkSegment(r.topic, r.partition, end);
    });
  }

  #checkSegment(topic: string, partition: number, end: bigint): void {
    const k = `${topic}\u0000${partition}`;
    const at = this.#segmentAheadAt.get(k);
    if (at !== undefined && end <= at) return;
    this.#scheduleAhead(topic, partition, k);
  }

  /** In the background, keeps one empty segment ahead of a partition that entered its last one, and refreshes its mark. */
  #scheduleAhead(topic: string, partition: number, k: string): void {
    if (this.#aheadPending.has(k)) return;
    this.#aheadPending.add(k);
    void (async () => {
      await this.#query(plans.ensureAheadStatement(this.#tables, topic, partition));
      const { rows } = await this.#query<{ ahead_at: string | null }>(plans.segmentAheadAtStatement(this.#tables, topic, partition));
      const at = rows[0]?.ahead_at;
      if (at === null || at === undefined) this.#segmentAheadAt.delete(k);
      else this.#segmentAheadAt.set(k, toBigInt(at));
    })()
      .catch(() => {
        // The append path creates the segment itself if it is still missing when needed.
        this.#segmentAheadAt.delete(k);
      })
      .finally(() => this.#aheadPending.delete(k));
  }

  /** Handler statements (`tx.db`) seen once, and those given a name: see {@link handlerStatement}. */
  readonly #handlerSeen = new Set<string>();
  readonly #handlerNames = new Map<string, string>();

  /**
   * @internal A statement a handler sends through a transaction's `tx.db`. A consumer's batch runs
   * the same handler for every record, so the same text comes again and again: from its second
   * sighting it goes as a named prepared statement (parsed once per connection, and planned once
   * when PostgreSQL settles on a generic plan) instead of being parsed and planned per record.
   * Only row-less writes with parameters qualify — INSERT, UPDATE or DELETE without RETURNING, so
   * no result type can change under a prepared statement after DDL — of at most 4,096 characters
   * (a multi-row INSERT's text changes with its row count: not worth remembering), and at most 128
   * texts are named per storage (then the rest go unnamed, as before); search_path changes re-plan
   * prepared statements in PostgreSQL, so they target what an unnamed statement would.
   */
  handlerStatement(text: string, values: unknown[] | undefined): pg.QueryConfig {
    let name = this.#handlerNames.get(text);
    if (
      name === undefined &&
      values !== undefined &&
      values.length > 0 &&
      text.length <= 4096 &&
      this.#handlerNames.size < 128 &&
      PREPARABLE_WRITE.test(text) &&
      !RETURNING.test(text)
    ) {
      if (!this.#handlerSeen.has(text)) {
        if (this.#handlerSeen.size >= 1024) this.#handlerSeen.clear();
        this.#handlerSeen.add(text);
      } else {
        this.#handlerSeen.delete(text);
        name = `annals_h_${createHash('sha1').update(text).digest('hex').slice(0, 24)}`;
        this.#handlerNames.set(text, name);
      }
    }
    return name === undefined ? { text, values } : { name, text, values };
  }

  /** @internal A pooled client with its error event guarded. */
  acquireClient(): Promise<pg.PoolClient> {
    return this.#client();
  }

  #schemaRegistry: PgSchemaRegistry | undefined;

  /** The schema registry (`pg-schema-registry.ts`; table `schema_registry`). */
  get schemaRegistry(): PgSchemaRegistry {
    this.#schemaRegistry ??= new PgSchemaRegistry(this);
    return this.#schemaRegistry;
  }

  #projections: PgProjectionStore<DB> | undefined;

  /** Projection bookkeeping and read models (`pg-projection-store.ts`). */
  get projections(): PgProjectionStore<DB> {
    this.#projections ??= new PgProjectionStore<DB>(this);
    return this.#projections;
  }

  /** Retention and compaction (`pg-cleaner.ts`): one cleaner per schema, elected by an advisory lock. */
  readonly cleaner: CleanerStorage = {
    acquireCleaner: async () => {
      this.pool; // throws NotConnectedError before connect()
      return acquirePgCleaner(() => this.#sessionClient(`annals:cleaner`), this.#tables);
    },
  };

  // ---- event-sourced streams (port: stream-storage.ts in @annals/core; SQL: plans-aggregates.ts) ----

  #streamTablesCache: StreamTables | undefined;

  get #streamTables(): StreamTables {
    this.#streamTablesCache ??= streamTables(this.#options.schema);
    return this.#streamTablesCache;
  }

  /** Names of the statements sent prepared (bounded: each is prepared once per connection). */
  readonly #preparedNames = new Map<string, string>();

  /**
   * A small stream statement goes as a named (prepared) statement: planning it over the
   * partitioned records table costs several times executing it (measured: ~5 ms unnamed vs ~1 ms
   * prepared per autocommitted append). At most 64 shapes are prepared; others go unnamed.
   * `fixed` statements (the append and wake-up statements: a handful of texts in all) are always
   * prepared.
   */
  #prepared(statement: plans.Statement, fixed = false): pg.QueryConfig {
    let name = this.#preparedNames.get(statement.text);
    if (name === undefined && (fixed || this.#preparedNames.size < 64)) {
      name = `annals_${createHash('sha1').update(statement.text).digest('hex').slice(0, 24)}`;
      this.#preparedNames.set(statement.text, name);
    }
    return name === undefined ? { text: statement.text, values: statement.values } : { name, text: statement.text, values: statement.values };
  }

  readonly #wakeups = new Set<string>();
  #waking: Promise<void> | undefined;
  #lastWakeup = -Infinity;

  /**
   * @internal Wakes the watchers of partitions that an append wrote, once its commit is
   * acknowledged: every append path calls it after its COMMIT (autocommitted appends after their
   * statement, transactions after `COMMIT`), none NOTIFYs inside its own transaction.
   * A transaction that NOTIFYs holds PostgreSQL's database-wide notify lock from its pre-commit
   * until its commit record is flushed, so concurrent notifying appends commit one fsync at a time
   * (measured: 3.4× fewer commits per second with 8 writers). Sent afterwards — coalesced, one
   * statement for every partition pending while the previous one is in flight, never awaited by
   * the appender — the append commits without it. The wake-up is sent only after the commit, so
   * a woken reader always finds the records. If the process dies in between (or the statement
   * fails), watchers miss this wake-up and find the records at their next poll
   * (`maxWaitTimeInMs`), as after a lost LISTEN connection.
   *
   * Wake-ups are also spaced by `wakeupIntervalMs` (measured from the previous one's start): a
   * writer appending in a tight loop would otherwise send one NOTIFY per append — a transaction
   * of its own, delivered to every listening session — doubling the statements the database runs.
   */
  wakeAfterCommit(heads: readonly PartitionAppendResult[]): void {
    for (const h of heads) if (!UNWATCHED.has(h)) this.#wakeups.add(`${h.topic}/${h.partition}`);
    if (this.#wakeups.size === 0 || !this.#pool) return;
    this.#waking ??= (async () => {
      while (this.#wakeups.size > 0) {
        const wait = this.#lastWakeup + this.#options.wakeupIntervalMs - performance.now();
        if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
        if (!this.#pool) return;
        const pending = [...this.#wakeups];
        this.#wakeups.clear();
        this.#lastWakeup = performance.now();
        try {
          await this.pool.query(this.#prepared(plans.notifyStatement(this.#tables, pending), true));
        } catch {
          // Lost wake-ups cost watchers one poll interval (see above).
        }
      }
    })().finally(() => {
      this.#waking = undefined;
      if (this.#wakeups.size > 0) this.wakeAfterCommit([]);
    });
  }

  /**
   * Expected-version appends. Uncontended, one autocommitted statement (`streamAppendStatement`
   * locks the heads, checks on a snapshot it proves fresh, and writes). When the snapshot was
   * stale — another append to the partition committed while it waited for the head lock — or the
   * call needs a transaction (acks, size, a segment to create), it runs in a transaction, where
   * the locks, once held, make the next statement's snapshot fresh.
   */
  async appendToStreams(
    appends: readonly PartitionAppend[],
    streams: readonly StreamExpectation[],
    options: StreamAppendOptions = {},
  ): Promise<StreamAppendResult> {
    if (streams.length === 0) return { appends: await this.append(appends, options), streams: [] };
    const prepared = prepareStreamAppend(appends, streams);
    const groups = groupsOf(appends);
    const single = (options.acks ?? -1) === -1 ? singleStream(appends, prepared, MAX_ROWS_PER_STATEMENT) : null;
    if (single) {
      // The common case (one stream, its own records): the lean statement, prepared once — or,
      // while other such appends are in flight, one batch statement with them (group commit).
      const group = groups[0]!;
      const verdict = await this.#leanStreamAppend({
        entry: { topic: single.topic, partition: single.partition, key: single.key, expected: single.expected, rows: group.rows },
        appends,
        heads: prepared.heads,
        stream: streams[0]!,
        check: single,
      });
      if (verdict !== 'undecided') {
        const results: PartitionAppendResult[] = [withLease({ topic: group.topic, partition: group.partition, baseOffset: verdict.base, duplicate: false }, verdict.watched)];
        this.wakeAfterCommit(results);
        this.#checkSegments(appends, results);
        return { appends: results, streams: [verdict.version] };
      }
    } else if ((options.acks ?? -1) === -1 && prepared.rows <= MAX_ROWS_PER_STATEMENT) {
      const statement = streamAppendStatement(this.#tables, this.#streamTables, prepared.heads, groups, prepared.checks, { notify: false });
      const small = prepared.rows <= 8 && prepared.heads.length <= 4;
      const attempt = await this.#autocommittedStreamAppend<StreamAppendRow>(small ? this.#prepared(statement) : statement, appends, prepared);
      const row = attempt === 'retry' ? undefined : attempt;
      const versions = row ? interpretStreamAppend(row, streams, prepared) : 'stale';
      if (row && versions !== 'stale') {
        const results = resultsOf(appends, row.heads ?? []);
        this.wakeAfterCommit(results);
        this.#checkSegments(appends, results);
        return { appends: results, streams: versions };
      }
    }
    const result = await this.#inTransaction((client) => this.appendToStreamsOn(client, appends, streams), { acks: options.acks ?? -1 });
    this.wakeAfterCommit(result.appends);
    return result;
  }

  /**
   * Coalescing of concurrent lean stream appends (group commit). An append that finds fewer than
   * `STREAM_APPENDS_IN_FLIGHT` lean appends in flight and none queued runs alone, at once; later
   * ones queue, and the queue leaves as one `streamAppendBatchStatement` — one statement, one
   * commit — holding the first queued append of each partition (so of each stream: a stream lives
   * in one partition). The queue is drained on the next turn of the event loop, after the callers
   * just answered have had their turn, so that a closed loop of commands joins the next batch
   * instead of running alone beside it. Each append in a batch is decided alone; one that the
   * batch cannot decide takes the transaction path by itself, and a batch that fails for a reason
   * other than a lost connection is replayed one append at a time, so an append never fails
   * because of its neighbours.
   */
  readonly #streamQueue: QueuedStreamAppend[] = [];
  #streamInFlight = 0;
  #streamDrainScheduled = false;

  #leanStreamAppend(q: LeanStreamAppend): Promise<StreamAppendOneVerdict> {
    if (this.#streamInFlight < STREAM_APPENDS_IN_FLIGHT && this.#streamQueue.length === 0 && !this.#streamDrainScheduled) {
      return this.#streamAppendAlone(q);
    }
    return new Promise<StreamAppendOneVerdict>((resolve, reject) => {
      this.#streamQueue.push({ ...q, resolve, reject });
      this.#scheduleStreamDrain();
    });
  }

  /** One lean append in its own statement (counted in flight). */
  async #streamAppendAlone(q: LeanStreamAppend): Promise<StreamAppendOneVerdict> {
    this.#streamInFlight++;
    try {
      const statement = streamAppendOneStatement(this.#tables, this.#streamTables, q.entry);
      const attempt = await this.#autocommittedStreamAppend<StreamAppendOneRow>(this.#prepared(statement, true), q.appends, q);
      return attempt === 'retry' ? 'undecided' : interpretStreamAppendOne(attempt, q.stream, q.check);
    } finally {
      this.#streamInFlight--;
      this.#scheduleStreamDrain();
    }
  }

  /** Drains the queue on the next turn of the event loop; appends arriving meanwhile queue for it. */
  #scheduleStreamDrain(): void {
    if (this.#streamDrainScheduled) return;
    this.#streamDrainScheduled = true;
    setImmediate(() => {
      this.#streamDrainScheduled = false;
      this.#drainStreamQueue();
    });
  }

  #drainStreamQueue(): void {
    while (this.#streamQueue.length > 0 && this.#streamInFlight < STREAM_APPENDS_IN_FLIGHT) {
      const batch: QueuedStreamAppend[] = [];
      const partitions = new Set<string>();
      let rows = 0;
      for (let i = 0; i < this.#streamQueue.length && batch.length < STREAM_BATCH_MAX; ) {
        const q = this.#streamQueue[i]!;
        const k = `${q.entry.topic}\u0000${q.entry.partition}`;
        if (partitions.has(k) || (batch.length > 0 && rows + q.entry.rows.length > MAX_ROWS_PER_STATEMENT)) {
          i++;
          continue;
        }
        partitions.add(k);
        rows += q.entry.rows.length;
        batch.push(q);
        this.#streamQueue.splice(i, 1);
      }
      if (batch.length === 1) {
        const q = batch[0]!;
        this.#streamAppendAlone(q).then(q.resolve, q.reject);
      } else {
        this.#streamInFlight++;
        void this.#streamAppendBatch(batch).finally(() => {
          this.#streamInFlight--;
          this.#scheduleStreamDrain();
        });
      }
    }
  }

  /** Runs a batch; settles every append of it (never rejects). */
  async #streamAppendBatch(batch: readonly QueuedStreamAppend[]): Promise<void> {
    const statement = streamAppendBatchStatement(
      this.#tables,
      this.#streamTables,
      batch.map((q) => q.entry),
    );
    const run = await this.#runAutocommitted<StreamAppendBatchRow>(this.#prepared(statement, true));
    if ('rows' in run) {
      batch.forEach((q, i) => {
        const row = run.rows[i];
        try {
          q.resolve(row && row.ord === i + 1 ? interpretStreamAppendOne(row, q.stream, q.check) : 'undecided');
        } catch (error) {
          q.reject(error);
        }
      });
      return;
    }
    if (!run.connected || run.broken) {
      // No connection, or it was lost with the commit's outcome unknown: what each append alone would have reported.
      for (const q of batch) q.reject(run.connected ? this.#appendError(run.error, q.appends, true) : run.error);
      return;
    }
    // Anything else (a missing segment, a deleted topic, a record the table refuses): each alone,
    // so each gets its own outcome.
    await Promise.all(batch.map((q) => this.#streamAppendAlone(q).then(q.resolve, q.reject)));
  }

  /**
   * Runs an autocommitted stream-append statement and returns its row, or `'retry'` when a segment
   * was missing (now created ahead; nothing was written): the caller then goes to the transaction
   * path, as after a stale snapshot. Other failures are thrown as typed append errors.
   */
  async #autocommittedStreamAppend<R extends pg.QueryResultRow>(
    query: pg.QueryConfig,
    appends: readonly PartitionAppend[],
    prepared: { readonly heads: ReadonlyArray<{ topic: string; partition: number }> },
  ): Promise<R | undefined | 'retry'> {
    const run = await this.#runAutocommitted<R>(query);
    if ('rows' in run) return run.rows[0];
    if (!run.connected) throw run.error;
    if (!isMissingSegment(run.error)) throw this.#appendError(run.error, appends, true);
    await this.#ensureAhead(prepared.heads);
    return 'retry';
  }

  /**
   * Runs one autocommitted statement on a pooled client and says how it ended: its rows, or its
   * error with whether a connection was had at all and whether it broke (then the outcome of the
   * commit is unknown, and the client is discarded).
   */
  async #runAutocommitted<R extends pg.QueryResultRow>(
    query: pg.QueryConfig,
  ): Promise<{ rows: R[] } | { error: unknown; connected: boolean; broken: boolean }> {
    let client: pg.PoolClient | undefined;
    let broken: unknown;
    try {
      client = await this.#client();
      return { rows: (await client.query<R>(query)).rows };
    } catch (error) {
      if (client && isConnectionFailure(error)) broken = error;
      return { error, connected: client !== undefined, broken: broken !== undefined };
    } finally {
      client?.release(broken instanceof Error ? broken : undefined);
    }
  }

  /** @internal Expected-version appends on a client inside a transaction. */
  async appendToStreamsOn(client: pg.PoolClient, appends: readonly PartitionAppend[], streams: readonly StreamExpectation[]): Promise<StreamAppendResult> {
    if (streams.length === 0) return { appends: await this.appendOn(client, appends), streams: [] };
    const prepared = prepareStreamAppend(appends, streams);
    const groups = groupsOf(appends);
    // Large appends: check (and lock) here, then write through the chunked append path.
    const combined = prepared.rows <= MAX_ROWS_PER_STATEMENT;
    const heads = combined ? prepared.heads : prepared.heads.map((h) => ({ ...h, n: 0 }));
    // No NOTIFY inside: whoever commits the transaction wakes the watchers afterwards.
    const statement = streamAppendStatement(this.#tables, this.#streamTables, heads, combined ? groups : [], prepared.checks, { notify: false });
    // The first run takes the head locks; a second one (after a stale snapshot) sees everything.
    for (let run = 0; run < 2; run++) {
      let row: StreamAppendRow;
      try {
        row = combined ? await this.#streamStatementInSavepoint(client, statement, prepared.heads) : (await client.query<StreamAppendRow>(statement.text, statement.values)).rows[0]!;
      } catch (error) {
        throw this.#appendError(error, appends, false);
      }
      const versions = interpretStreamAppend(row, streams, prepared);
      if (versions === 'stale') continue;
      if (combined) {
        const results = resultsOf(appends, row.heads ?? []);
        this.#checkSegments(appends, results);
        return { appends: results, streams: versions };
      }
      const written = await this.appendOn(client, appends);
      const expected = resultsOf(appends, row.heads ?? []);
      written.forEach((w, i) => {
        if (w.baseOffset !== expected[i]!.baseOffset) {
          throw new InvalidTransactionStateError(`Stream append to ${w.topic}[${w.partition}] landed at ${w.baseOffset}, not at the locked log end ${expected[i]!.baseOffset}.`);
        }
      });
      return { appends: written, streams: versions };
    }
    throw new ConcurrentTransactionsError('A stream append found a stale snapshot twice while holding the head locks; retry it.');
  }

  /** Runs a stream append under a savepoint, creating a missing segment and running it again. */
  async #streamStatementInSavepoint(client: pg.PoolClient, statement: plans.Statement, heads: ReadonlyArray<{ topic: string; partition: number }>): Promise<StreamAppendRow> {
    await client.query('SAVEPOINT annals_stream');
    let row: StreamAppendRow;
    try {
      row = (await client.query<StreamAppendRow>(statement.text, statement.values)).rows[0]!;
    } catch (error) {
      if (!isMissingSegment(error)) throw error;
      await client.query('ROLLBACK TO SAVEPOINT annals_stream');
      await this.#ensureAhead(heads);
      row = (await client.query<StreamAppendRow>(statement.text, statement.values)).rows[0]!;
    }
    await client.query('RELEASE SAVEPOINT annals_stream');
    return row;
  }

  async readStream(topic: string, partition: number, key: Uint8Array, options: StreamReadOptions = {}): Promise<StreamSlice> {
    const statement = readStreamStatement(this.#tables, this.#streamTables, topic, partition, key, options.snapshot);
    let rows: StreamReadRow[];
    try {
      rows = (await this.pool.query<StreamReadRow>(this.#prepared(statement))).rows;
    } catch (error) {
      throw translatePgError(error, { topic, partition });
    }
    return interpretStreamRead(rows, topic, partition, key, options.snapshot?.name);
  }

  /** @internal Reads a stream on a client inside a transaction (its own appends included). */
  async readStreamOn(client: pg.PoolClient, topic: string, partition: number, key: Uint8Array, options: StreamReadOptions = {}): Promise<StreamSlice> {
    const statement = readStreamStatement(this.#tables, this.#streamTables, topic, partition, key, options.snapshot);
    let rows: StreamReadRow[];
    try {
      rows = (await client.query<StreamReadRow>(statement.text, statement.values)).rows;
    } catch (error) {
      throw translatePgError(error, { topic, partition });
    }
    return interpretStreamRead(rows, topic, partition, key, options.snapshot?.name);
  }

  async saveSnapshot(snapshot: SnapshotWrite): Promise<boolean> {
    try {
      const statement = saveSnapshotStatement(this.#streamTables, snapshot);
      const { rowCount } = await this.pool.query(statement.text, statement.values);
      return (rowCount ?? 0) > 0;
    } catch (error) {
      if ((error as { code?: string })?.code === '23503') {
        throw new UnknownTopicOrPartitionError(`Topic "${snapshot.topic}" does not exist; the snapshot was not stored.`, { topic: snapshot.topic });
      }
      throw translatePgError(error, { topic: snapshot.topic });
    }
  }

  async deleteSnapshots(name: string): Promise<number> {
    const { rowCount } = await this.#query(deleteSnapshotsStatement(this.#streamTables, name));
    return rowCount ?? 0;
  }

  // ---- consumer groups -----------------------------------------------------------------------

  async #sessionClient(applicationName: string): Promise<{ client: SessionClient; close: (c: SessionClient, broken: boolean) => Promise<void> }> {
    const o = this.#options;
    const connectionString = o.connectionString ?? (o.connectionStringProvider ? await o.connectionStringProvider() : undefined);
    try {
      if (connectionString) {
        // The same bound as the pool's: a connect into a black hole fails instead of hanging joinGroup.
        const client = new pg.Client({ connectionString, application_name: applicationName, connectionTimeoutMillis: o.connectionTimeoutMs });
        client.on('error', () => {});
        await client.connect();
        return { client, close: async (c) => void (await (c as pg.Client).end().catch(() => {})) };
      }
      // A pool the user owns: hold one of its clients for the session's lifetime.
      const client = await checkoutGuarded(this.pool);
      try {
        await client.query(`SET application_name = '${applicationName.replaceAll("'", "''")}'`);
      } catch (error) {
        client.release(true); // never kept out of the application's pool
        throw error;
      }
      return {
        close: async (c, broken) => {
          if (!broken) await c.query('RESET application_name').catch(() => {});
          (c as pg.PoolClient).release(broken ? true : undefined);
        },
        client,
      };
    } catch (error) {
      throw translatePgError(error);
    }
  }

  async joinGroup(groupId: string, member: MemberMetadata, events: GroupSessionEvents): Promise<GroupSession> {
    const memberId = `${member.clientId}-${randomUUID()}`;
    const applicationName = `annals:${memberId}`.slice(0, 63);
    const { client, close } = await this.#sessionClient(applicationName);
    let release = () => {};
    const session = new PgGroupSession({
      tables: this.#tables,
      groupId,
      memberId,
      client,
      close: (c, broken) => {
        release();
        return close(c, broken);
      },
      events,
      topics: member.topics,
    });
    try {
      await session.start(member, applicationName);
      // The member's fetches are woken by appends to its topics: hold their watch leases.
      release = await this.#holdWatchLeases(member.topics, (topic) => events.onAppend(topic, -1));
    } catch (error) {
      await session.leave();
      throw error;
    }
    return session;
  }

  async commitOffsets(groupId: string, commits: readonly OffsetCommit[], fence?: CommitFence): Promise<void> {
    if (commits.length === 0) return;
    const client = await this.#client();
    let broken: unknown;
    try {
      await this.commitOffsetsOn(client, groupId, commits, fence);
    } catch (error) {
      if (isConnectionFailure(error) || (error instanceof ConnectionError)) broken = error;
      throw error;
    } finally {
      client.release(broken instanceof Error ? broken : undefined);
    }
  }

  /** @internal Commits offsets on a client (inside a transaction or autocommitted). */
  async commitOffsetsOn(client: pg.PoolClient, groupId: string, commits: readonly OffsetCommit[], fence?: CommitFence): Promise<void> {
    const rows = commits.map((c) => ({
      topic: c.topic,
      partition: c.partition,
      offset: c.offset,
      metadata: c.metadata ?? null,
      generation: fence ? (fence.generations.get(`${c.topic}/${c.partition}`) ?? -1n) : null,
    }));
    // Prepared: two fixed texts (fenced or not), sent once per batch by every consumer.
    const statement = this.#prepared(commitOffsetsStatement(this.#tables, groupId, rows, fence ? fence.memberId : null), true);
    try {
      await client.query(statement);
    } catch (error) {
      const e = error as { code?: string; column?: string };
      if (e?.code === '23502' && e.column === 'committed_offset') {
        throw new IllegalGenerationError(
          `Member ${fence?.memberId} no longer owns ${commits.map((c) => `${c.topic}[${c.partition}]`).join(', ')} in group "${groupId}" at the generation it holds: another member claimed it. Nothing was committed.`,
          { groupId },
        );
      }
      throw translatePgError(error, { groupId });
    }
  }

  async fetchCommittedOffsets(groupId: string, topics?: readonly string[]): Promise<CommittedOffset[]> {
    const { rows } = await this.#query<{ topic: string; partition: number; committed_offset: string; metadata: string | null; committed_at: number }>(
      fetchCommittedStatement(this.#tables, groupId, topics),
    );
    return rows.map((r) => ({
      topic: r.topic,
      partition: r.partition,
      offset: toBigInt(r.committed_offset),
      metadata: r.metadata,
      committedAt: Math.floor(r.committed_at),
    }));
  }

  async listGroups(): Promise<string[]> {
    const { rows } = await this.#query<{ group_id: string }>(listGroupsStatement(this.#tables));
    return rows.map((r) => r.group_id);
  }

  async describeGroup(groupId: string): Promise<GroupDescription> {
    const members = await this.#query<LiveMemberRow>(liveMembersStatement(this.#tables, groupId));
    const parts = await this.#query<{
      topic: string;
      partition: number;
      committed_offset: string | null;
      log_start_offset: string;
      log_end_offset: string;
      member_id: string | null;
      generation: string | null;
      first_unconsumed_ts: number | null;
    }>(describeGroupStatement(this.#tables, groupId));
    return {
      groupId,
      members: members.rows.map(toLiveMember),
      partitions: parts.rows.map((r) => ({
        topic: r.topic,
        partition: r.partition,
        committedOffset: r.committed_offset === null ? null : toBigInt(r.committed_offset),
        logStartOffset: toBigInt(r.log_start_offset),
        logEndOffset: toBigInt(r.log_end_offset),
        firstUnconsumedTimestamp: r.first_unconsumed_ts === null ? null : Math.floor(r.first_unconsumed_ts),
        ownerMemberId: r.member_id,
        generation: r.generation === null ? null : toBigInt(r.generation),
      })),
    };
  }

  async describeLag(query: LagQuery = {}): Promise<LagSnapshot> {
    type GroupPartitionRow = [string, string, number, string | null, string, string, string | null, string | null, number | null];
    type Row = {
      now: number;
      partitions: Array<[string, number, string, string]>;
      groups: Array<[string, number | string]>;
      group_partitions: GroupPartitionRow[];
    };
    const statement = describeLagStatement(this.#tables, query.groupIds ?? null, query.topics ?? null);
    // The planner's estimates for this statement (CTEs over unions, a correlated lookup per group
    // partition) pass jit_above_cost even on an empty log, and JIT-compiling it took seconds where
    // running it takes milliseconds: JIT is off for this one read-only transaction.
    const row = await this.#inTransaction(async (client) => {
      await client.query('SET LOCAL jit = off');
      const { rows } = await client.query<Row>(statement.text, statement.values);
      return rows[0]!;
    });
    const byGroup = new Map<string, GroupPartitionRow[]>();
    for (const r of row.group_partitions) {
      let list = byGroup.get(r[0]);
      if (!list) byGroup.set(r[0], (list = []));
      list.push(r);
    }
    return {
      now: Math.floor(row.now),
      partitions: row.partitions.map(([topic, partition, low, high]) => ({ topic, partition, low: toBigInt(low), high: toBigInt(high) })),
      groups: row.groups.map(([groupId, live]) => ({
        groupId,
        liveMembers: Number(live),
        partitions: (byGroup.get(groupId) ?? []).map(([, topic, partition, committed, low, high, owner, generation, ts]) => ({
          topic,
          partition,
          committedOffset: committed === null ? null : toBigInt(committed),
          logStartOffset: toBigInt(low),
          logEndOffset: toBigInt(high),
          firstUnconsumedTimestamp: ts === null ? null : Math.floor(ts),
          ownerMemberId: owner,
          generation: generation === null ? null : toBigInt(generation),
        })),
      })),
    };
  }

  async deleteGroups(groupIds: readonly string[]): Promise<void> {
    await this.#inTransaction(async (client) => {
      const [members, ...rest] = deleteGroupStatements(this.#tables, groupIds);
      const live = await client.query<{ group_id: string }>(members!.text, members!.values);
      if (live.rows.length > 0) {
        const groupId = live.rows[0]!.group_id;
        throw new GroupNotEmptyError(`Group "${groupId}" has live members; stop its consumers before deleting it.`, { groupId });
      }
      for (const st of rest) await client.query(st.text, st.values);
    });
  }

  // ---- reading -------------------------------------------------------------------------------

  async fetch(topic: string, partition: number, offset: bigint, limits: FetchLimits): Promise<FetchResult> {
    const { rows } = await this.#query<{
      high: string;
      low: string;
      offset: string | null;
      ts: number | null;
      key: Buffer | null;
      value: Buffer | null;
      headers: Buffer | null;
    }>(this.#prepared(plans.fetchStatement(this.#tables, topic, partition, offset, limits.maxRecords), true));
    const first = rows[0];
    if (!first) {
      throw new UnknownTopicOrPartitionError(`Partition ${partition} of topic "${topic}" does not exist.`, { topic, partition });
    }
    const records: StoredRecord[] = [];
    let bytes = 0;
    for (const r of rows) {
      if (r.offset === null) break;
      const size = (r.key?.length ?? 0) + (r.value?.length ?? 0) + (r.headers?.length ?? 0);
      if (records.length > 0 && bytes + size > limits.maxBytes) break;
      bytes += size;
      records.push({
        topic,
        partition,
        offset: toBigInt(r.offset),
        timestamp: Math.floor(r.ts!),
        key: r.key,
        value: r.value,
        headers: decodeHeaders(r.headers),
      });
    }
    return { records, highWatermark: toBigInt(first.high), logStartOffset: toBigInt(first.low) };
  }

  async watch(topics: readonly string[], listener: AppendListener): Promise<() => Promise<void>> {
    if (!this.#listener) {
      const o = this.#options;
      const connectionString = o.connectionString ?? (o.connectionStringProvider ? await o.connectionStringProvider() : undefined);
      // disconnect() may have run while this awaited the provider: a listener made now would
      // never be closed.
      if (!this.#pool) throw new NotConnectedError('The Postgres storage was disconnected: call connect() first.');
      // Another watch() may have created it meanwhile: one LISTEN connection per storage, or the
      // other would be left open (disconnect closes only one).
      this.#listener ??= new PgListener(this.#tables.channel, this.#tables.channelIdent, () =>
        connectionString ? new pg.Client({ connectionString, connectionTimeoutMillis: o.connectionTimeoutMs }) : checkoutGuarded(this.pool),
      );
    }
    const unlisten = await this.#listener.add(new Set(topics), listener);
    const release = await this.#holdWatchLeases(topics, (topic) => listener(topic, -1));
    return async () => {
      release();
      await unlisten();
    };
  }

  /** What holds watch leases in this process: watchers and group sessions, with how to wake each. */
  readonly #leaseHolders = new Set<{ readonly topics: ReadonlySet<string>; readonly wake: (topic: string) => void }>();
  #leaseTimer: NodeJS.Timeout | undefined;

  /**
   * Holds watch leases on the topics' partitions until the returned function is called: appends
   * send wake-ups only for partitions with a live lease (migration 0009), so producing to a topic
   * nobody waits on costs no NOTIFY. Registering usually takes one round trip, and then any append
   * that did not see the lease committed before it (it waited for that append's head lock), so the
   * caller's next fetch finds its records. A head lock held by an open transaction can make it
   * wait longer: then it goes on in the background, and once done wakes the holder for topics
   * whose lease had been missing or lapsed. Renewed every quarter of `watchLeaseMs`, with the same
   * wake-up should a renewal come late.
   */
  async #holdWatchLeases(topics: readonly string[], wake: (topic: string) => void): Promise<() => void> {
    const holder = { topics: new Set(topics), wake };
    this.#leaseHolders.add(holder);
    if (!this.#leaseTimer) {
      this.#leaseTimer = setInterval(() => {
        const all = new Set([...this.#leaseHolders].flatMap((h) => [...h.topics]));
        void this.#renewWatchLeases([...all]).then((lapsed) => this.#wakeLapsed(lapsed));
      }, Math.floor(this.#options.watchLeaseMs / 4));
      this.#leaseTimer.unref();
    }
    const done = this.#renewWatchLeases([...holder.topics]);
    const inTime = await Promise.race([done.then(() => true), new Promise<boolean>((resolve) => setTimeout(resolve, 100, false).unref())]);
    if (!inTime) void done.then((lapsed) => this.#wakeLapsed(lapsed));
    return () => {
      this.#leaseHolders.delete(holder);
      if (this.#leaseHolders.size === 0 && this.#leaseTimer) {
        clearInterval(this.#leaseTimer);
        this.#leaseTimer = undefined;
      }
    };
  }

  #wakeLapsed(lapsed: ReadonlySet<string>): void {
    if (lapsed.size === 0) return;
    for (const h of this.#leaseHolders) for (const topic of lapsed) if (h.topics.has(topic)) h.wake(topic);
  }

  /**
   * Registers or renews watch leases (leases with more than half their length left are not
   * rewritten); returns the topics with a partition whose lease was missing or had lapsed. Never
   * rejects: a failure is left to the next renewal, and watchers poll meanwhile (`maxWaitTimeInMs`).
   */
  async #renewWatchLeases(topics: readonly string[]): Promise<Set<string>> {
    if (topics.length === 0 || !this.#pool) return new Set();
    try {
      const { rows } = await this.#query<{ topic: string | null }>(plans.renewWatchLeasesStatement(this.#tables, topics, this.#options.watchLeaseMs));
      return new Set(rows.flatMap((r) => (r.topic === null ? [] : [r.topic])));
    } catch {
      return new Set();
    }
  }

}

/** Statements {@link PgLogStorage.handlerStatement} may prepare: row-less writes. */
const PREPARABLE_WRITE = /^\s*(insert|update|delete)\s/i;
const RETURNING = /\breturning\b/i;

function sortAppends(appends: readonly PartitionAppend[]): PartitionAppend[] {
  return [...appends].sort((a, b) => (a.topic < b.topic ? -1 : a.topic > b.topic ? 1 : a.partition - b.partition));
}

function groupsOf(appends: readonly PartitionAppend[]): plans.AppendGroup[] {
  const sorted = sortAppends(appends);
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i]!.topic === sorted[i - 1]!.topic && sorted[i]!.partition === sorted[i - 1]!.partition) {
      throw new InvalidOptionsError(`Append lists ${sorted[i]!.topic}[${sorted[i]!.partition}] twice; merge its records first.`);
    }
  }
  return sorted.map((a) => ({
    topic: a.topic,
    partition: a.partition,
    rows: a.records.map((r) => ({
      timestamp: r.timestamp === null ? null : new Date(r.timestamp),
      key: r.key,
      value: r.value,
      headers: encodeHeaders(r.headers),
    })),
  }));
}

function resultsOf(
  appends: readonly PartitionAppend[],
  rows: ReadonlyArray<{ topic?: string; partition?: number; base: string; w?: boolean | null }>,
): PartitionAppendResult[] {
  // A row without topic and partition comes from a one-partition statement: it is appends[0]'s.
  const byKey = new Map(rows.map((r) => [`${r.topic ?? appends[0]!.topic}\u0000${r.partition ?? appends[0]!.partition}`, r]));
  return appends.map((a) => {
    const row = byKey.get(`${a.topic}\u0000${a.partition}`);
    if (row === undefined) {
      throw new UnknownTopicOrPartitionError(`Partition ${a.partition} of topic "${a.topic}" does not exist.`, {
        topic: a.topic,
        partition: a.partition,
      });
    }
    // A statement that does not report the lease (w undefined) wakes, to be safe.
    return withLease({ topic: a.topic, partition: a.partition, baseOffset: toBigInt(row.base), duplicate: false }, row.w);
  });
}

/**
 * A transaction that begins on first use. The Kysely handle's pool hands out the transaction's
 * client and begins the transaction when Kysely first asks for a connection, so a handler that
 * never queries never opens one.
 */
class PgDeferredTransaction<DB> implements DeferredTransaction<Kysely<DB>> {
  readonly #storage: PgLogStorage<DB>;
  readonly #options: StorageTransactionOptions;
  readonly #started = Date.now();
  #begin: Promise<pg.PoolClient> | undefined;
  #client: pg.PoolClient | undefined;
  #db: Kysely<DB> | undefined;
  #ended = false;
  #savepoints = 0;
  /** Partitions this transaction appended to: their watchers are woken after COMMIT (a spurious wake-up after a rolled-back savepoint is harmless). */
  readonly #appended: PartitionAppendResult[] = [];
  /**
   * Savepoints are lazy: `savepoint(fn)` only declares one, and it is sent just before `fn`'s first
   * statement on the transaction (a handler that does not touch the transaction costs nothing), in
   * the same round trip as the release of the one before it (which COMMIT would release anyway).
   */
  #declared: string | undefined;
  /** The savepoint sent for the running `fn` (its SAVEPOINT statement's outcome). */
  #sent: { readonly name: string; readonly done: Promise<unknown> } | undefined;
  /** A finished savepoint not released yet: the next SAVEPOINT (or COMMIT) releases it. */
  #releasable: string | undefined;

  constructor(storage: PgLogStorage<DB>, options: StorageTransactionOptions) {
    this.#storage = storage;
    this.#options = options;
  }

  get begun(): boolean {
    return this.#begin !== undefined;
  }

  #ensure(): Promise<pg.PoolClient> {
    if (this.#ended) {
      return Promise.reject(new InvalidTransactionStateError('This transaction has ended; its handle cannot be used any more.'));
    }
    this.#begin ??= (async () => {
      const client = await this.#storage.acquireClient();
      try {
        await client.query('BEGIN');
        const acks = this.#options.acks;
        if (acks !== undefined && acks !== -1) await client.query(`SET LOCAL synchronous_commit = ${acks === 1 ? 'local' : 'off'}`);
        if (this.#options.timeoutMs !== undefined) {
          // Backstop: a transaction forgotten idle (holding locks) is ended by the server itself.
          await client.query(`SET LOCAL idle_in_transaction_session_timeout = ${Math.max(1, Math.floor(this.#options.timeoutMs))}`);
        }
      } catch (error) {
        client.release(isConnectionFailure(error) ? (error as Error) : undefined);
        throw translatePgError(error);
      }
      // Pipelined for the transaction's life: a lazy SAVEPOINT and the statement behind it go out
      // together (one round trip, not two). Switched off again, idle, before the client goes back.
      setPipeline(client, true);
      this.#client = client;
      return client;
    })();
    return this.#begin;
  }

  #wrapped: { readonly client: pg.PoolClient; readonly wrapper: { query: pg.PoolClient['query']; release: () => void } } | undefined;

  get db(): Kysely<DB> {
    this.#db ??= new Kysely<DB>({
      dialect: new PostgresDialect({
        pool: {
          connect: async () => {
            const client = await this.#use();
            // The same wrapper for every statement on this client: Kysely keeps its connection
            // object per wrapper, so it is built once, not once per statement.
            if (this.#wrapped?.client !== client) {
              const storage = this.#storage;
              const query = (text: unknown, values?: unknown[]) =>
                typeof text === 'string' ? client.query(storage.handlerStatement(text, values)) : (client.query as (t: unknown, v?: unknown[]) => unknown)(text, values);
              this.#wrapped = { client, wrapper: { query: query as pg.PoolClient['query'], release: () => {} } };
            }
            return this.#wrapped.wrapper;
          },
          end: async () => {},
        } as never,
      }),
    });
    return this.#db;
  }

  async append(appends: readonly PartitionAppend[], options?: AppendOptions): Promise<PartitionAppendResult[]> {
    if (appends.length === 0) return [];
    const client = await this.#use();
    const results = await this.#storage.appendOn(client, appends, options);
    this.#appended.push(...results);
    return results;
  }

  async commitOffsets(groupId: string, commits: readonly OffsetCommit[], fence?: CommitFence): Promise<void> {
    if (commits.length === 0) return;
    await this.#storage.commitOffsetsOn(await this.#use(), groupId, commits, fence);
  }

  async appendToStreams(appends: readonly PartitionAppend[], streams: readonly StreamExpectation[]): Promise<StreamAppendResult> {
    if (appends.length === 0 && streams.length === 0) return { appends: [], streams: [] };
    const client = await this.#use();
    const result = await this.#storage.appendToStreamsOn(client, appends, streams);
    this.#appended.push(...result.appends);
    return result;
  }

  async readStream(topic: string, partition: number, key: Uint8Array, options?: StreamReadOptions): Promise<StreamSlice> {
    if (this.#ended) throw new InvalidTransactionStateError('This transaction has ended; its handle cannot be used any more.');
    // Not begun: it has written nothing, so the committed stream is what it would see.
    if (!this.#begin) return this.#storage.readStream(topic, partition, key, options);
    return this.#storage.readStreamOn(await this.#use(), topic, partition, key, options);
  }

  /**
   * The client for a statement of the transaction: begins it if need be, and sends a declared
   * savepoint first. The SAVEPOINT is queued on the client ahead of the caller's statement and
   * not awaited here (the client runs its queries in order); `savepoint()` checks its outcome.
   */
  async #use(): Promise<pg.PoolClient> {
    const client = await this.#ensure();
    const name = this.#declared;
    if (name !== undefined && this.#client === client) {
      this.#declared = undefined;
      const release = this.#releasable;
      this.#releasable = undefined;
      // Held back (corked) until the caller's statement is queued behind it — it is, within the same
      // run of microtasks — so both reach the server in one write: one wake-up of the backend per
      // record, not two. Uncorked on the next tick whatever happens.
      const stream = (client as unknown as { connection?: { stream?: { cork?: () => void; uncork?: () => void } } }).connection?.stream;
      const corked = typeof stream?.cork === 'function' && typeof stream.uncork === 'function';
      if (corked) {
        stream!.cork!();
        process.nextTick(() => stream!.uncork!());
      }
      const done = client.query(release ? `RELEASE SAVEPOINT ${release}; SAVEPOINT ${name}` : `SAVEPOINT ${name}`);
      done.catch(() => {});
      this.#sent = { name, done };
    }
    return client;
  }

  savepoint<T>(fn: () => Promise<T>): Promise<T> {
    // Not an async function itself: the not-begun case (a consumer handler that does not use the
    // transaction, once per record) goes straight to its own path, one promise less.
    const client = this.#client;
    if (!client) return this.#savepointBeforeBegin(fn);
    return this.#savepointOn(client, fn);
  }

  async #savepointOn<T>(client: pg.PoolClient, fn: () => Promise<T>): Promise<T> {
    if (this.#declared !== undefined || this.#sent !== undefined) {
      // Nested: a savepoint of its own, sent at once.
      return this.#eagerSavepoint(client, fn);
    }
    const name = `annals_sp_${++this.#savepoints}`;
    this.#declared = name;
    let result: T;
    try {
      result = await fn();
    } catch (error) {
      const sent = this.#takeSent();
      if (sent) {
        // Undo what fn wrote; the savepoint itself goes too.
        await sent.done.catch(() => {});
        await client.query(`ROLLBACK TO SAVEPOINT ${sent.name}; RELEASE SAVEPOINT ${sent.name}`).catch(() => {});
      }
      throw translatePgError(error);
    }
    const sent = this.#takeSent();
    if (sent) {
      try {
        await sent.done;
      } catch (error) {
        throw translatePgError(error);
      }
      this.#releasable = sent.name;
    }
    return result;
  }

  #takeSent(): { readonly name: string; readonly done: Promise<unknown> } | undefined {
    const sent = this.#sent;
    this.#declared = undefined;
    this.#sent = undefined;
    return sent;
  }

  async #eagerSavepoint<T>(client: pg.PoolClient, fn: () => Promise<T>): Promise<T> {
    const name = `annals_sp_${++this.#savepoints}`;
    await this.#use();
    await this.#sent?.done.catch(() => {});
    await client.query(`SAVEPOINT ${name}`).catch((e: unknown) => Promise.reject(translatePgError(e)));
    try {
      const result = await fn();
      await client.query(`RELEASE SAVEPOINT ${name}`);
      return result;
    } catch (error) {
      await client.query(`ROLLBACK TO SAVEPOINT ${name}`).catch(() => {});
      throw translatePgError(error);
    }
  }

  /**
   * A savepoint taken before the transaction began: if `fn` begins it and throws, everything the
   * transaction holds is `fn`'s, so it is rolled back whole and the handle goes back to "not begun"
   * (usable again), as a savepoint would leave it. Without this, a consumer handler whose first
   * use of `tx` preceded its failure had that attempt's writes committed with the batch.
   */
  #savepointBeforeBegin<T>(fn: () => Promise<T>): Promise<T> {
    // No async frame: once per record of a consumer whose handlers do not use the transaction.
    let result: Promise<T>;
    try {
      result = fn();
    } catch (error) {
      return this.#undoBeforeBegin(error);
    }
    // A callback that is not an async function (a KafkaJS handler written without `async`) may
    // return a plain value or another thenable: adopted, as `await` would.
    if (!(result instanceof Promise)) result = Promise.resolve(result);
    return result.then(undefined, this.#undoBeforeBeginFn);
  }

  readonly #undoBeforeBeginFn = (error: unknown): Promise<never> => this.#undoBeforeBegin(error);

  /** `fn` of a savepoint taken before the transaction began failed: undo whatever it began. */
  async #undoBeforeBegin(error: unknown): Promise<never> {
    const begun = this.#begin;
    if (begun && !this.#ended) {
      this.#begin = undefined;
      this.#client = undefined;
      const client = await begun.catch(() => undefined);
      if (client) {
        let broken: unknown;
        await client.query('ROLLBACK').catch((e: unknown) => (broken = e));
        if (!setPipeline(client, false)) broken ??= true;
        client.release(broken instanceof Error ? broken : broken ? true : undefined);
      }
    }
    throw translatePgError(error);
  }

  async commit(): Promise<void> {
    if (this.#ended) throw new InvalidTransactionStateError('This transaction has already ended.');
    this.#ended = true;
    if (!this.#begin) return;
    const client = await this.#begin;
    let broken: unknown;
    try {
      if (this.#options.timeoutMs !== undefined && Date.now() - this.#started > this.#options.timeoutMs) {
        await client.query('ROLLBACK').catch((e: unknown) => (broken = e));
        throw new TransactionTimeoutError(
          `The transaction stayed open ${Date.now() - this.#started} ms, longer than its timeout (${this.#options.timeoutMs} ms), and was rolled back.`,
        );
      }
      await client.query('COMMIT');
    } catch (error) {
      if (isConnectionFailure(error)) broken = error;
      throw translateCommitError(error);
    } finally {
      if (!setPipeline(client, false)) broken ??= true;
      client.release(broken instanceof Error ? broken : broken ? true : undefined);
    }
    this.#storage.wakeAfterCommit(this.#appended);
  }

  async rollback(): Promise<void> {
    if (this.#ended) return;
    this.#ended = true;
    if (!this.#begin) return;
    const client = await this.#begin.catch(() => undefined);
    if (!client) return;
    let broken: unknown;
    try {
      await client.query('ROLLBACK');
    } catch (error) {
      broken = error;
    } finally {
      if (!setPipeline(client, false)) broken ??= true;
      client.release(broken instanceof Error ? broken : broken ? true : undefined);
    }
  }
}

/**
 * Turns node-postgres's pipeline mode on or off for a client (pg ≥ 8.2x: queries are written
 * without waiting for the previous one's answer, answers are matched in order). Only switched while
 * the client is idle; switching off with queries still on the wire would mismatch their answers,
 * so it reports false then and the caller discards the client.
 */
function setPipeline(client: pg.PoolClient, on: boolean): boolean {
  const c = client as unknown as { pipeline?: boolean; _sentQueryQueue?: unknown[]; _queryQueue?: unknown[]; _activeQuery?: unknown };
  if (c.pipeline === undefined || c.pipeline === on) return true;
  if (!on) {
    if ((c._sentQueryQueue?.length ?? 0) > 0 || (c._queryQueue?.length ?? 0) > 0 || c._activeQuery) return false;
  }
  c.pipeline = on;
  return true;
}

type ListenClient = pg.Client | pg.PoolClient;

/**
 * One LISTEN session per storage, shared by every watcher. It reconnects with backoff when the
 * connection drops, and then calls every listener once for every partition it watches (a
 * notification may have been missed while it was down), so consumers re-fetch instead of stalling.
 */
class PgListener {
  readonly #channel: string;
  readonly #channelIdent: string;
  readonly #open: () => Promise<ListenClient> | ListenClient;
  readonly #entries = new Set<{ topics: Set<string>; listener: AppendListener }>();
  #client: ListenClient | undefined;
  #starting: Promise<void> | undefined;
  #closed = false;
  #retryTimer: NodeJS.Timeout | undefined;
  #detach: () => void = () => {};

  constructor(channel: string, channelIdent: string, open: () => Promise<ListenClient> | ListenClient) {
    this.#channel = channel;
    this.#channelIdent = channelIdent;
    this.#open = open;
  }

  async add(topics: Set<string>, listener: AppendListener): Promise<() => Promise<void>> {
    const entry = { topics, listener };
    this.#entries.add(entry);
    try {
      await this.#ensure();
    } catch (error) {
      this.#entries.delete(entry);
      throw translatePgError(error);
    }
    return async () => {
      this.#entries.delete(entry);
    };
  }

  #ensure(): Promise<void> {
    if (this.#client || this.#closed) return Promise.resolve();
    this.#starting ??= this.#start().finally(() => {
      this.#starting = undefined;
    });
    return this.#starting;
  }

  async #start(): Promise<void> {
    const opened = await this.#open();
    // Listeners first: a connection that fails right after its startup (even in the packet that
    // completes it) must reach #lost or the catch below, never be an uncaught 'error'.
    const lost = () => this.#lost(opened);
    const notified = (message: pg.Notification) => {
      if (message.channel !== this.#channel || !message.payload) return;
      const slash = message.payload.lastIndexOf('/');
      const topic = message.payload.slice(0, slash);
      const partition = Number(message.payload.slice(slash + 1));
      for (const e of this.#entries) if (e.topics.has(topic)) e.listener(topic, partition);
    };
    this.#detach = attachListeners(opened, { error: lost, end: lost, notification: notified });
    try {
      if (!('release' in opened)) await (opened as pg.Client).connect();
      await opened.query(`LISTEN ${this.#channelIdent}`);
    } catch (error) {
      // Never leak it: a pool's client goes back destroyed (or its slot would be gone for good).
      if ('release' in opened) (opened as pg.PoolClient).release(true);
      else await (opened as pg.Client).end().catch(() => {});
      throw error;
    }
    this.#client = opened;
  }

  #lost(client: ListenClient): void {
    if (this.#client !== client) return;
    this.#client = undefined;
    if ('release' in client) (client as pg.PoolClient).release(true);
    if (this.#closed) return;
    const retry = (delay: number) => {
      this.#retryTimer = setTimeout(() => {
        this.#ensure().then(
          () => {
            // Missed notifications while down: wake every watcher for every partition it may have missed.
            for (const e of this.#entries) for (const topic of e.topics) e.listener(topic, -1);
          },
          () => retry(Math.min(delay * 2, 5_000)),
        );
      }, delay);
      this.#retryTimer.unref();
    };
    retry(100);
  }

  async close(): Promise<void> {
    this.#closed = true;
    if (this.#retryTimer) clearTimeout(this.#retryTimer);
    await this.#starting?.catch(() => {});
    const client = this.#client;
    this.#client = undefined;
    if (!client) return;
    if ('release' in client) {
      const unlistened = await client.query(`UNLISTEN ${this.#channelIdent}`).then(
        () => true,
        () => false,
      );
      this.#detach();
      // Still listening (UNLISTEN failed): destroyed, never handed back to the application's pool.
      client.release(unlistened ? undefined : true);
    } else {
      await client.end().catch(() => {});
    }
  }
}
