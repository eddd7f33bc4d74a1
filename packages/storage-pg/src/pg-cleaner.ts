/**
 * The Postgres cleaner: retention, compaction and segment reclaim (port: `cleaner-storage.ts` in
 * `@annals/core`; SQL: `plans-cleaner.ts`; design: docs/architecture.md, "Retention and
 * compaction").
 *
 * The lease is a session-level advisory lock held by a dedicated session, and every statement of
 * a pass runs on that session: if the session dies, the lock frees and the work stops with it, so
 * two cleaners never run at once. Each statement is its own short transaction, bounded by
 * `chunkRecords`, so producers and consumers keep their latency while a pass runs.
 */
import type {
  CleanerLease,
  CleanPassOptions,
  CleanPassReport,
  PartitionCleanReport,
  TopicConfig,
} from '@annals/core';
import { CleanerLeaseLostError, InvalidOptionsError } from '@annals/core';
import type pg from 'pg';
import { attachListeners } from './internal/listeners.js';
import { translatePgError } from './internal/pg-errors.js';
import * as plans from './plans.js';
import * as cleaning from './plans-cleaner.js';

type SessionClient = pg.Client | pg.PoolClient;

/** How often, and how long apart, a log-start move is retried while appends hold the head row. */
const MOVE_ATTEMPTS = 50;
const MOVE_BACKOFF_MS = 10;

export class PgCleanerLease implements CleanerLease {
  #lost = false;
  #released = false;
  #running: Promise<unknown> | undefined;
  readonly #detach: () => void;

  constructor(
    private readonly client: SessionClient,
    private readonly close: (client: SessionClient, broken: boolean) => Promise<void>,
    private readonly tables: plans.Tables,
    private readonly cleanerTables: cleaning.CleanerTables,
  ) {
    const lose = () => {
      this.#lost = true;
    };
    this.#detach = attachListeners(client, { error: lose, end: lose });
  }

  get lost(): boolean {
    return this.#lost;
  }

