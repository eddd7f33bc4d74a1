/**
 * SQL plans of event-sourced streams (`stream-storage.ts` in `@annals/core` is the contract).
 *
 * ## Expected-version appends in one statement
 *
 * A stream's version is `stream_versions.version` (its records up to `last_offset`) plus its
 * records after `last_offset` (written by plain appends, which do not touch the counter). Both
 * change only under the partition's head lock. The check must therefore read them in a snapshot
 * taken *after* the head lock is held, which one statement cannot do in general: its snapshot is
 * taken when it starts, before it waits for the lock. `streamAppendStatement` detects the one case
 * where that matters instead of paying a second round trip every time:
 *
 * - `locked` takes the heads `FOR UPDATE` (in (topic, partition) order) and, READ COMMITTED being
 *   what it is, returns their *latest* committed `next_offset`;
 * - `verdict.fresh` compares it with the `next_offset` the statement's snapshot sees. Equal means
 *   no append committed to the partition between the snapshot and the lock: the snapshot holds
 *   every record and counter of the partition's streams, and the check is exact. (Another writer
 *   that only held the lock appended nothing.)
 * - Only if every check passes and the snapshot is fresh (`go.ok`) do the heads move and the
 *   records and counters get written, all in this statement. Otherwise nothing is written and the
 *   caller learns why: a stale snapshot is retried inside a transaction (where the lock, once
 *   held, keeps the next statement's snapshot fresh); a version mismatch becomes
 *   `WrongExpectedVersionError`.
 *
 * The usual append (one stream, its own records) takes `streamAppendOneStatement` instead, which
 * checks on the latest rows under the locks and so is not sent back by other streams' appends to
 * the partition; what it cannot decide alone comes here, in a transaction.
 *
 * Uncontended, an expected-version append is one autocommitted statement, like a plain append.
 * It is sent as a named (prepared) statement when its shape is small: planning this statement
 * over the partitioned records table costs several times its execution.
 * The counters' `last_offset` is computed from the locked `next_offset` (the append's base), so the
 * same statement also serves as a check-only step (`rows` empty, heads `n = 0`) before a large
 * append written by the plain append path while the locks are held.
 *
 * Loading a stream (`readStreamStatement`) reads the counter, the snapshot and the records in one
 * statement (one snapshot), through `records_stream_idx (topic, partition, key, offset)`.
 */
import { quoteIdent } from './internal/ident.js';
import { cachedText, recordColumns, type AppendGroup, type Statement, type Tables } from './plans.js';

export interface StreamTables {
  readonly streamVersions: string;
  readonly streamSnapshots: string;
  /** The `stream_tail` function (migration 0008), schema-qualified. */
  readonly streamTail: string;
}

export function streamTables(schema: string): StreamTables {
  const q = (name: string) => `${quoteIdent(schema)}.${quoteIdent(name)}`;
  return Object.freeze({ streamVersions: q('stream_versions'), streamSnapshots: q('stream_snapshots'), streamTail: q('stream_tail') });
}

/** A partition whose head the statement locks, and how many records it appends there. */
export interface StreamHead {
  readonly topic: string;
  readonly partition: number;
  readonly n: number;
}

/** A stream the statement checks. `expected` null: any version. */
export interface StreamCheck {
  readonly topic: string;
  readonly partition: number;
  readonly key: Uint8Array;
  readonly expected: number | null;
  /** Records of this call (in any mode) carrying the stream's key in its partition. */
  readonly n: number;
  /** Index of the last of them among its partition's records of this call (0 when n = 0). */
  readonly lastIndex: number;
}

/** What `streamAppendStatement` returns (one row). */
export interface StreamAppendRow {
  readonly complete: boolean;
  readonly fresh: boolean;
  readonly ok: boolean;
  readonly streams: Array<{
    actual: string;
    home: number | null;
    streamable: boolean;
    policy: string | null;
    retentionMs: string | null;
    retentionBytes: string | null;
  }> | null;
  /** Every locked head: its base offset (the locked log end when it appended nothing). */
  readonly heads: Array<{ topic: string; partition: number; base: string }> | null;
}

