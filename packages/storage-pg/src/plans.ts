/**
 * SQL plans of the Postgres log, kept together. Each function builds one statement; table names
 * come from `tables(schema)`, which quotes them once.
 *
 * ## Ordered visibility (invariant 1)
 * An append updates its partition's head row (`next_offset = next_offset + n`) and inserts its
 * records at `[old, old + n)` in the same statement. The row lock on the head is held until the
 * transaction ends, so a second append to the same partition waits, and takes its offsets only
 * after the first has committed (or rolled back, leaving no gap). Offsets are therefore assigned
 * in commit order, and a reader that has seen offset N can never later see a record below N.
 * Heads are listed in (topic, partition) order so concurrent multi-partition appends take their
 * locks in one order; Postgres breaks any residual deadlock and the client retries it.
 *
 * Append statements do nothing else: the NOTIFY that wakes watchers is sent after the commit
 * (`notifyStatement`), and the check for a partition's next segment is made by the client against
 * cached segment bounds (`segmentAheadAtStatement`), both so that an append costs what the raw
 * INSERT it is measured against costs, plus the head update.
 */
import { quoteIdent } from './internal/ident.js';

export interface Tables {
  readonly schema: string;
  readonly topics: string;
  readonly partitions: string;
  readonly records: string;
  readonly producerIds: string;
  readonly transactionalIds: string;
  readonly producerState: string;
  readonly segments: string;
  readonly timeIndex: string;
  readonly groupMembers: string;
  readonly partitionOwners: string;
  readonly groupOffsets: string;
  /** The LISTEN/NOTIFY channel name (unquoted) and its quoted form. */
  readonly channel: string;
  readonly channelIdent: string;
}

export function tables(schema: string): Tables {
  const q = (name: string) => `${quoteIdent(schema)}.${quoteIdent(name)}`;
  const channel = `annals_${schema}`.slice(0, 63);
  return Object.freeze({
    schema,
    topics: q('topics'),
    partitions: q('partitions'),
    records: q('records'),
    producerIds: q('producer_ids'),
    transactionalIds: q('transactional_ids'),
    producerState: q('producer_state'),
    segments: q('segments'),
    timeIndex: q('time_index'),
    groupMembers: q('group_members'),
    partitionOwners: q('partition_owners'),
    groupOffsets: q('group_offsets'),
    channel,
    channelIdent: quoteIdent(channel),
  });
}

export interface Statement {
  readonly text: string;
  readonly values: unknown[];
}

export interface AppendRow {
  readonly timestamp: Date | null;
  readonly key: Uint8Array | null;
  readonly value: Uint8Array | null;
  readonly headers: Uint8Array | null;
}

export interface AppendGroup {
  readonly topic: string;
  readonly partition: number;
  readonly rows: readonly AppendRow[];
}

/**
 * What an append statement returns: one row per partition appended to, with its base offset.
 * `appendOneStatement` (one partition) returns the base alone: fewer columns for the driver to
 * describe and parse on every single send.
 */
export interface AppendResultRow {
  readonly topic?: string;
  readonly partition?: number;
  readonly base: string;
  /**
   * Whether a watcher's lease on the partition was live when the head moved (`watched_until`,
   * read from the head row's latest version under its lock): only then is a wake-up sent after
   * the commit. Null when the partition was never watched.
   */
  readonly w: boolean | null;
}

/** Appends to one partition of at most this many records go as a prepared statement (`appendOneStatement`). */
export const SMALL_APPEND_ROWS = 8;

const textCache = new WeakMap<Tables, Map<string, string>>();

/**
 * The text of a fixed-shape statement, built once per `Tables` and `shape`. The hot paths send the
 * same text on every call; reusing one string spares building it and hashing it again for the
 * prepared-statement lookup (several kilobytes per call).
 */
export function cachedText(t: Tables, shape: string, build: () => string): string {
  let texts = textCache.get(t);
  if (!texts) textCache.set(t, (texts = new Map()));
  let text = texts.get(shape);
  if (text === undefined) texts.set(shape, (text = build()));
  return text;
}

/**
 * A small append to one partition (the shape of a single-message send): advances the head and
 * inserts the records in one statement. Its text depends only on the number of records, so it is
 * sent as a named prepared statement and never planned again on a connection (planning the append
 * over the partitioned records table cost several times executing it). Returns one row
 * `(base)`, or none when the partition does not exist — and then nothing was written. Wake-ups
 * are not part of it: see `notifyStatement`.
 */
