/**
 * The pure half of `PgLogStorage`'s stream operations: validating a stream append, turning it into
 * the inputs of `streamAppendStatement`, and turning that statement's (or `readStreamStatement`'s)
 * rows into results or typed errors. The SQL is in `plans-aggregates.ts`; the round trips are in
 * `PgLogStorage` (section "event-sourced streams").
 */
import {
  InvalidConfigError,
  InvalidOptionsError,
  InvalidPartitionsError,
  StreamTruncatedError,
  UnknownTopicOrPartitionError,
  WrongExpectedVersionError,
  type ExpectedVersion,
  type PartitionAppend,
  type StoredSnapshot,
  type StreamExpectation,
  type StreamSlice,
  type StreamVersionChange,
} from '@annals/core';
import { decodeHeaders } from './internal/headers.js';
import type { StreamAppendOneRow, StreamAppendRow, StreamCheck, StreamHead, StreamReadRow } from './plans-aggregates.js';

const keyText = (key: Uint8Array): string => new TextDecoder().decode(key);

function sameBytes(a: Uint8Array | null, b: Uint8Array): boolean {
  if (a === null || a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function hex(key: Uint8Array): string {
  return Buffer.from(key.buffer, key.byteOffset, key.byteLength).toString('hex');
}

/** The expected version as the statement takes it: a number, or null for `'any'`. */
export function expectedNumber(expected: ExpectedVersion, where: string): number | null {
  if (expected === 'any') return null;
  if (expected === 'no-stream') return 0;
  if (typeof expected !== 'number' || !Number.isSafeInteger(expected) || expected < 0) {
    throw new InvalidOptionsError(`${where}: expectedVersion must be an integer ≥ 0, 'no-stream' or 'any', got ${JSON.stringify(expected)}.`);
  }
  return expected;
}

export interface PreparedStreamAppend {
  /** Every partition involved, sorted by (topic, partition), with its record count. */
  readonly heads: StreamHead[];
  /** Per expectation, in order. */
  readonly checks: StreamCheck[];
  readonly rows: number;
}

/** Validates a stream append (nothing waits or is written yet) and derives the statement's inputs. */
export function prepareStreamAppend(appends: readonly PartitionAppend[], streams: readonly StreamExpectation[]): PreparedStreamAppend {
  const seen = new Set<string>();
  const checks = streams.map((s): StreamCheck => {
    if (!(s.key instanceof Uint8Array) || s.key.length === 0) {
      throw new InvalidOptionsError(`A stream of topic "${s.topic}" needs a non-empty key.`, { topic: s.topic });
    }
    if (!Number.isSafeInteger(s.partition) || s.partition < 0) {
      throw new UnknownTopicOrPartitionError(`Partition ${String(s.partition)} of topic "${s.topic}" does not exist. Nothing was written.`, { topic: s.topic });
    }
    const id = `${s.topic}\u0000${hex(s.key)}`;
    if (seen.has(id)) throw new InvalidOptionsError(`Stream "${keyText(s.key)}" of topic "${s.topic}" is listed twice; merge its appends first.`, { topic: s.topic });
    seen.add(id);
    const expected = expectedNumber(s.expectedVersion, `Stream "${keyText(s.key)}" of topic "${s.topic}"`);
    const append = appends.find((a) => a.topic === s.topic && a.partition === s.partition);
    let n = 0;
    let lastIndex = 0;
    append?.records.forEach((r, i) => {
      if (sameBytes(r.key, s.key)) {
        n++;
        lastIndex = i;
      }
    });
    return { topic: s.topic, partition: s.partition, key: s.key, expected, n, lastIndex };
  });
  const heads = new Map<string, StreamHead>();
  for (const a of appends) heads.set(`${a.topic}\u0000${a.partition}`, { topic: a.topic, partition: a.partition, n: a.records.length });
  for (const s of streams) {
    const k = `${s.topic}\u0000${s.partition}`;
    if (!heads.has(k)) heads.set(k, { topic: s.topic, partition: s.partition, n: 0 });
  }
  const sorted = [...heads.values()].sort((a, b) => (a.topic < b.topic ? -1 : a.topic > b.topic ? 1 : a.partition - b.partition));
  return { heads: sorted, checks, rows: appends.reduce((n, a) => n + a.records.length, 0) };
}

/**
 * The verdict of a `streamAppendStatement` row: `'stale'` (nothing written; run it again with the
 * locks held) or the streams' versions. Throws the typed error of a failed check (nothing written).
 */
export function interpretStreamAppend(
  row: StreamAppendRow,
  streams: readonly StreamExpectation[],
  prepared: PreparedStreamAppend,
): 'stale' | StreamVersionChange[] {
  if (!row.complete) {
    throw new UnknownTopicOrPartitionError(
      `Cannot append: a topic or partition among ${prepared.heads.map((h) => `${h.topic}[${h.partition}]`).join(', ')} does not exist. Nothing was written.`,
      { topic: prepared.heads[0]?.topic },
    );
  }
  if (!row.fresh) return 'stale';
  const results = row.streams ?? [];
  streams.forEach((s, i) => {
    const r = results[i]!;
    if (!r.streamable) throw notStreamable(s.topic, r.policy, r.retentionMs, r.retentionBytes);
    if (r.home !== null && r.home !== s.partition) throw movedStream(s.topic, s.key, r.home, s.partition);
  });
  return streams.map((s, i) => {
    const actual = Number(results[i]!.actual);
    const expected = prepared.checks[i]!.expected;
    if (expected !== null && expected !== actual) throw wrongVersion(s, actual);
    return { topic: s.topic, partition: s.partition, key: s.key, previousVersion: actual, version: actual + prepared.checks[i]!.n };
  });
}

/**
 * The one stream of a call that `streamAppendOneStatement` can write: one stream whose records
 * (at least one) all carry its key and go to its partition. Null otherwise.
 */
export function singleStream(appends: readonly PartitionAppend[], prepared: PreparedStreamAppend, maxRows: number): StreamCheck | null {
  if (prepared.checks.length !== 1 || appends.length !== 1) return null;
  const check = prepared.checks[0]!;
  const only = appends[0]!;
  if (only.topic !== check.topic || only.partition !== check.partition) return null;
  if (check.n !== only.records.length || check.n === 0 || check.n > maxRows) return null;
  return check;
}

/**
 * The verdict of a `streamAppendOneStatement` row: `'undecided'` (it wrote nothing; the caller
 * decides in a transaction, which also yields the exact error) or the stream's versions and the
 * base offset.
 */
export function interpretStreamAppendOne(
  row: StreamAppendOneRow | undefined,
  stream: StreamExpectation,
  check: StreamCheck,
): 'undecided' | { version: StreamVersionChange; base: bigint; watched: boolean } {
  if (!row || row.base === null || row.previous === null) return 'undecided';
  const previous = Number(row.previous);
  return {
    base: BigInt(row.base),
    watched: row.w === true,
    version: { topic: stream.topic, partition: stream.partition, key: stream.key, previousVersion: previous, version: previous + check.n },
  };
}

export function wrongVersion(s: StreamExpectation, actual: number): WrongExpectedVersionError {
  const key = keyText(s.key);
  const expected = s.expectedVersion === 'no-stream' ? 'no stream (version 0)' : `version ${String(s.expectedVersion)}`;
  return new WrongExpectedVersionError(
    `Stream "${key}" of topic "${s.topic}" is at version ${actual}, but the append expected ${expected}: another writer appended first. Nothing was written; load the stream again, decide again and retry.`,
    { topic: s.topic, partition: s.partition, key, expectedVersion: s.expectedVersion, actualVersion: actual },
  );
}

export function notStreamable(topic: string, policy: string | null, retentionMs: string | null, retentionBytes: string | null): InvalidConfigError {
  const reasons: string[] = [];
  if (policy !== 'delete') reasons.push(`cleanup.policy is '${String(policy)}'`);
  if (retentionMs !== null && Number(retentionMs) !== -1) reasons.push(`retention.ms is ${retentionMs}`);
  if (retentionBytes !== null && Number(retentionBytes) !== -1) reasons.push(`retention.bytes is ${retentionBytes}`);
  return new InvalidConfigError(
    `Topic "${topic}" cannot hold event-sourced streams: its ${reasons.join(' and ')}, so retention or compaction would delete events from under an aggregate. ` +
      `Keep streams in a topic with config { 'retention.ms': -1 } (and the default cleanup.policy 'delete', retention.bytes -1). Nothing was written.`,
    { topic },
  );
}

export function movedStream(topic: string, key: Uint8Array, home: number, partition: number): InvalidPartitionsError {
  return new InvalidPartitionsError(
    `Stream "${keyText(key)}" of topic "${topic}" lives in partition ${home}, but its key now maps to partition ${partition}: the topic's partition count grew after the stream began, and a stream cannot move. Nothing was written.`,
    { topic, partition },
  );
}

/** A `readStreamStatement` result as a `StreamSlice`; throws when the stream is truncated or moved. */
export function interpretStreamRead(
  rows: readonly StreamReadRow[],
  topic: string,
  partition: number,
  key: Uint8Array,
  snapshotName: string | undefined,
): StreamSlice {
  const meta = rows[0];
  if (!meta || meta.kind !== 0) {
    throw new UnknownTopicOrPartitionError(`Partition ${partition} of topic "${topic}" does not exist.`, { topic, partition });
  }
  if (meta.home !== null && meta.home !== partition) throw movedStream(topic, key, meta.home, partition);
  const version = Number(meta.counted ?? 0) + Number(meta.cnt ?? 0);
  const snapshot: StoredSnapshot | null =
    meta.snap_version === null || snapshotName === undefined
      ? null
      : {
          name: snapshotName,
          topic,
          key,
          schemaVersion: meta.schema_version!,
          version: Number(meta.snap_version),
          offset: BigInt(meta.snap_offset!),
          state: meta.state!,
          takenAt: Math.floor(meta.taken_at!),
        };
  const records = rows.slice(1).map((r) => ({
    topic,
    partition,
    offset: BigInt(r.offset!),
    timestamp: Math.floor(r.ts!),
    key,
    value: r.value,
    headers: decodeHeaders(r.headers),
  }));
  const covered = (snapshot?.version ?? 0) + records.length;
  if (covered !== version) {
    throw new StreamTruncatedError(
      `Stream "${keyText(key)}" of topic "${topic}" is at version ${version}, but only ${covered} of its events are still in the log${snapshot ? ` (a snapshot at version ${snapshot.version} included)` : ''}: ` +
        `records were removed (deleteRecords, or retention after a config change). Its state cannot be rebuilt.`,
      keyText(key),
      { topic, partition },
    );
  }
  return { topic, partition, key, version, snapshot, records };
}