/**
 * Locks `heads`, checks `streams`, and — when every check passes on a fresh snapshot — appends
 * `groups` and advances the stream counters, in one statement (see the design note above).
 * `heads` must be sorted by (topic, partition), unique, and cover every group and stream; a
 * check-only statement passes `n = 0` heads and no groups.
 */
export function streamAppendStatement(
  t: Tables,
  st: StreamTables,
  heads: readonly StreamHead[],
  groups: readonly AppendGroup[],
  streams: readonly StreamCheck[],
  options: { readonly notify: boolean } = { notify: true },
): Statement {
  const values: unknown[] = [t.channel];
  const topicParam = new Map<string, string>();
  const topicRef = (topic: string): string => {
    let ref = topicParam.get(topic);
    if (!ref) {
      values.push(topic);
      ref = `$${values.length}`;
      topicParam.set(topic, ref);
    }
    return ref;
  };
  const int = (n: number) => String(Math.trunc(n));
  // `covered`: how many of the head's records carry the key of a stream checked here (they are
  // counted by its counter); the rest are plain records for the marks.
  const covered = (h: StreamHead) => streams.reduce((n, s) => (s.topic === h.topic && s.partition === h.partition ? n + s.n : n), 0);
  const inputs = heads.map((h, i) =>
    i === 0
      ? `(${topicRef(h.topic)}::text, ${int(h.partition)}::int, ${int(h.n)}::bigint, ${int(covered(h))}::bigint)`
      : `(${topicRef(h.topic)}, ${int(h.partition)}, ${int(h.n)}, ${int(covered(h))})`,
  );
  const rows: string[] = [];
  for (const g of groups) {
    const topic = topicRef(g.topic);
    g.rows.forEach((row, i) => {
      values.push(row.timestamp, row.key, row.value, row.headers);
      const n = values.length;
      rows.push(
        rows.length === 0
          ? `(${topic}::text, ${int(g.partition)}::int, ${i}::bigint, $${n - 3}::timestamptz, $${n - 2}::bytea, $${n - 1}::bytea, $${n}::bytea)`
          : `(${topic}, ${int(g.partition)}, ${i}, $${n - 3}, $${n - 2}, $${n - 1}, $${n})`,
      );
    });
  }
  // Versions and counts are parameters, so the text — and the prepared statement — of a shape
  // stays the same from one append to the next.
  const checks = streams.map((s, ord) => {
    values.push(s.key, s.expected === null ? null : String(s.expected), String(s.n), String(s.lastIndex));
    const n = values.length;
    return ord === 0
      ? `(0::int, ${topicRef(s.topic)}::text, ${int(s.partition)}::int, $${n - 3}::bytea, $${n - 2}::bigint, $${n - 1}::bigint, $${n}::bigint)`
      : `(${ord}, ${topicRef(s.topic)}, ${int(s.partition)}, $${n - 3}, $${n - 2}, $${n - 1}, $${n})`;
  });
  const records =
    rows.length > 0
      ? `(VALUES ${rows.join(', ')})`
      : `(SELECT NULL::text, NULL::int, NULL::bigint, NULL::timestamptz, NULL::bytea, NULL::bytea, NULL::bytea WHERE false)`;
  const text = `WITH input(topic, partition, n, covered) AS (VALUES ${inputs.join(', ')}),
locked AS MATERIALIZED (
  SELECT p.topic, p.partition, p.next_offset, p.log_start_offset,
    CASE WHEN p.next_offset > p.stream_end THEN p.next_offset ELSE p.plain_end END AS bound
  FROM ${t.partitions} p
  WHERE (p.topic, p.partition) IN (SELECT i.topic, i.partition FROM input i)
  ORDER BY p.topic, p.partition FOR UPDATE OF p
),
verdict AS MATERIALIZED (
  SELECT (SELECT count(*) FROM locked) = (SELECT count(*) FROM input) AS complete,
    NOT EXISTS (
      SELECT 1 FROM locked l LEFT JOIN ${t.partitions} seen ON seen.topic = l.topic AND seen.partition = l.partition
      WHERE seen.next_offset IS DISTINCT FROM l.next_offset
    ) AS fresh
),
checks(ord, topic, partition, key, expected, n, last_i) AS (VALUES ${checks.join(', ')}),
cur AS MATERIALIZED (
  SELECT s.ord, s.topic, s.partition, s.key, s.expected, s.n, s.last_i, l.next_offset,
    c.partition AS home, c.last_offset, coalesce(c.version, 0) + pr.cnt AS actual, pr.cnt, pr.max_offset,
    tp.config->>'cleanup.policy' AS policy, tp.config->>'retention.ms' AS retention_ms, tp.config->>'retention.bytes' AS retention_bytes,
    (tp.config->>'cleanup.policy' = 'delete' AND (tp.config->>'retention.ms')::bigint = -1
      AND coalesce((tp.config->>'retention.bytes')::bigint, -1) = -1) AS streamable
  FROM checks s
  JOIN locked l ON l.topic = s.topic AND l.partition = s.partition
  JOIN ${t.topics} tp ON tp.name = s.topic
  LEFT JOIN ${st.streamVersions} c ON c.topic = s.topic AND c.key = s.key
  CROSS JOIN LATERAL (SELECT greatest(l.log_start_offset, coalesce(c.last_offset + 1, 0)) AS "from") f
  CROSS JOIN LATERAL (
    SELECT CASE WHEN l.bound > f."from" THEN ${st.streamTail}(s.topic, s.partition, s.key, f."from") ELSE ARRAY[0, NULL]::bigint[] END AS tail
  ) tl
  CROSS JOIN LATERAL (SELECT tl.tail[1] AS cnt, tl.tail[2] AS max_offset) pr
),
go AS MATERIALIZED (
  SELECT v.complete AND v.fresh AND NOT EXISTS (
    SELECT 1 FROM cur WHERE NOT streamable OR (home IS NOT NULL AND home <> partition) OR (expected IS NOT NULL AND expected <> actual)
  ) AS ok
  FROM verdict v
),
heads AS (
  UPDATE ${t.partitions} p SET next_offset = p.next_offset + i.n, stream_end = p.next_offset + i.n,
    plain_end = CASE WHEN i.covered < i.n THEN p.next_offset + i.n WHEN p.next_offset > p.stream_end THEN p.next_offset ELSE p.plain_end END
  FROM input i WHERE (SELECT ok FROM go) AND i.n > 0 AND p.topic = i.topic AND p.partition = i.partition
  RETURNING p.topic, p.partition, p.next_offset - i.n AS base
),
ins AS (
  INSERT INTO ${t.records} (topic, partition, "offset", "timestamp", key, value, headers)
  SELECT r.topic, r.partition, h.base + r.i, coalesce(r.ts, now()), r.key, r.value, r.headers
  FROM ${records} AS r(topic, partition, i, ts, key, value, headers)
  JOIN heads h ON h.topic = r.topic AND h.partition = r.partition
),
counters AS (
  INSERT INTO ${st.streamVersions} (topic, key, partition, version, last_offset)
  SELECT c.topic, c.key, c.partition, c.actual + c.n,
    CASE WHEN c.n > 0 THEN c.next_offset + c.last_i ELSE greatest(c.last_offset, c.max_offset) END
  FROM cur c WHERE (SELECT ok FROM go) AND (c.n > 0 OR c.cnt > 0)
  ON CONFLICT (topic, key) DO UPDATE SET partition = EXCLUDED.partition, version = EXCLUDED.version, last_offset = EXCLUDED.last_offset
)
SELECT v.complete, v.fresh, (SELECT ok FROM go) AS ok,
  (SELECT json_agg(json_build_object('actual', actual::text, 'home', home, 'streamable', streamable, 'policy', policy,
      'retentionMs', retention_ms, 'retentionBytes', retention_bytes) ORDER BY ord) FROM cur) AS streams,
  (SELECT json_agg(json_build_object('topic', l.topic, 'partition', l.partition, 'base', coalesce(h.base, l.next_offset)::text,
      'notified', ${options.notify ? `CASE WHEN h.topic IS NULL THEN false ELSE pg_notify($1, h.topic || '/' || h.partition) IS NULL END` : `$1::text IS NULL`}))
    FROM locked l LEFT JOIN heads h ON h.topic = l.topic AND h.partition = l.partition) AS heads
FROM verdict v`;
  return { text, values };
}