  async clean(options: CleanPassOptions): Promise<CleanPassReport> {
    if (this.#released) throw new CleanerLeaseLostError('This cleaner lease was released; acquire a new one.');
    if (this.#lost) throw new CleanerLeaseLostError('The cleaner lease was lost (its database session ended): another process may be cleaning now. Acquire a new lease.');
    if (this.#running) throw new InvalidOptionsError('A cleaner pass is already running on this lease; wait for it to finish before starting another.');
    const run = this.#pass(options);
    this.#running = run;
    try {
      return await run;
    } finally {
      this.#running = undefined;
    }
  }

  async release(): Promise<void> {
    if (this.#released) return;
    this.#released = true;
    await this.#running?.catch(() => {});
    let broken = this.#lost;
    if (!broken) {
      try {
        await this.client.query(cleaning.releaseLeaseStatement(this.cleanerTables).text, cleaning.releaseLeaseStatement(this.cleanerTables).values);
        await this.client.query(cleaning.cleanerSessionResetSql);
      } catch {
        broken = true; // not released: the connection is closed (a pool's client destroyed), and the lock with it
      }
    }
    // A client of the application's pool goes back without this lease's listeners.
    this.#detach();
    await this.close(this.client, broken);
  }

  async #q<R extends pg.QueryResultRow>(statement: plans.Statement): Promise<R[]> {
    try {
      const result = await this.client.query<R>(statement.text, statement.values);
      return result.rows;
    } catch (error) {
      throw translatePgError(error);
    }
  }

  async #ddl(text: string): Promise<void> {
    try {
      await this.client.query(text);
    } catch (error) {
      throw translatePgError(error);
    }
  }

  async #pass(options: CleanPassOptions): Promise<CleanPassReport> {
    const started = performance.now();
    const t = this.tables;
    const now = options.now === undefined ? null : new Date(options.now);
    const topics = options.topics ? [...options.topics] : null;
    await this.#q(cleaning.noteTimeStatement(t, now, topics));
    const states = await this.#q<cleaning.PartitionCleanState>(cleaning.cleanStateStatement(t, this.cleanerTables, now, topics));
    const reports: PartitionCleanReport[] = [];
    const byTopic = new Map<string, cleaning.PartitionCleanState[]>();
    for (const s of states) {
      const list = byTopic.get(s.topic) ?? [];
      list.push(s);
      byTopic.set(s.topic, list);
    }
    for (const [topic, partitions] of byTopic) {
      if (options.signal?.aborted) break;
      const segments = await this.#q<cleaning.SegmentRow>(cleaning.segmentsStatement(t, topic));
      for (const state of partitions) {
        if (options.signal?.aborted) break;
        const report = await this.#cleanPartition(state, segments.filter((s) => s.partition === state.partition), options);
        reports.push(report);
        options.onPartition?.(report);
      }
    }
    return { partitions: reports, durationMs: performance.now() - started };
  }

  async #cleanPartition(state: cleaning.PartitionCleanState, segments: cleaning.SegmentRow[], options: CleanPassOptions): Promise<PartitionCleanReport> {
    const t = this.tables;
    const { topic, partition } = state;
    const config = state.config as unknown as TopicConfig;
    const policy = config['cleanup.policy'];
    const chunk = options.chunkRecords;
    const nextOffset = BigInt(state.next_offset);
    let logStart = BigInt(state.log_start_offset);
    let movedBy: PartitionCleanReport['logStartMovedBy'] = null;
    let recordsCompacted = 0;
    let tombstonesRemoved = 0;
    let recordsExpired = 0;
    let segmentsDropped = 0;
    let cleaned = BigInt(state.cleaned_offset);

    // 1. Retention: by time (the time notes), then by size (whole segments, oldest first).
    if (policy.includes('delete')) {
      let target = logStart;
      let reason: 'retention.ms' | 'retention.bytes' | null = null;
      if (state.retention_cutoff !== null && BigInt(state.retention_cutoff) > target) {
        target = BigInt(state.retention_cutoff);
        reason = 'retention.ms';
      }
      const limit = config['retention.bytes'];
      if (limit >= 0) {
        const live = segments.filter((s) => BigInt(s.end_offset) > target && BigInt(s.base_offset) < nextOffset && s.parent !== null);
        let total = live.reduce((sum, s) => sum + Number(s.bytes ?? 0), 0);
        for (const s of live) {
          const end = BigInt(s.end_offset);
          // Never the segment being written, and never below retention.bytes.
          if (end > nextOffset || total - Number(s.bytes ?? 0) < limit) break;
          total -= Number(s.bytes ?? 0);
          if (end > target) {
            target = end;
            reason = 'retention.bytes';
          }
        }
      }
      if (reason !== null && target > logStart) {
        const moved = await this.#moveLogStart(topic, partition, target, reason);
        if (moved > logStart) {
          logStart = moved;
          movedBy = reason;
        }
      }
    }

    // 2. Compaction, in chunks of offsets, from where the last pass stopped.
    if (policy.includes('compact')) {
      await this.#analyzeNew(topic, partition);
      const upTo = state.compaction_cutoff === null ? 0n : BigInt(state.compaction_cutoff);
      let from = cleaned > logStart ? cleaned : logStart;
      while (from < upTo && !options.signal?.aborted) {
        const below = from + BigInt(chunk) < upTo ? from + BigInt(chunk) : upTo;
        const [row] = await this.#q<{ n: number }>(cleaning.compactChunkStatement(t, this.cleanerTables, topic, partition, from, below, logStart));
        recordsCompacted += row?.n ?? 0;
        cleaned = below;
        from = below;
      }
      // Tombstones whose older records are gone (below the cleaned offset) and that have been in
      // the log for delete.retention.ms.
      if (state.tombstone_cutoff !== null) {
        const cut = BigInt(state.tombstone_cutoff);
        const below = cut < cleaned ? cut : cleaned;
        for (let n = chunk; n === chunk && !options.signal?.aborted; ) {
          const [row] = await this.#q<{ n: number }>(cleaning.removeTombstonesStatement(t, topic, partition, below, chunk));
          n = row?.n ?? 0;
          tombstonesRemoved += n;
        }
      }
    }

    // 3. Reclaim: drop segments wholly below the log start, or emptied by compaction; delete the
    //    rows under the log start in the segment that holds it.
    for (const s of segments) {
      if (options.signal?.aborted) break;
      const base = BigInt(s.base_offset);
      const end = BigInt(s.end_offset);
      if (end > nextOffset) break; // the segment being written and those kept ahead
      let drop = end <= logStart;
      if (!drop && policy.includes('compact') && end <= cleaned) {
        const [row] = await this.#q<{ empty: boolean }>(cleaning.segmentEmptyStatement(t, topic, partition, base, end));
        drop = row?.empty === true;
      }
      if (drop) {
        await this.#dropSegment(s);
        segmentsDropped++;
      } else if (base < logStart) {
        // Offset ranges of at most `chunk`, from the first row still stored (earlier passes may
        // have emptied the start of the range already).
        const [first] = await this.#q<{ first: string | null }>(cleaning.firstStoredStatement(t, topic, partition, base, logStart));
        if (first?.first == null) continue;
        for (let from = BigInt(first.first); from < logStart && !options.signal?.aborted; ) {
          const below = from + BigInt(chunk) < logStart ? from + BigInt(chunk) : logStart;
          const [row] = await this.#q<{ n: number }>(cleaning.deleteBelowStatement(t, topic, partition, from, below));
          recordsExpired += row?.n ?? 0;
          from = below;
        }
      }
    }
    await this.#q(cleaning.pruneTimeStatement(t, options.now === undefined ? null : new Date(options.now), topic, partition, logStart, longestTimeRule(config)));

    return {
      topic,
      partition,
      logStartOffset: logStart,
      logStartMovedBy: movedBy,
      recordsCompacted,
      tombstonesRemoved,
      recordsExpired,
      segmentsDropped,
      cleanedOffset: cleaned,
    };
  }

