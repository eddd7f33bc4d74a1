/**
 * Event-sourced streams for `InMemoryLogStorage`: expected-version appends, stream reads and
 * snapshots, kept the way `PgLogStorage` keeps them (see `stream-storage.ts` in `@annals/core`).
 *
 * ## Design note
 *
 * A stream's version is a counter (its version up to `lastOffset`, advanced by stream appends)
 * plus the records carrying its key after `lastOffset` (written by plain appends). Both change
 * only under the partition's lock. `appendIn` takes the locks of every partition involved — in
 * (topic, partition) order, the order every append takes them — before it counts, so the count
 * sees every committed record and this transaction's staged ones; a check that fails throws
 * before anything is staged. Counters are staged in the transaction like its records and applied
 * with them at commit (a savepoint restores them), so a rolled-back append leaves no count.
 */
import {
  InvalidConfigError,
  InvalidOptionsError,
  InvalidPartitionsError,
  StreamTruncatedError,
  UnknownTopicOrPartitionError,
  WrongExpectedVersionError,
  type PartitionAppend,
  type PartitionAppendResult,
  type SnapshotWrite,
  type StoredHeaders,
  type StoredRecord,
  type StoredSnapshot,
  type StreamAppendResult,
  type StreamExpectation,
  type StreamReadOptions,
  type StreamSlice,
  type StreamVersionChange,
  type TopicConfig,
} from '@annals/core';

/** A stream's counter: its version up to `lastOffset`, and the partition it lives in. */
export interface StreamCounter {
  readonly partition: number;
  readonly version: number;
  readonly lastOffset: number;
}

/** What a transaction holds for streams: its staged counters, by stream id. */
export interface StreamStage {
  readonly streamCounters: Map<string, StreamCounter>;
}

interface LogRecordView {
  readonly timestamp: number;
  readonly key: Uint8Array | null;
  readonly value: Uint8Array | null;
  readonly headers: Readonly<Record<string, Uint8Array>>;
}

/** A partition as streams see it: the log start and the committed records from there. */
export interface StreamLogView {
  readonly topic: string;
  readonly partition: number;
  readonly start: number;
  /** `null` where compaction removed a record. */
  readonly records: ReadonlyArray<LogRecordView | null>;
}

/** What the streams need from their storage (its private operations, bound). */
export interface StreamEngine<T extends StreamStage> {
  /** The partition's log; throws `UnknownTopicOrPartitionError`. */
  log(topic: string, partition: number): StreamLogView;
  config(topic: string): TopicConfig;
  /** The records `txn` staged to `log` (none without a transaction). */
  staged(txn: T | undefined, log: StreamLogView): readonly LogRecordView[];
  /** Validates appends without waiting (unknown partitions, duplicates). */
  validate(appends: readonly PartitionAppend[]): void;
  /** Takes the locks of these partitions (sorted) for `txn`, waiting in turn. */
  lock(txn: T, partitions: ReadonlyArray<{ topic: string; partition: number }>): Promise<void>;
  appendIn(txn: T, appends: readonly PartitionAppend[]): Promise<PartitionAppendResult[]>;
  now(): number;
}

const keyText = (key: Uint8Array): string => new TextDecoder().decode(key);
const hex = (key: Uint8Array): string => Buffer.from(key.buffer, key.byteOffset, key.byteLength).toString('hex');
const streamId = (topic: string, key: Uint8Array): string => `${topic}\u0000${hex(key)}`;
const snapshotId = (name: string, topic: string, key: Uint8Array): string => `${name}\u0000${streamId(topic, key)}`;