/** What `streamAppendOneStatement` returns: always one row. */
export interface StreamAppendOneRow {
  /** The stream's version before the append; null when nothing was written. */
  readonly previous: string | null;
  /** The base offset written; null when nothing was written. */
  readonly base: string | null;
  /** Whether a watcher's lease on the partition was live (see `AppendResultRow.w`). */
  readonly w: boolean | null;
}

/**
 * The common expected-version append in one lean statement: one stream, all of whose records
 * (1 to `MAX_ROWS_PER_STATEMENT`) carry its key and go to its partition. It has two fixed texts —
 * one record as scalars, several as arrays — so it is prepared once per connection and runs as a
 * generic plan.
 *
 * It writes only when it can decide alone, under the locks, on the latest committed rows:
 *
 * - `locked` takes the head `FOR UPDATE`, which in READ COMMITTED yields the head's latest version
 *   once the lock is held: its log end and its marks (see the design note above);
 * - the counter is advanced by an UPDATE whose condition — the expected version, the stream's
 *   home partition, and that the marks rule out uncounted records of the key after the counter —
 *   PostgreSQL re-checks on the counter's latest version once it holds that row's lock; a stream
 *   without a counter is created only if it has no counter in the snapshot, `expectedVersion` is
 *   0 or 'any', and the marks rule out any uncounted record from the log start (ON CONFLICT DO
 *   NOTHING: a counter created meanwhile makes it write nothing);
 * - only then do the head and the records move.
 *
 * So appends to other streams of the partition that commit while this one waits for the head
 * only delay it: it proceeds on what they left. When it cannot decide alone — a version mismatch
 * (whose exact figures it does not compute), records the marks cannot rule out, a topic that may
 * not hold streams, a moved stream, a missing partition — it writes nothing and returns nulls, and
 * the caller runs `streamAppendStatement` in a transaction, which decides every case exactly.
 * Locks are taken head first, then counter, as `streamAppendStatement` takes them.
 *
 * Parameters: topic, partition, key, expected version (null: any), timestamp(s), value(s),
 * headers (scalars for one record, arrays for several), record count.
 */
