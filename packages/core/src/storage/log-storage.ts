/**
 * The storage port: the seam between the client runtime in `@annals/core` and a log store.
 *
 * `PgLogStorage` (in `@annals/storage-pg`) and `InMemoryLogStorage` (in `@annals/testing`)
 * implement it, and both must pass the conformance suite exported by `@annals/testing`. A store
 * promises, per partition:
 *
 * - **dense offsets**: an append of n records to a partition takes offsets `[end, end + n)`; an
 *   append that rolls back takes none;
 * - **ordered visibility**: once a reader has seen offset N, no record below N becomes visible
 *   later (appends to one partition commit in offset order);
 * - **atomic appends**: the records of one `append` call (any number of topics and partitions),
 *   and everything else done in the same storage transaction, become visible together or not at all.
 *
 * Offsets are `bigint` here; the KafkaJS-shaped layer turns them into strings.
 */
import type { TopicConfig } from '../contracts/topic-config.js';
import type { CleanerStorage } from './cleaner-storage.js';
import type { ProjectionStore } from './projection-storage.js';
import type { SchemaRegistryStorage } from './schema-registry.js';
import type { StreamStorage, StreamTransaction } from './stream-storage.js';

/** Record headers as stored: header name → bytes. */
export type StoredHeaders = Readonly<Record<string, Uint8Array>>;

/** One record to append. */
export interface AppendRecord {
  readonly key: Uint8Array | null;
  /** `null` is a tombstone. */
  readonly value: Uint8Array | null;
  readonly headers: StoredHeaders | null;
  /** Milliseconds since the epoch; `null` means "the store's clock at append". */
  readonly timestamp: number | null;
}

/** Records for one partition of one topic, appended in order. */
export interface PartitionAppend {
  readonly topic: string;
  readonly partition: number;
  readonly records: readonly AppendRecord[];
  /**
   * Idempotent producers only: the sequence number of the first record. The store refuses to
   * write a batch whose sequence it has already written for this producer and partition, and
   * returns the original base offset instead (`duplicate: true`).
   */
  readonly baseSequence?: number;
}

/** Durability of an append's commit. Kafka's `acks`: -1 (all), 1 (leader), 0 (none). */
export type Acks = -1 | 0 | 1;

export interface AppendOptions {
  /** @default -1 */
  readonly acks?: Acks;
  /** Set for idempotent producers: every `PartitionAppend` must carry a `baseSequence`. */
  readonly producerId?: bigint;
  /** Set for transactional producers: the commit fails with `ProducerFencedError` if a newer epoch exists. */
  readonly fence?: { readonly transactionalId: string; readonly producerId: bigint; readonly epoch: number };
}

export interface PartitionAppendResult {
  readonly topic: string;
  readonly partition: number;
  readonly baseOffset: bigint;
  /** True when an idempotent retry found the batch already written; `baseOffset` is the original's. */
  readonly duplicate: boolean;
}

/** A record read from the log. */
export interface StoredRecord {
  readonly topic: string;
  readonly partition: number;
  readonly offset: bigint;
  /** Milliseconds since the epoch. */
  readonly timestamp: number;
  readonly key: Uint8Array | null;
  readonly value: Uint8Array | null;
  readonly headers: StoredHeaders;
}

export interface FetchLimits {
  /** At most this many records. */
  readonly maxRecords: number;
  /** At most about this many bytes of keys, values and headers; at least one record is returned. */
  readonly maxBytes: number;
}

export interface FetchResult {
  readonly records: readonly StoredRecord[];
  /** The log end offset (the offset the next appended record will take) when the fetch ran. */
  readonly highWatermark: bigint;
  /** The first offset still in the log. */
  readonly logStartOffset: bigint;
}

export interface TopicSpec {
  readonly name: string;
  readonly partitions: number;
  readonly config: TopicConfig;
}

export interface TopicDescription {
  readonly name: string;
  readonly partitions: number;
  readonly config: TopicConfig;
}

export interface PartitionWatermarks {
  readonly partition: number;
  /** Log start offset (Kafka's low watermark). */
  readonly low: bigint;
  /** Log end offset (Kafka's high watermark). */
  readonly high: bigint;
}

