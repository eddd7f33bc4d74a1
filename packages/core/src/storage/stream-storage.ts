/**
 * The event-sourcing part of the storage port: streams with expected versions, and snapshots.
 * `PgLogStorage` and `InMemoryLogStorage` implement it and pass the same conformance tests.
 *
 * ## Streams
 *
 * A **stream** is the records of one key in one topic. The key partitioner puts them all in one
 * partition, so they share that partition's order. A stream's **version** is the number of its
 * records: a stream at version 3 has three events, and the next one makes it 4. Records written
 * with the stream's key by a plain `append` (a producer's publish) are events of the stream too,
 * and count.
 *
 * ## The invariant: exactly one of two concurrent appends at the same version wins
 *
 * `appendToStreams` takes the head lock of every partition it touches (the lock every append
 * takes, held to commit), then reads each stream's version in a snapshot that sees everything
 * committed to those partitions — so no record of the stream can commit between the check and
 * the append. A stream that is not at the expected version fails the whole call with
 * `WrongExpectedVersionError`, and nothing of the call is written. Of two appends expecting the
 * same version, the second waits for the first's head lock, then sees the first's events, and
 * fails.
 *
 * ## What may hold a stream
 *
 * Retention and compaction delete records, which would silently change what a stream holds. A
 * stream append to a topic whose `cleanup.policy` is not `delete`, or whose `retention.ms` or
 * `retention.bytes` is not `-1`, is refused with `InvalidConfigError` and writes nothing. A
 * stream whose early records were removed anyway (`deleteRecords`, or a config changed later) is
 * **truncated**: reading it throws `StreamTruncatedError`, unless a snapshot covers what is gone.
 *
 * A stream stays in the partition it began in. If a topic's partition count grows so that the
 * stream's key maps elsewhere, stream operations on it throw `InvalidPartitionsError`.
 */
import type { Acks, PartitionAppend, PartitionAppendResult, StoredRecord } from './log-storage.js';

/**
 * What an append expects of a stream: exactly this version (a number ≥ 0), `'no-stream'` (no
 * events yet: the same as 0), or `'any'` (no check; the append still counts in the version).
 */
export type ExpectedVersion = number | 'no-stream' | 'any';

/** A stream a `appendToStreams` call checks (and, with the records carrying its key, appends to). */
export interface StreamExpectation {
  readonly topic: string;
  /** The partition the stream's key maps to. */
  readonly partition: number;
  readonly key: Uint8Array;
  readonly expectedVersion: ExpectedVersion;
}

/** A stream's versions around an append. */
export interface StreamVersionChange {
  readonly topic: string;
  readonly partition: number;
  readonly key: Uint8Array;
  /** The version the stream was at. */
  readonly previousVersion: number;
  /** The version after the append: `previousVersion` + the appended records carrying the key. */
  readonly version: number;
}

export interface StreamAppendResult {
  /** Per `PartitionAppend`, in the order given (as `append` returns them). */
  readonly appends: PartitionAppendResult[];
  /** Per `StreamExpectation`, in the order given. */
  readonly streams: StreamVersionChange[];
}

export interface StreamAppendOptions {
  /** @default -1 */
  readonly acks?: Acks;
}

/** Which snapshot a read may start from: an aggregate type's, at one schema version. */
export interface SnapshotSelector {
  /** The aggregate type (a decider's `name`). */
  readonly name: string;
  /** Snapshots taken at another schema version are ignored. */
  readonly schemaVersion: number;
}

/** A stored snapshot: an aggregate's state after the first `version` events of its stream. */
export interface StoredSnapshot {
  readonly name: string;
  readonly topic: string;
  readonly key: Uint8Array;
  readonly schemaVersion: number;
  readonly version: number;
  /** The offset of the last event the state includes. */
  readonly offset: bigint;
  /** The encoded state. */
  readonly state: Uint8Array;
  /** Milliseconds since the epoch. */
  readonly takenAt: number;
}

export type SnapshotWrite = Omit<StoredSnapshot, 'takenAt'>;

export interface StreamReadOptions {
  /** Start from this aggregate's snapshot, when one exists at the schema version. */
  readonly snapshot?: SnapshotSelector;
}

/** A stream as read: its version, the snapshot used (if any), and the records after it. */
export interface StreamSlice {
  readonly topic: string;
  readonly partition: number;
  readonly key: Uint8Array;
  /** The stream's version when it was read. */
  readonly version: number;
  /** The snapshot the read started from, or null (then `records` is the whole stream). */
  readonly snapshot: StoredSnapshot | null;
  /** The stream's records after the snapshot, in offset order: `version − (snapshot?.version ?? 0)` of them. */
  readonly records: readonly StoredRecord[];
}

/** Stream operations that run in a storage transaction (see `StorageTransaction`). */
export interface StreamTransaction {
  /**
   * Appends `appends` after checking, under the head locks of every partition involved, that
   * every stream in `streams` is at its expected version; otherwise throws
   * `WrongExpectedVersionError` and writes nothing of the call. `appends` may hold records of
   * other keys, topics and partitions (publishes of the same transaction): they commit with it.
   * A stream may be listed once per call.
   */
  appendToStreams(appends: readonly PartitionAppend[], streams: readonly StreamExpectation[], options?: StreamAppendOptions): Promise<StreamAppendResult>;
  /** Reads a stream as this transaction sees it (its own appends included). */
  readStream(topic: string, partition: number, key: Uint8Array, options?: StreamReadOptions): Promise<StreamSlice>;
}

/** The stream part of the storage port (see the design note at the top of this file). */
export interface StreamStorage extends StreamTransaction {
  /**
   * Stores a snapshot unless one of the same aggregate type, stream and schema version is already
   * at a version at least as high. Returns true when it stored it. A snapshot is a cache: losing
   * one only makes the next read longer.
   */
  saveSnapshot(snapshot: SnapshotWrite): Promise<boolean>;
  /** Deletes an aggregate type's snapshots (every stream, every schema version). Returns how many. */
  deleteSnapshots(name: string): Promise<number>;
}
