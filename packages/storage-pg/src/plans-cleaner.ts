/**
 * SQL plans of the cleaner: time notes, retention, compaction and segment reclaim. The cleaner
 * never takes a partition's head-row lock while waiting (`SKIP LOCKED`), so it never queues in
 * front of a producer; its own state lives in `partition_cleaning`, off the head row.
 */
import { quoteIdent } from './internal/ident.js';
import type { Statement, Tables } from './plans.js';

export interface CleanerTables {
  readonly schema: string;
  readonly partitionCleaning: string;
  /** `pg_try_advisory_lock(int, int)` keys: the two-int form, apart from partition locks. */
  readonly lockKeys: readonly [string, number];
}

export function cleanerTables(schema: string): CleanerTables {
  return Object.freeze({
    schema,
    partitionCleaning: `${quoteIdent(schema)}.${quoteIdent('partition_cleaning')}`,
    lockKeys: [`annals/${schema}/cleaner`, 0x616e6e] as const,
  });
}

/** Takes the cleaner lease: a session-level advisory lock in the two-int key space. */
export function tryLeaseStatement(c: CleanerTables): Statement {
  return { text: `SELECT pg_try_advisory_lock(hashtext($1), $2) AS acquired`, values: [c.lockKeys[0], c.lockKeys[1]] };
}

export function releaseLeaseStatement(c: CleanerTables): Statement {
  return { text: `SELECT pg_advisory_unlock(hashtext($1), $2) AS released`, values: [c.lockKeys[0], c.lockKeys[1]] };
}

const clock = `coalesce($1::timestamptz, clock_timestamp())`;

/**
 * Notes, for each partition of a topic that retention or compaction will judge by time, that
 * every record below its log end was appended by now. `clock_timestamp()` is read after the
 * statement's snapshot, so every record counted had committed before the time noted.
 */
export function noteTimeStatement(t: Tables, now: Date | null, topics: readonly string[] | null): Statement {
  return {
    text: `INSERT INTO ${t.timeIndex} (topic, partition, at, "offset")
SELECT p.topic, p.partition, ${clock}, p.next_offset
FROM ${t.partitions} p JOIN ${t.topics} tp ON tp.name = p.topic
WHERE ($2::text[] IS NULL OR p.topic = ANY ($2::text[]))
  AND ((tp.config->>'retention.ms')::bigint >= 0 OR tp.config->>'cleanup.policy' LIKE '%compact%')
  AND p.next_offset > p.log_start_offset
  AND p.next_offset > coalesce((SELECT max(ti."offset") FROM ${t.timeIndex} ti WHERE ti.topic = p.topic AND ti.partition = p.partition), -1)
ON CONFLICT DO NOTHING`,
    values: [now, topics],
  };
}

export interface PartitionCleanState {
  topic: string;
  partition: number;
  config: Record<string, unknown>;
  next_offset: string;
  log_start_offset: string;
  cleaned_offset: string;
  /** Records below this offset are older than retention.ms (NULL: none known). */
  retention_cutoff: string | null;
  /** Records below this offset are older than min.compaction.lag.ms. */
  compaction_cutoff: string | null;
  /** Tombstones below this offset are older than delete.retention.ms. */
  tombstone_cutoff: string | null;
}

/** Each partition's state and its time cutoffs, judged by the database clock (or `$1`). */
export function cleanStateStatement(t: Tables, c: CleanerTables, now: Date | null, topics: readonly string[] | null): Statement {
  const cutoff = (key: string) => `(SELECT max(ti."offset") FROM ${t.timeIndex} ti
      WHERE ti.topic = p.topic AND ti.partition = p.partition
        AND ti.at <= clk.now - ((tp.config->>'${key}')::bigint * interval '1 millisecond'))::text`;
  return {
    text: `WITH clk AS (SELECT ${clock} AS now)
SELECT p.topic, p.partition, tp.config, p.next_offset::text AS next_offset, p.log_start_offset::text AS log_start_offset,
  coalesce(pc.cleaned_offset, 0)::text AS cleaned_offset,
  CASE WHEN (tp.config->>'retention.ms')::bigint >= 0 THEN ${cutoff('retention.ms')} END AS retention_cutoff,
  CASE WHEN (tp.config->>'min.compaction.lag.ms')::bigint = 0 THEN p.next_offset::text ELSE ${cutoff('min.compaction.lag.ms')} END AS compaction_cutoff,
  ${cutoff('delete.retention.ms')} AS tombstone_cutoff
FROM clk, ${t.partitions} p JOIN ${t.topics} tp ON tp.name = p.topic
LEFT JOIN ${c.partitionCleaning} pc ON pc.topic = p.topic AND pc.partition = p.partition
WHERE ($2::text[] IS NULL OR p.topic = ANY ($2::text[]))
ORDER BY p.topic, p.partition`,
    values: [now, topics],
  };
}

export interface SegmentRow {
  partition: number;
  base_offset: string;
  end_offset: string;
  table_name: string;
  /** Quoted, schema-qualified name of the table it is attached to (NULL: detached). */
  parent: string | null;
  detach_pending: boolean | null;
  bytes: string | null;
}