/** An idempotent or transactional producer's identity, as the store registered it. */
export interface ProducerIdentity {
  readonly producerId: bigint;
  readonly epoch: number;
}

/** Called with the partition that received records; may be called spuriously. */
export type AppendListener = (topic: string, partition: number) => void;

/** A storage transaction: what `annals.transaction` builds on. Stream appends and reads: see `stream-storage.ts`. */
export interface StorageTransaction<TDb> extends StreamTransaction {
  /** The application's database handle, in this transaction (a Kysely transaction for Postgres). */
  readonly db: TDb;
  /** Appends in this transaction; visible when it commits. */
  append(appends: readonly PartitionAppend[], options?: AppendOptions): Promise<PartitionAppendResult[]>;
  /** Commits consumer offsets in this transaction (fenced like `GroupStorage.commitOffsets`). */
  commitOffsets(groupId: string, commits: readonly OffsetCommit[], fence?: CommitFence): Promise<void>;
}

/**
 * A transaction that begins on first use — the first query through `db`, or an `append` or
 * `commitOffsets` — and ends with `commit()` or `rollback()`. Consumers use it to share one
 * transaction across a fetched batch, and to open none when handlers never touch `db`.
 */
export interface DeferredTransaction<TDb> extends StorageTransaction<TDb> {
  /** True once the database transaction has begun. */
  readonly begun: boolean;
  /**
   * Runs `fn` under a savepoint (when the transaction has begun): if `fn` throws, only its own
   * writes roll back. If `fn` begins the transaction and throws, what it wrote rolls back and the
   * transaction is as if never begun (still usable).
   */
  savepoint<T>(fn: () => Promise<T>): Promise<T>;
  /** Commits (a no-op if never begun). */
  commit(): Promise<void>;
  /** Rolls back (a no-op if never begun). Idempotent. */
  rollback(): Promise<void>;
}

export interface StorageTransactionOptions {
  /** @default -1 */
  readonly acks?: Acks;
  /** Abort the transaction if it is still open after this many milliseconds. */
  readonly timeoutMs?: number;
}

/** The storage port. Every method may throw an `AnnalsError`; retriable ones say so. */
export interface LogStorage<TDb = unknown> extends GroupStorage, StreamStorage {
  /** A short description for logs, e.g. `postgres 127.0.0.1:5432/app (schema annals)`. */
  readonly description: string;
  /** Connects and applies migrations. Idempotent and safe to call concurrently. */
  connect(): Promise<void>;
  /** Releases what `connect` took. Idempotent. Never ends a pool the user passed in. */
  disconnect(): Promise<void>;

  createTopics(specs: readonly TopicSpec[]): Promise<void>;
  deleteTopics(names: readonly string[]): Promise<void>;
  createPartitions(topic: string, count: number): Promise<void>;
  listTopics(): Promise<string[]>;
  /** Descriptions of the named topics (all topics when omitted); unknown names throw. */
  describeTopics(names?: readonly string[]): Promise<TopicDescription[]>;
  /** Atomically replaces a topic's config with `update(current)`. */
  alterTopicConfig(topic: string, update: (current: TopicConfig) => TopicConfig): Promise<TopicConfig>;
  fetchWatermarks(topic: string): Promise<PartitionWatermarks[]>;
  /**
   * Moves partitions' log start offsets forward (never back, never past the log end) and removes
   * the records below them. `offset: -1n` means the log end. Returns the new log start offsets.
   */
  deleteRecords(topic: string, partitions: ReadonlyArray<{ partition: number; offset: bigint }>): Promise<Array<{ partition: number; lowWatermark: bigint }>>;
  /** Per partition, the first offset whose timestamp is ≥ `timestamp`, or the high watermark. */
  fetchOffsetsByTimestamp(topic: string, timestamp: number): Promise<Array<{ partition: number; offset: bigint }>>;