export function appendOneStatement(t: Tables, g: AppendGroup): Statement {
  const values: unknown[] = [g.topic, g.partition | 0];
  const n = g.rows.length;
  if (n < 1 || n > SMALL_APPEND_ROWS) throw new RangeError(`appendOneStatement takes 1 to ${SMALL_APPEND_ROWS} rows, got ${n}.`);
  const rows: string[] = [];
  g.rows.forEach((row, i) => {
    values.push(row.timestamp, row.key, row.value, row.headers);
    const k = values.length;
    rows.push(`(${i}, $${k - 3}::timestamptz, $${k - 2}::bytea, $${k - 1}::bytea, $${k}::bytea)`);
  });
  const source =
    n === 1
      ? `SELECT $1::text, $2::int, h.base, coalesce($3::timestamptz, now()), $4::bytea, $5::bytea, $6::bytea FROM h`
      : `SELECT $1::text, $2::int, h.base + r.i, coalesce(r.ts, now()), r.key, r.value, r.headers
  FROM h CROSS JOIN (VALUES ${rows.join(', ')}) AS r(i, ts, key, value, headers)`;
  const text = cachedText(t, `one:${n}`, () => `WITH h AS (
  UPDATE ${t.partitions} SET next_offset = next_offset + ${n} WHERE topic = $1::text AND partition = $2::int
  RETURNING next_offset - ${n} AS base, watched_until > now() AS w
),
ins AS (
  INSERT INTO ${t.records} (topic, partition, "offset", "timestamp", key, value, headers)
  ${source}
)
SELECT base::text AS base, w FROM h`);
  return { text, values };
}

/**
 * One statement that appends every group: advances the heads and inserts the records. Returns
 * `(topic, partition, base)` per group.
 *
 * Its text is the same for every append — groups and records travel as arrays (`unnest`) — so it
 * is sent as a named prepared statement and never planned again on a connection. (Planning the
 * earlier form, a VALUES list of one row per record joined to the heads, cost more than executing
 * it: ~23 ms against ~2 ms for a raw 1,000-row INSERT.) The topic is sent once per group, not per
 * record. Wake-ups are sent after the commit (`notifyStatement`), and whether a partition needs
 * its next segment is judged by the caller from the returned offsets.
 *
 * A group whose head row is missing (topic deleted meanwhile, partition out of range) yields a NULL
 * offset, which the NOT NULL constraint turns into an error that aborts the whole statement — so an
 * append never half-succeeds. Groups must be sorted by (topic, partition) and unique.
 */
/**
 * The records of `groups` as column arrays for `unnest`: per record its group (from 1) and index
 * in the group, and its columns. An all-NULL timestamp or headers column comes back as `null`
 * (the common case: no explicit timestamps, no headers), which `unnest` pads with NULLs.
 */
export function recordColumns(groups: ReadonlyArray<{ readonly rows: AppendGroup['rows'] }>): {
  group: number[];
  index: number[];
  timestamps: Array<Date | null> | null;
  keys: Array<Uint8Array | null>;
  values: Array<Uint8Array | null>;
  headers: Array<Uint8Array | null> | null;
} {
  const group: number[] = [];
  const index: number[] = [];
  const timestamps: Array<Date | null> = [];
  const keys: Array<Uint8Array | null> = [];
  const values: Array<Uint8Array | null> = [];
  const headers: Array<Uint8Array | null> = [];
  let anyTimestamp = false;
  let anyHeaders = false;
  groups.forEach((g, gi) => {
    g.rows.forEach((row, i) => {
      group.push(gi + 1);
      index.push(i);
      timestamps.push(row.timestamp);
      keys.push(row.key);
      values.push(row.value);
      headers.push(row.headers);
      if (row.timestamp !== null) anyTimestamp = true;
      if (row.headers !== null) anyHeaders = true;
    });
  });
  return { group, index, timestamps: anyTimestamp ? timestamps : null, keys, values, headers: anyHeaders ? headers : null };
}