/** A topic's segments with their size on disk and attachment state. */
export function segmentsStatement(t: Tables, topic: string): Statement {
  return {
    text: `SELECT s.partition, s.base_offset::text AS base_offset, s.end_offset::text AS end_offset, s.table_name,
  i.inhparent::regclass::text AS parent, i.inhdetachpending AS detach_pending,
  pg_table_size(to_regclass(format('%I.%I', $2::text, s.table_name)))::text AS bytes
FROM ${t.segments} s
LEFT JOIN pg_inherits i ON i.inhrelid = to_regclass(format('%I.%I', $2::text, s.table_name))
WHERE s.topic = $1
ORDER BY s.partition, s.base_offset`,
    values: [topic, t.schema],
  };
}

/**
 * Moves a partition's log start forward (never back, never past the log end) unless an append
 * holds its head row right now: then no row comes back and the caller tries again later.
 */
export function moveLogStartStatement(t: Tables, topic: string, partition: number, offset: bigint, reason: string): Statement {
  return {
    text: `WITH target AS (
  SELECT topic, partition FROM ${t.partitions}
  WHERE topic = $1 AND partition = $2 AND log_start_offset < least($3::bigint, next_offset)
  FOR NO KEY UPDATE SKIP LOCKED
)
UPDATE ${t.partitions} p
SET log_start_offset = least($3::bigint, p.next_offset), log_start_reason = $4, log_start_changed_at = clock_timestamp()
FROM target WHERE p.topic = target.topic AND p.partition = target.partition
RETURNING p.log_start_offset::text AS log_start_offset`,
    values: [topic, partition, offset.toString(), reason],
  };
}

/** The partition's log start offset and end, as committed. */
export function logStartStatement(t: Tables, topic: string, partition: number): Statement {
  return {
    text: `SELECT log_start_offset::text AS log_start_offset, next_offset::text AS next_offset FROM ${t.partitions} WHERE topic = $1 AND partition = $2`,
    values: [topic, partition],
  };
}

/**
 * Removes the records in `[from, below)` — rows under the log start in a segment that stays. The
 * caller keeps `below - from` at most `chunkRecords`, so one statement removes at most that many
 * (offsets are unique). A plain range: planned against the one segment that holds it, no join.
 * (The earlier `DELETE … USING (SELECT … LIMIT n)` could not be pruned at plan time, so it was
 * planned against every segment of the topic, estimated at millions of rows and JIT-compiled:
 * ~200 ms of CPU per 5,000-row chunk against ~30 ms for this; see docs/performance.md, "Retention".)
 */
export function deleteBelowStatement(t: Tables, topic: string, partition: number, from: bigint, below: bigint): Statement {
  return {
    text: `WITH gone AS (
  DELETE FROM ${t.records} WHERE topic = $1 AND partition = $2 AND "offset" >= $3 AND "offset" < $4 RETURNING 1
)
SELECT count(*)::int AS n FROM gone`,
    values: [topic, partition, from.toString(), below.toString()],
  };
}

/** The lowest offset still stored in `[from, below)` (NULL: none), so a sweep skips ranges already emptied. */
export function firstStoredStatement(t: Tables, topic: string, partition: number, from: bigint, below: bigint): Statement {
  return {
    text: `SELECT min("offset")::text AS first FROM ${t.records} WHERE topic = $1 AND partition = $2 AND "offset" >= $3 AND "offset" < $4`,
    values: [topic, partition, from.toString(), below.toString()],
  };
}

/**
 * Settings of the cleaner's session. `jit = off`: every cleaner statement is a short chunk, and
 * a join whose row estimate is inflated by a partitioned table (compaction's `DELETE … USING`)
 * would otherwise pay ~100 ms of JIT compilation per chunk — CPU taken from producers.
 */
export const cleanerSessionSql = 'SET jit = off';
export const cleanerSessionResetSql = 'RESET jit';

/**
 * Compacts one chunk `[from, below)`: for every key written in it, removes the records of that key
 * below its latest offset in the chunk (anywhere in the partition, by the key index), and records
 * that compaction has examined everything below `below` — in one statement, so both or neither.
 */