  /** Registers (or re-registers) a producer; a transactional id bumps its epoch and fences the older one. */
  initProducer(transactionalId?: string): Promise<ProducerIdentity>;
  /** Appends in a transaction of its own. */
  append(appends: readonly PartitionAppend[], options?: AppendOptions): Promise<PartitionAppendResult[]>;
  /** A transaction that begins on first use; see {@link DeferredTransaction}. */
  deferredTransaction(options?: StorageTransactionOptions): DeferredTransaction<TDb>;
  /** Runs `fn` in one storage transaction; commits when it resolves, rolls back when it throws. */
  transaction<T>(fn: (tx: StorageTransaction<TDb>) => Promise<T>, options?: StorageTransactionOptions): Promise<T>;

  fetch(topic: string, partition: number, offset: bigint, limits: FetchLimits): Promise<FetchResult>;
  /** Calls `listener` after commits that appended to `topics`. Resolves once listening. */
  watch(topics: readonly string[], listener: AppendListener): Promise<() => Promise<void>>;
  /** Projection bookkeeping and read models (see `projection-storage.ts`); absent on stores without projections. */
  readonly projections?: ProjectionStore<TDb>;
  /** Retention and compaction (see `cleaner-storage.ts`); absent on stores that never clean. */
  readonly cleaner?: CleanerStorage;
  /** The schema registry: event types' versions, their JSON Schemas and fingerprints (see `schema-registry.ts`). */
  readonly schemaRegistry: SchemaRegistryStorage;
}

// ---- consumer groups ---------------------------------------------------------------------------

/** What a member tells the group when it joins. */
export interface MemberMetadata {
  readonly clientId: string;
  readonly clientHost: string;
  readonly topics: readonly string[];
  /** A member silent for longer than this is expired by the others and loses its partitions. */
  readonly sessionTimeoutMs: number;
}

export interface LiveMember {
  readonly memberId: string;
  readonly clientId: string;
  readonly clientHost: string;
  readonly topics: readonly string[];
  readonly joinedAt: number;
  readonly heartbeatAt: number;
  /** The partitions this member owns now (sticky assignment keeps them where it can). */
  readonly owned: ReadonlyArray<{ readonly topic: string; readonly partition: number }>;
}

/** The result of trying to take a partition: a result, since losing the race is expected. */
export type PartitionClaim =
  | {
      readonly acquired: true;
      /** The partition's new generation; commits must carry it. */
      readonly generation: bigint;
      /** The group's committed offset for the partition, if any. */
      readonly committedOffset: bigint | null;
    }
  | { readonly acquired: false };

/** Wake-ups a group session delivers. */
export interface GroupSessionEvents {
  /** The group's membership changed (a member joined, left or was expired). */
  onGroupChange(): void;
  /** Records were appended to a partition of a subscribed topic (-1: any partition). */
  onAppend(topic: string, partition: number): void;
  /** The session is gone (connection lost, backend terminated): every claim is void. */
  onLost(error: unknown): void;
}

/**
 * A member's session in a consumer group: one dedicated database session whose lifetime bounds
 * the member's ownership. Partition ownership is a session-level lock, so a member whose session
 * dies loses its partitions at once.
 */
export interface GroupSession {
  readonly groupId: string;
  readonly memberId: string;
  /**
   * Renews this member's heartbeat, expires members silent longer than their session timeout
   * (ending their sessions so their partitions free), and returns the live members sorted by id.
   * Throws `IllegalGenerationError` if this member was itself expired.
   */
  heartbeat(): Promise<LiveMember[]>;
  /** Tries to take a partition: a lock on this session, then a new generation. */
  claim(topic: string, partition: number): Promise<PartitionClaim>;
  /** Gives a partition back (after its in-flight work is committed). */
  release(topic: string, partition: number): Promise<void>;
  /** Leaves the group: releases everything, tells the others, closes the session. Idempotent. */
  leave(): Promise<void>;
}

/** An offset commit. `offset` is the next offset to consume (Kafka's convention). */
export interface OffsetCommit {
  readonly topic: string;
  readonly partition: number;
  readonly offset: bigint;
  readonly metadata?: string | null;
}

/** Fences a commit to the member that owns the partitions at this generation. */
export interface CommitFence {
  readonly memberId: string;
  /** Generation per partition, keyed `${topic}/${partition}`. */
  readonly generations: ReadonlyMap<string, bigint>;
}