function sameBytes(a: Uint8Array | null, b: Uint8Array): boolean {
  if (a === null || a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function copyHeaders(headers: Readonly<Record<string, Uint8Array>>): StoredHeaders {
  const out: Record<string, Uint8Array> = {};
  for (const [name, v] of Object.entries(headers)) Object.defineProperty(out, name, { value: Buffer.from(v), enumerable: true });
  return out;
}

function expectedNumber(s: StreamExpectation): number | null {
  const e = s.expectedVersion;
  if (e === 'any') return null;
  if (e === 'no-stream') return 0;
  if (typeof e !== 'number' || !Number.isSafeInteger(e) || e < 0) {
    throw new InvalidOptionsError(
      `Stream "${keyText(s.key)}" of topic "${s.topic}": expectedVersion must be an integer ≥ 0, 'no-stream' or 'any', got ${JSON.stringify(e)}.`,
    );
  }
  return e;
}

export class InMemoryStreams<T extends StreamStage> {
  /** Committed counters, by stream id. */
  readonly #counters = new Map<string, StreamCounter>();
  readonly #snapshots = new Map<string, StoredSnapshot>();
  readonly #engine: StreamEngine<T>;

  constructor(engine: StreamEngine<T>) {
    this.#engine = engine;
  }

  /** The stream's count: its counter (staged or committed) plus its records after the counter. */
  #count(txn: T | undefined, log: StreamLogView, key: Uint8Array, topic: string): { counter: StreamCounter | undefined; actual: number; cnt: number; maxOffset: number } {
    const id = streamId(topic, key);
    const counter = txn?.streamCounters.get(id) ?? this.#counters.get(id);
    if (counter && counter.partition !== log.partition) {
      throw new InvalidPartitionsError(
        `Stream "${keyText(key)}" of topic "${topic}" lives in partition ${counter.partition}, but its key now maps to partition ${log.partition}: the topic's partition count grew after the stream began, and a stream cannot move. Nothing was written.`,
        { topic, partition: log.partition },
      );
    }
    const from = Math.max(log.start, counter ? counter.lastOffset + 1 : 0);
    let cnt = 0;
    let maxOffset = -1;
    this.#scan(txn, log, from, (offset, r) => {
      if (sameBytes(r.key, key)) {
        cnt++;
        maxOffset = offset;
      }
    });
    return { counter, actual: (counter?.version ?? 0) + cnt, cnt, maxOffset };
  }

  /** Visits committed then staged records from offset `from`. */
  #scan(txn: T | undefined, log: StreamLogView, from: number, visit: (offset: number, r: LogRecordView) => void): void {
    for (let i = Math.max(0, from - log.start); i < log.records.length; i++) {
      const r = log.records[i];
      if (r) visit(log.start + i, r);
    }
    const end = log.start + log.records.length;
    this.#engine.staged(txn, log).forEach((r, i) => {
      if (end + i >= from) visit(end + i, r);
    });
  }

  async appendIn(txn: T, appends: readonly PartitionAppend[], streams: readonly StreamExpectation[]): Promise<StreamAppendResult> {
    // Everything checkable without waiting, first.
    const seen = new Set<string>();
    const expected = streams.map((s) => {
      if (!(s.key instanceof Uint8Array) || s.key.length === 0) throw new InvalidOptionsError(`A stream of topic "${s.topic}" needs a non-empty key.`, { topic: s.topic });
      const id = streamId(s.topic, s.key);
      if (seen.has(id)) throw new InvalidOptionsError(`Stream "${keyText(s.key)}" of topic "${s.topic}" is listed twice; merge its appends first.`, { topic: s.topic });
      seen.add(id);
      return expectedNumber(s);
    });
    this.#engine.validate(appends);
    const logs = streams.map((s) => {
      try {
        return this.#engine.log(s.topic, s.partition);
      } catch {
        throw new UnknownTopicOrPartitionError(`Cannot append: partition ${s.partition} of topic "${s.topic}" does not exist. Nothing was written.`, { topic: s.topic });
      }
    });
    const partitions = new Map<string, { topic: string; partition: number }>();
    for (const p of [...appends, ...streams]) partitions.set(`${p.topic}\u0000${p.partition}`, { topic: p.topic, partition: p.partition });
    await this.#engine.lock(
      txn,
      [...partitions.values()].sort((a, b) => (a.topic < b.topic ? -1 : a.topic > b.topic ? 1 : a.partition - b.partition)),
    );
    // Under the locks: nobody else can append to these partitions until this transaction ends.
    const counts = streams.map((s, i) => {
      const config = this.#engine.config(s.topic);
      const reasons: string[] = [];
      if (config['cleanup.policy'] !== 'delete') reasons.push(`cleanup.policy is '${config['cleanup.policy']}'`);
      if (config['retention.ms'] !== -1) reasons.push(`retention.ms is ${config['retention.ms']}`);
      if (config['retention.bytes'] !== -1) reasons.push(`retention.bytes is ${config['retention.bytes']}`);
      if (reasons.length > 0) {
        throw new InvalidConfigError(
          `Topic "${s.topic}" cannot hold event-sourced streams: its ${reasons.join(' and ')}, so retention or compaction would delete events from under an aggregate. ` +
            `Keep streams in a topic with config { 'retention.ms': -1 } (and the default cleanup.policy 'delete', retention.bytes -1). Nothing was written.`,
          { topic: s.topic },
        );
      }
      return this.#count(txn, logs[i]!, s.key, s.topic);
    });
    streams.forEach((s, i) => {
      const want = expected[i]!;
      const actual = counts[i]!.actual;
      if (want !== null && want !== actual) {
        const key = keyText(s.key);
        const what = s.expectedVersion === 'no-stream' ? 'no stream (version 0)' : `version ${String(s.expectedVersion)}`;
        throw new WrongExpectedVersionError(
          `Stream "${key}" of topic "${s.topic}" is at version ${actual}, but the append expected ${what}: another writer appended first. Nothing was written; load the stream again, decide again and retry.`,
          { topic: s.topic, partition: s.partition, key, expectedVersion: s.expectedVersion, actualVersion: actual },
        );
      }
    });
    const results = await this.#engine.appendIn(txn, appends);
    const versions: StreamVersionChange[] = streams.map((s, i) => {
      const { actual, cnt, maxOffset, counter } = counts[i]!;
      const k = appends.findIndex((a) => a.topic === s.topic && a.partition === s.partition);
      let n = 0;
      let last = -1;
      appends[k]?.records.forEach((r, j) => {
        if (sameBytes(r.key, s.key)) {
          n++;
          last = j;
        }
      });
      if (n > 0 || cnt > 0) {
        const lastOffset = n > 0 ? Number(results[k]!.baseOffset) + last : Math.max(counter?.lastOffset ?? -1, maxOffset);
        txn.streamCounters.set(streamId(s.topic, s.key), { partition: s.partition, version: actual + n, lastOffset });
      }
      return { topic: s.topic, partition: s.partition, key: s.key, previousVersion: actual, version: actual + n };
    });
    return { appends: results, streams: versions };
  }

  read(txn: T | undefined, topic: string, partition: number, key: Uint8Array, options: StreamReadOptions = {}): StreamSlice {
    const log = this.#engine.log(topic, partition);
    const { actual: version } = this.#count(txn, log, key, topic);
    const stored = options.snapshot ? this.#snapshots.get(snapshotId(options.snapshot.name, topic, key)) : undefined;
    const snapshot = stored && stored.schemaVersion === options.snapshot!.schemaVersion ? { ...stored, key: Buffer.from(stored.key), state: Buffer.from(stored.state) } : null;
    const records: StoredRecord[] = [];
    this.#scan(txn, log, Math.max(log.start, snapshot ? Number(snapshot.offset) + 1 : 0), (offset, r) => {
      if (!sameBytes(r.key, key)) return;
      records.push({
        topic,
        partition,
        offset: BigInt(offset),
        timestamp: r.timestamp,
        key: Buffer.from(key),
        value: r.value === null ? null : Buffer.from(r.value),
        headers: copyHeaders(r.headers),
      });
    });
    const covered = (snapshot?.version ?? 0) + records.length;
    if (covered !== version) {
      throw new StreamTruncatedError(
        `Stream "${keyText(key)}" of topic "${topic}" is at version ${version}, but only ${covered} of its events are still in the log${snapshot ? ` (a snapshot at version ${snapshot.version} included)` : ''}: ` +
          `records were removed (deleteRecords, or retention after a config change). Its state cannot be rebuilt.`,
        keyText(key),
        { topic, partition },
      );
    }
    return { topic, partition, key: Buffer.from(key), version, snapshot, records };
  }

  saveSnapshot(s: SnapshotWrite): boolean {
    this.#engine.config(s.topic); // throws for an unknown topic
    const id = snapshotId(s.name, s.topic, s.key);
    const current = this.#snapshots.get(id);
    if (current && !(current.schemaVersion < s.schemaVersion || (current.schemaVersion === s.schemaVersion && current.version < s.version))) return false;
    this.#snapshots.set(id, Object.freeze({ ...s, key: Buffer.from(s.key), state: Buffer.from(s.state), takenAt: Math.floor(this.#engine.now()) }));
    return true;
  }

  deleteSnapshots(name: string): number {
    let n = 0;
    for (const [id, s] of this.#snapshots) {
      if (s.name === name) {
        this.#snapshots.delete(id);
        n++;
      }
    }
    return n;
  }

  /** At commit: the transaction's counters become the committed ones. */
  apply(txn: T): void {
    for (const [id, c] of txn.streamCounters) this.#counters.set(id, c);
  }

  /** Deleted topics take their counters and snapshots with them. */
  forgetTopics(topics: ReadonlySet<string>): void {
    for (const id of [...this.#counters.keys()]) if (topics.has(id.slice(0, id.indexOf('\u0000')))) this.#counters.delete(id);
    for (const [id, s] of [...this.#snapshots]) if (topics.has(s.topic)) this.#snapshots.delete(id);
  }
}