export function compactChunkStatement(t: Tables, c: CleanerTables, topic: string, partition: number, from: bigint, below: bigint, logStart: bigint): Statement {
  return {
    // The plan is forced, since fresh segments have no statistics and a misestimate is ruinous
    // (measured: a hash join or join filter rescanned the partition per key, 11 min per chunk):
    // OFFSET 0 keeps the LATERAL subquery from being flattened, so each key is one probe of the
    // (topic, partition, key, offset) index per segment; the delete takes an array of offsets,
    // an index condition on the primary key with run-time pruning to the segments holding them.
    text: `WITH latest AS (
  SELECT key, max("offset") AS o FROM ${t.records}
  WHERE topic = $1 AND partition = $2 AND "offset" >= $3 AND "offset" < $4 AND key IS NOT NULL
  GROUP BY key
), older AS (
  SELECT o."offset" FROM latest l CROSS JOIN LATERAL (
    SELECT "offset" FROM ${t.records}
    WHERE topic = $1 AND partition = $2 AND key IS NOT NULL AND key = l.key AND "offset" < l.o AND "offset" >= $5
    OFFSET 0
  ) o
), gone AS (
  DELETE FROM ${t.records}
  WHERE topic = $1 AND partition = $2 AND "offset" = ANY (ARRAY(SELECT "offset" FROM older))
  RETURNING 1
), mark AS (
  INSERT INTO ${c.partitionCleaning} (topic, partition, cleaned_offset, cleaned_at) VALUES ($1, $2, $4, clock_timestamp())
  ON CONFLICT (topic, partition) DO UPDATE
    SET cleaned_offset = greatest(${c.partitionCleaning}.cleaned_offset, excluded.cleaned_offset), cleaned_at = excluded.cleaned_at
)
SELECT count(*)::int AS n FROM gone`,
    values: [topic, partition, from.toString(), below.toString(), logStart.toString()],
  };
}

/** Removes at most `limit` tombstones below `below` (by the tombstone index). */
export function removeTombstonesStatement(t: Tables, topic: string, partition: number, below: bigint, limit: number): Statement {
  return {
    // An array of offsets, not a join: an index condition whatever the (missing) statistics say.
    text: `WITH gone AS (
  DELETE FROM ${t.records}
  WHERE topic = $1 AND partition = $2 AND value IS NULL AND "offset" = ANY (ARRAY(
    SELECT "offset" FROM ${t.records} WHERE topic = $1 AND partition = $2 AND value IS NULL AND "offset" < $3 ORDER BY "offset" LIMIT $4))
  RETURNING 1
)
SELECT count(*)::int AS n FROM gone`,
    values: [topic, partition, below.toString(), limit],
  };
}

/** True when no record is left in `[base, end)`. */
export function segmentEmptyStatement(t: Tables, topic: string, partition: number, base: bigint, end: bigint): Statement {
  return {
    text: `SELECT NOT EXISTS (SELECT 1 FROM ${t.records} WHERE topic = $1 AND partition = $2 AND "offset" >= $3 AND "offset" < $4) AS empty`,
    values: [topic, partition, base.toString(), end.toString()],
  };
}

export function forgetSegmentStatement(t: Tables, tableName: string): Statement {
  return { text: `DELETE FROM ${t.segments} WHERE table_name = $1`, values: [tableName] };
}

/**
 * Time notes that no cutoff can use any more: those at or below the log start, and those older
 * than the note the longest duration (`keepMs`) picks now — cutoffs only move forward, so none
 * will pick an older one again. `keepMs` null: no duration applies, no note is needed.
 */
export function pruneTimeStatement(t: Tables, now: Date | null, topic: string, partition: number, logStart: bigint, keepMs: number | null): Statement {
  return {
    text: `DELETE FROM ${t.timeIndex} WHERE topic = $2 AND partition = $3 AND ("offset" <= $4 OR $5::bigint IS NULL OR at < (
  SELECT max(at) FROM ${t.timeIndex} WHERE topic = $2 AND partition = $3 AND at <= ${clock} - $5::bigint * interval '1 millisecond'))`,
    values: [now, topic, partition, logStart.toString(), keepMs],
  };
}

/**
 * Segments of a partition that have never been analyzed. The cleaner's deletes are planned from
 * statistics; a segment without any is estimated at one row and its delete can degrade to a
 * filter over every row per offset (measured: 73 s instead of 1.4 s for a 5,000-key chunk).
 */
export function unanalyzedSegmentsStatement(t: Tables, topic: string, partition: number): Statement {
  return {
    text: `SELECT s.table_name FROM ${t.segments} s
JOIN pg_stat_user_tables st ON st.schemaname = $1 AND st.relname = s.table_name
WHERE s.topic = $2 AND s.partition = $3 AND st.last_analyze IS NULL AND st.last_autoanalyze IS NULL AND st.n_live_tup + st.n_dead_tup > 0
ORDER BY s.base_offset`,
    values: [t.schema, topic, partition],
  };
}

export function analyzeSegmentSql(schema: string, tableName: string): string {
  return `ANALYZE ${quoteIdent(schema)}.${quoteIdent(tableName)}`;
}

/** `ALTER TABLE … DETACH PARTITION … CONCURRENTLY` (or `FINALIZE` for one left pending). Simple-query text. */
export function detachSegmentSql(schema: string, parent: string, tableName: string, finalize: boolean): string {
  // `parent` comes from regclass::text: already quoted and qualified as needed.
  return `ALTER TABLE ${parent} DETACH PARTITION ${quoteIdent(schema)}.${quoteIdent(tableName)} ${finalize ? 'FINALIZE' : 'CONCURRENTLY'}`;
}

export function dropSegmentSql(schema: string, tableName: string): string {
  return `DROP TABLE IF EXISTS ${quoteIdent(schema)}.${quoteIdent(tableName)}`;
}