export function streamAppendOneStatement(
  t: Tables,
  st: StreamTables,
  append: { topic: string; partition: number; key: Uint8Array; expected: number | null; rows: AppendGroup['rows'] },
): Statement {
  const n = append.rows.length;
  const body = `WITH locked AS MATERIALIZED (
  SELECT p.next_offset, p.log_start_offset,
    CASE WHEN p.next_offset > p.stream_end THEN p.next_offset ELSE p.plain_end END AS bound
  FROM ${t.partitions} p
  WHERE p.topic = $1::text AND p.partition = $2::int
    AND EXISTS (SELECT 1 FROM ${t.topics} tp WHERE tp.name = $1::text AND tp.config->>'cleanup.policy' = 'delete'
      AND (tp.config->>'retention.ms')::bigint = -1 AND coalesce((tp.config->>'retention.bytes')::bigint, -1) = -1)
  FOR UPDATE OF p
),
known AS MATERIALIZED (SELECT 1 FROM ${st.streamVersions} c WHERE c.topic = $1::text AND c.key = $3::bytea),
advanced AS (
  UPDATE ${st.streamVersions} c SET version = c.version + $8::bigint, last_offset = l.next_offset + $8::bigint - 1
  FROM locked l
  WHERE c.topic = $1::text AND c.key = $3::bytea AND c.partition = $2::int
    AND ($4::bigint IS NULL OR c.version = $4::bigint)
    AND greatest(l.log_start_offset, c.last_offset + 1) >= l.bound
  RETURNING c.version - $8::bigint AS previous
),
created AS (
  INSERT INTO ${st.streamVersions} (topic, key, partition, version, last_offset)
  SELECT $1::text, $3::bytea, $2::int, $8::bigint, l.next_offset + $8::bigint - 1 FROM locked l
  WHERE NOT EXISTS (SELECT 1 FROM known) AND coalesce($4::bigint, 0) = 0 AND l.log_start_offset >= l.bound
  ON CONFLICT (topic, key) DO NOTHING
  RETURNING 0::bigint AS previous
),
ok AS MATERIALIZED (SELECT previous FROM advanced UNION ALL SELECT previous FROM created),
h AS (
  UPDATE ${t.partitions} p SET next_offset = p.next_offset + $8::bigint, stream_end = p.next_offset + $8::bigint, plain_end = l.bound
  FROM locked l
  WHERE p.topic = $1::text AND p.partition = $2::int AND EXISTS (SELECT 1 FROM ok)
  RETURNING p.next_offset - $8::bigint AS base, p.watched_until > now() AS w
),
ins AS (
  INSERT INTO ${t.records} (topic, partition, "offset", "timestamp", key, value, headers)
  SELECT $1::text, $2::int, h.base + u.i - 1, coalesce(u.ts, now()), $3::bytea, u.value, u.headers
  FROM h CROSS JOIN unnest($5::timestamptz[], $6::bytea[], $7::bytea[]) WITH ORDINALITY AS u(ts, value, headers, i)
)
SELECT (SELECT previous FROM ok)::text AS previous, h.base::text AS base, h.w FROM (SELECT 1) one LEFT JOIN h ON true`;
  // One record (the usual aggregate append) goes as scalars, more as arrays: two fixed texts.
  // Few output columns and no arrays for one record cut the driver's work per call by a third
  // (measured: ~85 -> ~55 us of Node CPU per append with 8 writers).
  const one = n === 1;
  const text = cachedText(t, one ? 'stream-one:1' : 'stream-one:n', () =>
    one ? body.replace('unnest($5::timestamptz[], $6::bytea[], $7::bytea[]) WITH ORDINALITY AS u(ts, value, headers, i)', '(SELECT $5::timestamptz AS ts, $6::bytea AS value, $7::bytea AS headers, 1 AS i) u') : body,
  );
  const row = append.rows[0]!;
  const values: unknown[] = [
    append.topic,
    append.partition | 0,
    append.key,
    append.expected === null ? null : String(append.expected),
    one ? row.timestamp : append.rows.map((r) => r.timestamp),
    one ? row.value : append.rows.map((r) => r.value),
    one ? row.headers : append.rows.map((r) => r.headers),
    String(n),
  ];
  return { text, values };
}