export function appendStatement(t: Tables, groups: readonly AppendGroup[]): Statement {
  const topics = groups.map((g) => g.topic);
  const partitions = groups.map((g) => g.partition | 0);
  const counts = groups.map((g) => g.rows.length);
  const r = recordColumns(groups);
  const text = cachedText(t, 'batch', () => `WITH input AS MATERIALIZED (
  SELECT * FROM unnest($1::text[], $2::int[], $3::bigint[]) WITH ORDINALITY AS i(topic, partition, n, g)
),
heads AS (
  UPDATE ${t.partitions} p SET next_offset = p.next_offset + i.n
  FROM input i WHERE p.topic = i.topic AND p.partition = i.partition
  RETURNING p.topic, p.partition, p.next_offset - i.n AS base, p.watched_until > now() AS w
),
ins AS (
  INSERT INTO ${t.records} (topic, partition, "offset", "timestamp", key, value, headers)
  SELECT i.topic, i.partition, h.base + r.i, coalesce(r.ts, now()), r.key, r.value, r.headers
  FROM unnest($4::bigint[], $5::bigint[], $6::timestamptz[], $7::bytea[], $8::bytea[], $9::bytea[]) AS r(g, i, ts, key, value, headers)
  JOIN input i ON i.g = r.g
  LEFT JOIN heads h ON h.topic = i.topic AND h.partition = i.partition
)
SELECT topic, partition, base::text AS base, w FROM heads`);
  return { text, values: [topics, partitions, counts, r.group, r.index, r.timestamps, r.keys, r.values, r.headers] };
}

/**
 * Wakes the watchers of the given partitions (`topic/partition` payloads): one statement for any
 * number of them, sent after the commit of the appends it announces. A transaction that NOTIFYs
 * holds PostgreSQL's database-wide notify lock from its pre-commit until its commit record is
 * flushed, so appends that notified inside their own transaction committed one fsync at a time.
 * This statement writes no WAL before its commit record, so PostgreSQL commits it without waiting
 * for a flush (`RecordTransactionCommit`: no WAL written, no synchronous commit) and the lock is
 * held for microseconds.
 */
export function notifyStatement(t: Tables, partitions: readonly string[]): Statement {
  return { text: `SELECT count(pg_notify($1, p)) AS n FROM unnest($2::text[]) p`, values: [t.channel, partitions] };
}

/**
 * Extends the watch lease of every partition of `topics` that has less than half of `leaseMs`
 * left, to `leaseMs` from now. Locks the head rows in (topic, partition) order, as appends do.
 * Returns the topic of each partition whose lease was missing or had lapsed.
 */
export function renewWatchLeasesStatement(t: Tables, topics: readonly string[], leaseMs: number): Statement {
  return {
    text: `WITH due AS (
  SELECT topic, partition, watched_until AS before FROM ${t.partitions}
  WHERE topic = ANY($1::text[]) AND (watched_until IS NULL OR watched_until < now() + $2::bigint / 2 * interval '1 millisecond')
  ORDER BY topic, partition FOR UPDATE
)
UPDATE ${t.partitions} p SET watched_until = now() + $2::bigint * interval '1 millisecond'
FROM due d WHERE p.topic = d.topic AND p.partition = d.partition
RETURNING CASE WHEN d.before IS NULL OR d.before <= now() THEN p.topic END AS topic`,
    values: [topics, leaseMs],
  };
}

/** Locks the head rows of the given partitions in (topic, partition) order; returns the ones that exist. */
export function lockHeadsStatement(t: Tables, keys: ReadonlyArray<{ topic: string; partition: number }>): Statement {
  return {
    text: `SELECT topic, partition FROM ${t.partitions}
WHERE (topic, partition) IN (SELECT * FROM unnest($1::text[], $2::int[]))
ORDER BY topic, partition FOR UPDATE`,
    values: [keys.map((k) => k.topic), keys.map((k) => k.partition)],
  };
}

export function producerStateStatement(t: Tables, producerId: bigint, keys: ReadonlyArray<{ topic: string; partition: number }>): Statement {
  return {
    text: `SELECT topic, partition, base_sequence, last_sequence, base_offset::text AS base_offset FROM ${t.producerState}
WHERE producer_id = $1 AND (topic, partition) IN (SELECT * FROM unnest($2::text[], $3::int[]))`,
    values: [producerId.toString(), keys.map((k) => k.topic), keys.map((k) => k.partition)],
  };
}

export function upsertProducerStateStatement(
  t: Tables,
  producerId: bigint,
  entries: ReadonlyArray<{ topic: string; partition: number; baseSequence: number; lastSequence: number; baseOffset: bigint }>,
): Statement {
  return {
    text: `INSERT INTO ${t.producerState} (producer_id, topic, partition, base_sequence, last_sequence, base_offset)
SELECT $1, * FROM unnest($2::text[], $3::int[], $4::int[], $5::int[], $6::bigint[])
ON CONFLICT (producer_id, topic, partition) DO UPDATE
SET base_sequence = EXCLUDED.base_sequence, last_sequence = EXCLUDED.last_sequence,
    base_offset = EXCLUDED.base_offset, updated_at = now()`,
    values: [
      producerId.toString(),
      entries.map((e) => e.topic),
      entries.map((e) => e.partition),
      entries.map((e) => e.baseSequence),
      entries.map((e) => e.lastSequence),
      entries.map((e) => e.baseOffset.toString()),
    ],
  };
}