export interface CommittedOffset {
  readonly topic: string;
  readonly partition: number;
  readonly offset: bigint;
  readonly metadata: string | null;
  readonly committedAt: number;
}

export interface GroupPartitionState {
  readonly topic: string;
  readonly partition: number;
  readonly committedOffset: bigint | null;
  readonly logStartOffset: bigint;
  readonly logEndOffset: bigint;
  /** Timestamp (ms) of the first unconsumed record, if there is one. */
  readonly firstUnconsumedTimestamp: number | null;
  readonly ownerMemberId: string | null;
  readonly generation: bigint | null;
}

export interface GroupDescription {
  readonly groupId: string;
  readonly members: readonly LiveMember[];
  readonly partitions: readonly GroupPartitionState[];
}

/** What {@link GroupStorage.describeLag} reads. */
export interface LagQuery {
  /** Consumer groups to describe; every group (as `listGroups` lists them) when omitted. */
  readonly groupIds?: readonly string[];
  /**
   * Topics to describe: their partitions' watermarks, and only the group partitions of these
   * topics. Every topic when omitted. Names of topics that do not exist are ignored (a filter, not
   * a lookup: nothing throws `UnknownTopicOrPartitionError`).
   */
  readonly topics?: readonly string[];
}

/** One partition's watermarks, with its topic. */
export interface TopicPartitionWatermarks extends PartitionWatermarks {
  readonly topic: string;
}

/** One consumer group in a {@link LagSnapshot}. */
export interface GroupLagState {
  readonly groupId: string;
  /**
   * Members whose last heartbeat is within their session timeout, by the store clock. A member
   * that died but was not yet expired by another member's heartbeat is not counted.
   */
  readonly liveMembers: number;
  /** As `describeGroup` gives them, restricted to the query's topics; sorted by topic and partition. */
  readonly partitions: readonly GroupPartitionState[];
}

/**
 * Watermarks and consumer-group positions read together, at one moment (one statement on
 * PostgreSQL), with the store's clock at that moment: what lag monitoring scrapes.
 */
export interface LagSnapshot {
  /**
   * The store's clock when the snapshot was read, in milliseconds since the epoch (the database
   * clock on PostgreSQL). Lag in seconds is `now − firstUnconsumedTimestamp`, so it is judged by
   * the same clock that stamps records appended without a timestamp, not by the client's.
   */
  readonly now: number;
  /** Every partition of the selected topics, sorted by topic and partition. */
  readonly partitions: readonly TopicPartitionWatermarks[];
  /** The selected groups that exist, sorted by id. */
  readonly groups: readonly GroupLagState[];
}

/** The consumer-group part of the storage port. */
export interface GroupStorage {
  joinGroup(groupId: string, member: MemberMetadata, events: GroupSessionEvents): Promise<GroupSession>;
  /**
   * Commits offsets, all or none. With a fence, every partition must still be owned by the member
   * at the given generation, or `IllegalGenerationError` is thrown and nothing is committed.
   */
  commitOffsets(groupId: string, commits: readonly OffsetCommit[], fence?: CommitFence): Promise<void>;
  fetchCommittedOffsets(groupId: string, topics?: readonly string[]): Promise<CommittedOffset[]>;
  listGroups(): Promise<string[]>;
  describeGroup(groupId: string): Promise<GroupDescription>;
  /**
   * Watermarks of the selected topics and positions of the selected groups, read at one moment in
   * a bounded number of round trips (not one per group or partition), with the store's clock.
   * Lag monitoring calls this on every scrape. Unknown group ids and topic names are left out.
   *
   * @example
   * ```ts
   * const snapshot = await storage.describeLag({ groupIds: ['payment-service'] });
   * for (const g of snapshot.groups) for (const p of g.partitions) {
   *   const from = p.committedOffset ?? p.logStartOffset;
   *   console.log(g.groupId, p.topic, p.partition, p.logEndOffset - from);
   * }
   * ```
   */
  describeLag(query?: LagQuery): Promise<LagSnapshot>;
  /** Deletes groups' offsets and state. Throws `GroupNotEmptyError` if one has live members. */
  deleteGroups(groupIds: readonly string[]): Promise<void>;
}