/** One append of a `streamAppendBatchStatement`: a stream and its records (all carrying its key). */
export interface StreamBatchEntry {
  readonly topic: string;
  readonly partition: number;
  readonly key: Uint8Array;
  /** Null: any version. */
  readonly expected: number | null;
  readonly rows: AppendGroup['rows'];
}

/** What `streamAppendBatchStatement` returns: one row per entry, in entry order (`ord` from 1). */
export interface StreamAppendBatchRow {
  readonly ord: number;
  /** The stream's version before the append; null when this entry wrote nothing. */
  readonly previous: string | null;
  /** The base offset written; null when this entry wrote nothing. */
  readonly base: string | null;
  /** Whether a watcher's lease on the partition was live (see `AppendResultRow.w`). */
  readonly w: boolean | null;
}

/**
 * Several independent expected-version appends in one statement and one commit — the group
 * commit of concurrent `aggregates.append` calls of one process (see `PgLogStorage`'s stream
 * coalescing). Each entry is decided alone, exactly as `streamAppendOneStatement` decides one: its
 * counter advances by an UPDATE whose condition PostgreSQL re-checks on the counter's latest
 * version, or is created when absent; its head and records move only if it passed. An entry that
 * cannot be decided alone (a version mismatch, records the marks cannot rule out, a topic that may
 * not hold streams, a moved stream) writes nothing and returns nulls, while the others commit.
 *
 * The entries must be on distinct partitions (so on distinct streams): each head then moves by its
 * one entry's records, at the offset its counter recorded. Heads are locked in (topic, partition)
 * order, as every append locks them. The text is fixed — entries and records travel as arrays —
 * so it is prepared once per connection.
 *
 * Parameters: topics, partitions, keys, expected versions (null: any) and record counts per
 * entry; then per record its entry (1-based), index within the entry, timestamp, value, headers.
 */