/** Holds a share lock on the transactional id until commit, so a newer producer cannot take over mid-commit. */
export function fenceStatement(t: Tables, transactionalId: string): Statement {
  return {
    text: `SELECT producer_id::text AS producer_id, epoch FROM ${t.transactionalIds} WHERE transactional_id = $1 FOR SHARE`,
    values: [transactionalId],
  };
}

export function initTransactionalProducerStatement(t: Tables, transactionalId: string): Statement {
  return {
    text: `INSERT INTO ${t.transactionalIds} (transactional_id, producer_id, epoch)
VALUES ($1, nextval('${t.producerIds.replaceAll("'", "''")}'), 0)
ON CONFLICT (transactional_id) DO UPDATE SET epoch = ${t.transactionalIds}.epoch + 1, updated_at = now()
RETURNING producer_id::text AS producer_id, epoch`,
    values: [transactionalId],
  };
}

export function nextProducerIdStatement(t: Tables): Statement {
  return { text: `SELECT nextval('${t.producerIds.replaceAll("'", "''")}')::text AS producer_id`, values: [] };
}

/** A fetch plus the partition's watermarks, in one round trip. No row when the partition does not exist. */
export function fetchStatement(t: Tables, topic: string, partition: number, offset: bigint, maxRecords: number): Statement {
  return {
    text: `SELECT p.next_offset::text AS high, p.log_start_offset::text AS low,
  r."offset"::text AS "offset", (extract(epoch FROM r."timestamp") * 1000)::float8 AS ts, r.key, r.value, r.headers
FROM ${t.partitions} p
LEFT JOIN LATERAL (
  SELECT "offset", "timestamp", key, value, headers FROM ${t.records}
  WHERE topic = $1 AND partition = $2 AND "offset" >= greatest($3, p.log_start_offset)
  ORDER BY "offset" LIMIT $4
) r ON true
WHERE p.topic = $1 AND p.partition = $2
ORDER BY r."offset"`,
    values: [topic, partition, offset.toString(), maxRecords],
  };
}

export function createTopicStatements(t: Tables, name: string, partitions: number, config: { 'segment.records': number }): Statement[] {
  return [
    {
      text: `INSERT INTO ${t.topics} (name, partitions, config) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING RETURNING name`,
      values: [name, partitions, JSON.stringify(config)],
    },
    {
      text: `INSERT INTO ${t.partitions} (topic, partition) SELECT $1, g FROM generate_series(0, $2 - 1) g`,
      values: [name, partitions],
    },
    ensureSegmentsStatement(t, name, 0, partitions, 0n, config['segment.records']),
  ];
}

/**
 * Makes sure partitions [from, to) of a topic have segments up to and including the one holding
 * `offset + size`: the current segment and one ahead, so appends never run out.
 */
export function ensureSegmentsStatement(t: Tables, topic: string, from: number, to: number, offset: bigint, size: number): Statement {
  return {
    text: `SELECT coalesce(sum(${quoteIdent(t.schema)}.ensure_segments($1, g, $3::bigint + $4::bigint, $4::bigint)), 0)::int AS made
FROM generate_series($2::int, $5::int - 1) g`,
    values: [topic, from, offset.toString(), size, to],
  };
}

/** The table holding a topic's records (its segments are partitions of it). */
export function topicTablesStatement(t: Tables, names: readonly string[]): Statement {
  return { text: `SELECT name, 'records_t' || id AS table_name FROM ${t.topics} WHERE name = ANY($1::text[])`, values: [names] };
}

export function deleteTopicStatements(t: Tables, names: readonly string[], tableNames: readonly string[]): Statement[] {
  return [
    ...tableNames.map((table) => ({ text: `DROP TABLE IF EXISTS ${quoteIdent(t.schema)}.${quoteIdent(table)}`, values: [] })),
    { text: `DELETE FROM ${t.topics} WHERE name = ANY($1::text[]) RETURNING name`, values: [names] },
    { text: `DELETE FROM ${t.producerState} WHERE topic = ANY($1::text[])`, values: [names] },
  ];
}

export function lockTopicStatement(t: Tables, name: string): Statement {
  return { text: `SELECT partitions, config FROM ${t.topics} WHERE name = $1 FOR UPDATE`, values: [name] };
}