  /** Gives segments that were never analyzed statistics, once, so the deletes are planned well. */
  async #analyzeNew(topic: string, partition: number): Promise<void> {
    const rows = await this.#q<{ table_name: string }>(cleaning.unanalyzedSegmentsStatement(this.tables, topic, partition));
    for (const r of rows) await this.#ddl(cleaning.analyzeSegmentSql(this.tables.schema, r.table_name));
  }

  /** Moves the log start, retrying while appends hold the head row; returns where it is now. */
  async #moveLogStart(topic: string, partition: number, target: bigint, reason: string): Promise<bigint> {
    for (let attempt = 0; attempt < MOVE_ATTEMPTS; attempt++) {
      const [moved] = await this.#q<{ log_start_offset: string }>(cleaning.moveLogStartStatement(this.tables, topic, partition, target, reason));
      if (moved) return BigInt(moved.log_start_offset);
      const [current] = await this.#q<{ log_start_offset: string; next_offset: string }>(cleaning.logStartStatement(this.tables, topic, partition));
      if (!current) return 0n; // the topic was deleted meanwhile
      const start = BigInt(current.log_start_offset);
      const end = BigInt(current.next_offset);
      if (start >= (target < end ? target : end)) return start;
      await new Promise((resolve) => setTimeout(resolve, MOVE_BACKOFF_MS));
    }
    // Appends held the head row every time: the next pass tries again.
    const [current] = await this.#q<{ log_start_offset: string }>(cleaning.logStartStatement(this.tables, topic, partition));
    return current ? BigInt(current.log_start_offset) : 0n;
  }

  /** Detaches (without blocking appends or reads) and drops a segment, then forgets it. */
  async #dropSegment(s: cleaning.SegmentRow): Promise<void> {
    const schema = this.tables.schema;
    if (s.parent !== null) {
      await this.#ddl(cleaning.detachSegmentSql(schema, s.parent, s.table_name, s.detach_pending === true));
    }
    await this.#ddl(cleaning.dropSegmentSql(schema, s.table_name));
    await this.#q(cleaning.forgetSegmentStatement(this.tables, s.table_name));
  }
}

/** The longest duration any cutoff of this topic judges by (ms), or null when none applies. */
export function longestTimeRule(config: TopicConfig): number | null {
  const rules: number[] = [];
  if (config['cleanup.policy'].includes('delete') && config['retention.ms'] >= 0) rules.push(config['retention.ms']);
  if (config['cleanup.policy'].includes('compact')) rules.push(config['min.compaction.lag.ms'], config['delete.retention.ms']);
  return rules.length === 0 ? null : Math.max(...rules);
}

/** Tries the lease on a fresh session; closes the session when another holds it. */
export async function acquirePgCleaner(
  open: () => Promise<{ client: SessionClient; close: (client: SessionClient, broken: boolean) => Promise<void> }>,
  tables: plans.Tables,
): Promise<PgCleanerLease | null> {
  const cleanerTables = cleaning.cleanerTables(tables.schema);
  const { client, close } = await open();
  let acquired = false;
  try {
    const statement = cleaning.tryLeaseStatement(cleanerTables);
    const { rows } = await client.query<{ acquired: boolean }>(statement.text, statement.values);
    acquired = rows[0]?.acquired === true;
    if (acquired) await client.query(cleaning.cleanerSessionSql);
  } catch (error) {
    await close(client, true);
    throw translatePgError(error);
  }
  if (!acquired) {
    await close(client, false);
    return null;
  }
  return new PgCleanerLease(client, close, tables, cleanerTables);
}
