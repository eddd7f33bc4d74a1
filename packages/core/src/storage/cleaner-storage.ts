/**
 * The cleaner part of the storage port: retention and log compaction (invariant 6 — records
 * leave the log only by retention or compaction, and compaction keeps the latest record of every
 * key).
 *
 * A store elects one cleaner at a time ({@link CleanerStorage.acquireCleaner}); the holder of the
 * lease runs passes ({@link CleanerLease.clean}). A pass, per partition:
 *
 * 1. **indexes time**: notes, by the store's clock, that every record below the current log end
 *    was appended by now. Retention and the compaction lag are judged against these notes, so a
 *    record is never removed early, whatever timestamp a producer put on it;
 * 2. **retention** (`cleanup.policy` with `delete`): moves the log start offset past records older
 *    than `retention.ms`, and past whole segments while the partition holds more than
 *    `retention.bytes` (never below `retention.bytes`, never the segment being written); the
 *    records below the log start are then removed;
 * 3. **compaction** (`cleanup.policy` with `compact`): from where the last pass stopped (the
 *    partition's cleaned offset) up to the records newer than `min.compaction.lag.ms`, removes
 *    every record that a later record of the same key supersedes, in chunks; then removes the
 *    tombstones (null values) older than `delete.retention.ms` whose older records are already
 *    gone. Offsets never change; compaction leaves gaps and never moves the log start.
 */

/** Why a partition's log start offset last moved. */
export type LogStartReason = 'retention.ms' | 'retention.bytes' | 'delete-records';

/** Options of one cleaner pass. */
export interface CleanPassOptions {
  /** Only these topics (all topics when omitted). */
  readonly topics?: readonly string[];
  /** At most this many records are examined or removed per statement. */
  readonly chunkRecords: number;
  /**
   * Judge time as if the store's clock read this (milliseconds since the epoch). For tests and
   * drills only: time notes taken during the pass carry this time too. Omit it in production.
   */
  readonly now?: number;
  /** Stops the pass between chunks (the work done so far stays done). */
  readonly signal?: AbortSignal;
  /** Called after each partition is cleaned. */
  readonly onPartition?: (report: PartitionCleanReport) => void;
}

/** What one pass did to one partition. */
export interface PartitionCleanReport {
  readonly topic: string;
  readonly partition: number;
  readonly logStartOffset: bigint;
  /** Set when this pass moved the log start offset. */
  readonly logStartMovedBy: 'retention.ms' | 'retention.bytes' | null;
  /** Records removed because a later record of the same key superseded them. */
  readonly recordsCompacted: number;
  /** Tombstones removed after `delete.retention.ms`. */
  readonly tombstonesRemoved: number;
  /** Records removed below the log start (rows of a segment that could not be dropped whole). */
  readonly recordsExpired: number;
  /** Whole segments dropped (below the log start, or emptied by compaction). */
  readonly segmentsDropped: number;
  /** Compaction has examined every offset below this one. */
  readonly cleanedOffset: bigint;
}

/** What one pass did. */
export interface CleanPassReport {
  readonly partitions: readonly PartitionCleanReport[];
  readonly durationMs: number;
}

/** The right to clean a store, held by one session at a time. */
export interface CleanerLease {
  /** True once the lease is known to be lost (its session ended); `clean` then throws. */
  readonly lost: boolean;
  /** Runs one pass. */
  clean(options: CleanPassOptions): Promise<CleanPassReport>;
  /** Gives the lease up. Idempotent. */
  release(): Promise<void>;
}

/** Stores that clean themselves implement this. */
export interface CleanerStorage {
  /**
   * Tries to become the store's one cleaner. Resolves to `null` when another session holds the
   * lease (Postgres: a session advisory lock, freed when its holder's session ends).
   */
  acquireCleaner(): Promise<CleanerLease | null>;
}