export function addPartitionsStatements(t: Tables, name: string, from: number, to: number): Statement[] {
  return [
    { text: `UPDATE ${t.topics} SET partitions = $2 WHERE name = $1`, values: [name, to] },
    {
      // New partitions inherit the topic's live watch lease, so that their first appends wake the
      // watchers too (the watchers' next renewal covers them in any case).
      text: `INSERT INTO ${t.partitions} (topic, partition, watched_until)
SELECT $1, g, (SELECT max(watched_until) FROM ${t.partitions} WHERE topic = $1) FROM generate_series($2::int, $3::int - 1) g`,
      values: [name, from, to],
    },
  ];
}

export function updateConfigStatement(t: Tables, name: string, config: unknown): Statement {
  return { text: `UPDATE ${t.topics} SET config = $2 WHERE name = $1`, values: [name, JSON.stringify(config)] };
}

export function describeTopicsStatement(t: Tables, names?: readonly string[]): Statement {
  return names
    ? { text: `SELECT name, partitions, config FROM ${t.topics} WHERE name = ANY($1::text[]) ORDER BY name`, values: [names] }
    : { text: `SELECT name, partitions, config FROM ${t.topics} ORDER BY name`, values: [] };
}

export function watermarksStatement(t: Tables, topic: string): Statement {
  return {
    text: `SELECT partition, log_start_offset::text AS low, next_offset::text AS high FROM ${t.partitions} WHERE topic = $1 ORDER BY partition`,
    values: [topic],
  };
}

export function offsetsByTimestampStatement(t: Tables, topic: string, timestamp: Date): Statement {
  return {
    text: `SELECT p.partition, coalesce(
  (SELECT min(r."offset") FROM ${t.records} r
    WHERE r.topic = $1 AND r.partition = p.partition AND r."offset" >= p.log_start_offset AND r."timestamp" >= $2),
  p.next_offset)::text AS "offset"
FROM ${t.partitions} p WHERE p.topic = $1 ORDER BY p.partition`,
    values: [topic, timestamp],
  };
}

/** Advances log start offsets (clamped to [current start, log end]) and deletes the records below. */
export function deleteRecordsStatement(t: Tables, topic: string, partitions: ReadonlyArray<{ partition: number; offset: bigint }>): Statement {
  const target = `(CASE WHEN req."offset" < 0 THEN p.next_offset ELSE least(req."offset", p.next_offset) END)`;
  return {
    text: `WITH req AS (SELECT * FROM unnest($2::int[], $3::bigint[]) AS r(partition, "offset")),
moved AS (
  UPDATE ${t.partitions} p
  SET log_start_offset = greatest(p.log_start_offset, ${target}),
    log_start_reason = CASE WHEN ${target} > p.log_start_offset THEN 'delete-records' ELSE p.log_start_reason END,
    log_start_changed_at = CASE WHEN ${target} > p.log_start_offset THEN clock_timestamp() ELSE p.log_start_changed_at END
  FROM req WHERE p.topic = $1 AND p.partition = req.partition
  RETURNING p.partition, p.log_start_offset
), gone AS (
  DELETE FROM ${t.records} r USING moved m
  WHERE r.topic = $1 AND r.partition = m.partition AND r."offset" < m.log_start_offset
)
SELECT partition, log_start_offset::text AS low FROM moved ORDER BY partition`,
    values: [topic, partitions.map((p) => p.partition), partitions.map((p) => p.offset.toString())],
  };
}

/**
 * Keeps one empty segment ahead of a partition's log end (size from the topic's config), so
 * appends never run out — past an append of `extra` records about to be written, when given.
 * Runs in its own transaction: it never waits on an appender's locks.
 */
export function ensureAheadStatement(t: Tables, topic: string, partition: number, extra = 0): Statement {
  return {
    text: `SELECT ${quoteIdent(t.schema)}.ensure_segments(p.topic, p.partition,
    p.next_offset + $3::bigint + (tp.config->>'segment.records')::bigint, (tp.config->>'segment.records')::bigint) AS made
FROM ${t.partitions} p JOIN ${t.topics} tp ON tp.name = p.topic WHERE p.topic = $1 AND p.partition = $2`,
    values: [topic, partition, extra],
  };
}

/**
 * The log end offset past which a partition should get its next segment ahead: its last
 * segment's end minus one segment size. Appenders cache it and compare their offsets with it, so
 * the append statement itself never looks at `segments`.
 */
export function segmentAheadAtStatement(t: Tables, topic: string, partition: number): Statement {
  return {
    text: `SELECT ((SELECT max(s.end_offset) FROM ${t.segments} s WHERE s.topic = $1 AND s.partition = $2)
    - (tp.config->>'segment.records')::bigint)::text AS ahead_at
FROM ${t.topics} tp WHERE tp.name = $1`,
    values: [topic, partition],
  };
}