export function streamAppendBatchStatement(t: Tables, st: StreamTables, entries: readonly StreamBatchEntry[]): Statement {
  const text = cachedText(t, 'stream-batch', () => `WITH input AS MATERIALIZED (
  SELECT i.topic, i.partition, i.key, i.expected, i.n, i.ord::int AS ord
  FROM unnest($1::text[], $2::int[], $3::bytea[], $4::bigint[], $5::bigint[]) WITH ORDINALITY AS i(topic, partition, key, expected, n, ord)
),
locked AS MATERIALIZED (
  SELECT p.topic, p.partition, p.next_offset, p.log_start_offset,
    CASE WHEN p.next_offset > p.stream_end THEN p.next_offset ELSE p.plain_end END AS bound
  FROM ${t.partitions} p
  WHERE (p.topic, p.partition) IN (SELECT i.topic, i.partition FROM input i)
    AND EXISTS (SELECT 1 FROM ${t.topics} tp WHERE tp.name = p.topic AND tp.config->>'cleanup.policy' = 'delete'
      AND (tp.config->>'retention.ms')::bigint = -1 AND coalesce((tp.config->>'retention.bytes')::bigint, -1) = -1)
  ORDER BY p.topic, p.partition
  FOR UPDATE OF p
),
known AS MATERIALIZED (
  SELECT i.ord FROM input i JOIN ${st.streamVersions} c ON c.topic = i.topic AND c.key = i.key
),
advanced AS (
  UPDATE ${st.streamVersions} c SET version = c.version + i.n, last_offset = l.next_offset + i.n - 1
  FROM input i JOIN locked l ON l.topic = i.topic AND l.partition = i.partition
  WHERE c.topic = i.topic AND c.key = i.key AND c.partition = i.partition
    AND (i.expected IS NULL OR c.version = i.expected)
    AND greatest(l.log_start_offset, c.last_offset + 1) >= l.bound
  RETURNING i.ord, c.version - i.n AS previous
),
created AS (
  INSERT INTO ${st.streamVersions} (topic, key, partition, version, last_offset)
  SELECT i.topic, i.key, i.partition, i.n, l.next_offset + i.n - 1
  FROM input i JOIN locked l ON l.topic = i.topic AND l.partition = i.partition
  WHERE NOT EXISTS (SELECT 1 FROM known k WHERE k.ord = i.ord) AND coalesce(i.expected, 0) = 0 AND l.log_start_offset >= l.bound
  ON CONFLICT (topic, key) DO NOTHING
  RETURNING topic, key
),
ok AS MATERIALIZED (
  SELECT a.ord, a.previous FROM advanced a
  UNION ALL
  SELECT i.ord, 0::bigint FROM created c JOIN input i ON i.topic = c.topic AND i.key = c.key
),
h AS (
  UPDATE ${t.partitions} p SET next_offset = p.next_offset + i.n, stream_end = p.next_offset + i.n, plain_end = l.bound
  FROM input i JOIN ok ON ok.ord = i.ord JOIN locked l ON l.topic = i.topic AND l.partition = i.partition
  WHERE p.topic = i.topic AND p.partition = i.partition
  RETURNING i.ord, p.next_offset - i.n AS base, p.watched_until > now() AS w
),
ins AS (
  INSERT INTO ${t.records} (topic, partition, "offset", "timestamp", key, value, headers)
  SELECT i.topic, i.partition, h.base + r.idx, coalesce(r.ts, now()), i.key, r.value, r.headers
  FROM h JOIN input i ON i.ord = h.ord
  JOIN unnest($6::int[], $7::bigint[], $8::timestamptz[], $9::bytea[], $10::bytea[]) AS r(ord, idx, ts, value, headers) ON r.ord = h.ord
)
SELECT i.ord, ok.previous::text AS previous, h.base::text AS base, h.w
FROM input i LEFT JOIN ok ON ok.ord = i.ord LEFT JOIN h ON h.ord = i.ord
ORDER BY i.ord`);
  const r = recordColumns(entries);
  const values = [
    entries.map((e) => e.topic),
    entries.map((e) => e.partition | 0),
    entries.map((e) => e.key),
    entries.map((e) => (e.expected === null ? null : String(e.expected))),
    entries.map((e) => e.rows.length),
    r.group,
    r.index,
    r.timestamps,
    r.values,
    r.headers,
  ];
  return { text, values };
}

/** The post-commit wake-up statement (kept here for callers that import it from this module). */
export { notifyStatement } from './plans.js';

/** What `readStreamStatement` returns: one meta row (kind 0), then the records (kind 1) in offset order. */
export interface StreamReadRow {
  readonly kind: number;
  readonly low: string | null;
  readonly home: number | null;
  readonly counted: string | null;
  readonly cnt: string | null;
  readonly schema_version: number | null;
  readonly snap_version: string | null;
  readonly snap_offset: string | null;
  readonly state: Buffer | null;
  readonly taken_at: number | null;
  readonly offset: string | null;
  readonly ts: number | null;
  readonly value: Buffer | null;
  readonly headers: Buffer | null;
}

/**
 * A stream's counter, its snapshot (when `snapshot` is given and one exists at that schema
 * version) and its records after the snapshot, in one statement. No row when the partition does
 * not exist.
 */
export function readStreamStatement(
  t: Tables,
  st: StreamTables,
  topic: string,
  partition: number,
  key: Uint8Array,
  snapshot?: { name: string; schemaVersion: number },
): Statement {
  const values: unknown[] = [topic, partition, key];
  let snap = `SELECT NULL::int AS schema_version, NULL::bigint AS version, NULL::bigint AS "offset", NULL::bytea AS state, NULL::timestamptz AS taken_at WHERE false`;
  if (snapshot) {
    values.push(snapshot.name, snapshot.schemaVersion);
    snap = `SELECT schema_version, version, "offset", state, taken_at FROM ${st.streamSnapshots}
  WHERE name = $4 AND topic = $1 AND key = $3 AND schema_version = $5`;
  }
  const text = `WITH h AS (SELECT log_start_offset FROM ${t.partitions} WHERE topic = $1 AND partition = $2),
c AS (SELECT partition, version, last_offset FROM ${st.streamVersions} WHERE topic = $1 AND key = $3),
s AS (${snap}),
meta AS MATERIALIZED (
  SELECT h.log_start_offset, c.partition AS home, c.version AS counted,
    (SELECT count(*) FROM ${t.records} r WHERE r.topic = $1 AND r.partition = $2 AND r.key = $3
      AND r."offset" >= greatest(h.log_start_offset, coalesce(c.last_offset + 1, 0))) AS cnt,
    s.schema_version, s.version AS snap_version, s."offset" AS snap_offset, s.state, s.taken_at
  FROM h LEFT JOIN c ON true LEFT JOIN s ON true
)
SELECT 0 AS kind, m.log_start_offset::text AS low, m.home, m.counted::text AS counted, m.cnt::text AS cnt,
  m.schema_version, m.snap_version::text AS snap_version, m.snap_offset::text AS snap_offset, m.state,
  (extract(epoch FROM m.taken_at) * 1000)::float8 AS taken_at,
  NULL::bigint AS o, NULL::text AS "offset", NULL::float8 AS ts, NULL::bytea AS value, NULL::bytea AS headers
FROM meta m
UNION ALL
SELECT 1, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  r."offset", r."offset"::text, (extract(epoch FROM r."timestamp") * 1000)::float8, r.value, r.headers
FROM meta m JOIN ${t.records} r ON r.topic = $1 AND r.partition = $2 AND r.key = $3
  AND r."offset" >= greatest(m.log_start_offset, coalesce(m.snap_offset + 1, 0))
ORDER BY kind, o`;
  return { text, values };
}

/** Upserts a snapshot unless a newer one (higher schema version, or same and higher version) is stored. */
export function saveSnapshotStatement(
  st: StreamTables,
  s: { name: string; topic: string; key: Uint8Array; schemaVersion: number; version: number; offset: bigint; state: Uint8Array },
): Statement {
  return {
    text: `INSERT INTO ${st.streamSnapshots} AS cur (name, topic, key, schema_version, version, "offset", state)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (name, topic, key) DO UPDATE
SET schema_version = EXCLUDED.schema_version, version = EXCLUDED.version, "offset" = EXCLUDED."offset", state = EXCLUDED.state, taken_at = now()
WHERE cur.schema_version < EXCLUDED.schema_version OR (cur.schema_version = EXCLUDED.schema_version AND cur.version < EXCLUDED.version)
RETURNING 1 AS stored`,
    values: [s.name, s.topic, s.key, s.schemaVersion, s.version, s.offset.toString(), s.state],
  };
}

export function deleteSnapshotsStatement(st: StreamTables, name: string): Statement {
  return { text: `DELETE FROM ${st.streamSnapshots} WHERE name = $1`, values: [name] };
}
