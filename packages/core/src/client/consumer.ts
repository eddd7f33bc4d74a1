/**
 * The consumer-group consumer: KafkaJS's `consumer()` shape, on a storage's group coordination.
 *
 * ## Design
 * A *coordinator loop* keeps the membership alive: it heartbeats, expires silent members, computes
 * the assignment every member computes (`assignors.ts`), releases partitions it should no longer
 * own (after their in-flight batch is committed) and claims the ones it should (a session lock,
 * then a new generation). One *worker* per owned partition fetches and runs the handlers; a
 * semaphore bounds how many partitions are processed at once (`partitionsConsumedConcurrently`).
 *
 * Every offset commit carries the partition's generation, so a member that lost a partition —
 * its session died, it was expired, it is a zombie — cannot commit for it (invariant 3). A
 * handler that writes through `tx` has its writes, its `tx.publish`es and the offset advance
 * committed in one transaction, shared by the fetched batch with a savepoint per record
 * (invariant 4). A failing record is retried in place (per-key order is kept); after the last
 * attempt the failure policy decides: stop, pause the partition, or dead-letter it with the
 * offset advance in the same transaction. Nothing is skipped silently.
 */
import { hostname } from 'node:os';
import type { EventContract, EventInputOf } from '../contracts/event.js';
import { isTopicContract, type TopicContract } from '../contracts/topic.js';
import {
  AnnalsError,
  CommitOutcomeUnknownError,
  ConnectionError,
  IllegalGenerationError,
  InvalidOptionsError,
  NotConnectedError,
  OffsetOutOfRangeError,
  UnknownSchemaVersionError,
} from '../errors.js';
import type {
  AppendRecord,
  DeferredTransaction,
  FetchResult,
  GroupSession,
  LiveMember,
  StoredRecord,
} from '../storage/log-storage.js';
import { partitionFor } from '../partitioner.js';
import { assignPartitions, type AssignmentStrategy, type TopicPartition } from './assignors.js';
import type { ClientContext } from './context.js';
import { decodeEvent, UNKNOWN_VERSION_POLICIES, type DecodedEvent, type UnknownVersionPolicy } from './events.js';
import { toKafkaMessage, type KafkaMessage } from './messages.js';
import { groupByPartition, prepareEvent, prepareMessages, StickyPartitions, type PreparedRecord, type PublishOptions } from './prepare.js';
import type { ProducerRecord } from './producer.js';
import { backoff, resolveRetry, sleep, type Retry, type RetryInput } from './retry.js';
import { TransactionAggregates } from '../aggregates/aggregates.js';

/** What happens to a record whose handler failed its last attempt (or that cannot be decoded). */
export type FailurePolicy = 'stop' | 'pause' | 'dead-letter';

/** Options of `annals.consumer(...)` (KafkaJS's `ConsumerConfig`, plus Annals's failure policy). */
export interface ConsumerInput {
  readonly groupId: string;
  /** A member silent for longer than this (ms) loses its partitions. @default 30000 */
  readonly sessionTimeout?: number;
  /** How often (ms) the member heartbeats and re-checks the assignment. @default 3000 */
  readonly heartbeatInterval?: number;
  /** Most bytes fetched from one partition at a time (at least one record). @default 1048576 */
  readonly maxBytesPerPartition?: number;
  /** Most records fetched from one partition at a time. @default 1000 */
  readonly maxRecordsPerFetch?: number;
  /** Fallback poll (ms) when no notification arrives. @default 5000 */
  readonly maxWaitTimeInMs?: number;
  /** How partitions are spread over members (see {@link AssignmentStrategy}). @default 'sticky' */
  readonly assignmentStrategy?: AssignmentStrategy;
  /**
   * Where to start when the committed offset is below the log start offset (records removed by
   * retention): `earliest`, `latest`, or `error` (the consumer crashes). @default 'earliest'
   */
  readonly offsetReset?: 'earliest' | 'latest' | 'error';
  /** Retries of a failing handler, with backoff, before the failure policy applies. @default { retries: 5, initialRetryTime: 300 } */
  readonly retry?: RetryInput;
  /** After the last attempt: stop the consumer, pause the partition, or dead-letter the record. @default 'stop' */
  readonly onFailure?: FailurePolicy;
  /** The topic that `onFailure: 'dead-letter'` (and `onUnknownVersion: 'dead-letter'`) writes to. It must exist. */
  readonly deadLetterTopic?: string;
  /**
   * A typed record whose schema version is newer than the consumer's contract knows: `fail`
   * (routed by `onFailure`), `dead-letter` (to `deadLetterTopic`, whatever `onFailure` says), or
   * `read-as-latest-known` (for events whose compatibility mode is forward or full; otherwise
   * as `fail`). See {@link UnknownVersionPolicy}. @default 'fail'
   */
  readonly onUnknownVersion?: UnknownVersionPolicy;
  /** Accepted for KafkaJS compatibility; ignored. */
  readonly rebalanceTimeout?: number;
  readonly allowAutoTopicCreation?: boolean;
  readonly readUncommitted?: boolean;
}

interface ResolvedConsumerOptions {
  readonly groupId: string;
  readonly sessionTimeout: number;
  readonly heartbeatInterval: number;
  readonly maxBytesPerPartition: number;
  readonly maxRecordsPerFetch: number;
  readonly maxWaitTimeInMs: number;
  readonly assignmentStrategy: AssignmentStrategy;
  readonly offsetReset: 'earliest' | 'latest' | 'error';
  readonly retry: Retry;
  readonly onFailure: FailurePolicy;
  readonly deadLetterTopic: string | undefined;
  readonly onUnknownVersion: UnknownVersionPolicy;
}

function positiveInt(name: string, value: number | undefined, fallback: number): number {
  const v = value ?? fallback;
  if (!Number.isSafeInteger(v) || v < 1) throw new InvalidOptionsError(`consumer ${name} must be a positive integer, got ${String(value)}.`);
  return v;
}

function resolveConsumerOptions(input: ConsumerInput): ResolvedConsumerOptions {
  if (!input || typeof input.groupId !== 'string' || input.groupId.length === 0) {
    throw new InvalidOptionsError('annals.consumer({ groupId }) needs a non-empty groupId.');
  }
  const sessionTimeout = positiveInt('sessionTimeout', input.sessionTimeout, 30_000);
  const heartbeatInterval = positiveInt('heartbeatInterval', input.heartbeatInterval, 3_000);
  if (heartbeatInterval >= sessionTimeout) {
    throw new InvalidOptionsError(`heartbeatInterval (${heartbeatInterval} ms) must be lower than sessionTimeout (${sessionTimeout} ms).`);
  }
  const strategy = input.assignmentStrategy ?? 'sticky';
  if (strategy !== 'sticky' && strategy !== 'round-robin' && strategy !== 'range') throw new InvalidOptionsError(`assignmentStrategy must be 'sticky', 'round-robin' or 'range'.`);
  const offsetReset = input.offsetReset ?? 'earliest';
  if (!['earliest', 'latest', 'error'].includes(offsetReset)) throw new InvalidOptionsError(`offsetReset must be 'earliest', 'latest' or 'error'.`);
  const onFailure = input.onFailure ?? 'stop';
  if (!['stop', 'pause', 'dead-letter'].includes(onFailure)) throw new InvalidOptionsError(`onFailure must be 'stop', 'pause' or 'dead-letter'.`);
  if (onFailure === 'dead-letter' && !input.deadLetterTopic) {
    throw new InvalidOptionsError(`onFailure: 'dead-letter' needs deadLetterTopic (create the topic first with admin.createTopics).`);
  }
  const onUnknownVersion = input.onUnknownVersion ?? 'fail';
  if (!UNKNOWN_VERSION_POLICIES.includes(onUnknownVersion)) {
    throw new InvalidOptionsError(`onUnknownVersion must be ${UNKNOWN_VERSION_POLICIES.map((p) => `'${p}'`).join(', ')}.`);
  }
  if (onUnknownVersion === 'dead-letter' && !input.deadLetterTopic) {
    throw new InvalidOptionsError(`onUnknownVersion: 'dead-letter' needs deadLetterTopic (create the topic first with admin.createTopics).`);
  }
  return Object.freeze({
    groupId: input.groupId,
    sessionTimeout,
    heartbeatInterval,
    maxBytesPerPartition: positiveInt('maxBytesPerPartition', input.maxBytesPerPartition, 1_048_576),
    maxRecordsPerFetch: positiveInt('maxRecordsPerFetch', input.maxRecordsPerFetch, 1_000),
    maxWaitTimeInMs: positiveInt('maxWaitTimeInMs', input.maxWaitTimeInMs, 5_000),
    assignmentStrategy: strategy,
    offsetReset,
    retry: resolveRetry({ retries: 5, initialRetryTime: 300, maxRetryTime: 30_000, ...input.retry }, 'consumer retry'),
    onFailure,
    deadLetterTopic: input.deadLetterTopic,
    onUnknownVersion,
  });
}

/** The transaction a handler gets: writes through `db` and publishes commit with the offset advance. */
export interface HandlerTransaction<TDb> {
  /** The application's database in the batch's transaction (begun on first use). */
  readonly db: TDb;
  /** Publishes a typed event in the handler's transaction. */
  publish<C extends EventContract<string, any>>(topic: TopicContract, event: C, payload: EventInputOf<C>, options?: PublishOptions): Promise<void>;
  /** Sends raw messages in the handler's transaction. */
  send(record: ProducerRecord): Promise<void>;
  /**
   * Event-sourced streams in the handler's transaction. Appends are checked at once (under the
   * record's savepoint): a conflict fails this record, which the consumer retries — loading and
   * deciding again — and the appended events commit with the batch's offset advance.
   */
  readonly aggregates: TransactionAggregates;
}

/** `eachMessage`'s argument (KafkaJS's `EachMessagePayload`, plus `tx`). */
export interface EachMessagePayload<TDb> {
  readonly topic: string;
  readonly partition: number;
  readonly message: KafkaMessage;
  readonly heartbeat: () => Promise<void>;
  /** Pauses this partition; returns a function that resumes it. */
  readonly pause: () => () => void;
  /** Exactly-once writes: see {@link HandlerTransaction}. */
  readonly tx: HandlerTransaction<TDb>;
  /** Aborted when this partition is revoked or the consumer stops: a long handler should give up. */
  readonly signal: AbortSignal;
}

/** `eachEvent`'s argument: the message decoded and upcast by the topic's contract. */
export interface EachEventPayload<TDb> extends EachMessagePayload<TDb> {
  readonly event: DecodedEvent;
}

/** A fetched batch (KafkaJS's `Batch`). */
export interface Batch {
  readonly topic: string;
  readonly partition: number;
  readonly highWatermark: string;
  readonly messages: KafkaMessage[];
  isEmpty(): boolean;
  firstOffset(): string | null;
  lastOffset(): string;
  offsetLag(): string;
  offsetLagLow(): string;
}

/** `eachBatch`'s argument (KafkaJS's `EachBatchPayload`, plus `tx`). */
export interface EachBatchPayload<TDb> {
  readonly batch: Batch;
  /** Marks a message processed: the position (and, with autoCommit, the committed offset) moves past it. */
  resolveOffset(offset: string): void;
  heartbeat(): Promise<void>;
  pause(): () => void;
  commitOffsetsIfNecessary(): Promise<void>;
  uncommittedOffsets(): { topics: Array<{ topic: string; partitions: Array<{ partition: number; offset: string }> }> };
  isRunning(): boolean;
  isStale(): boolean;
  readonly tx: HandlerTransaction<TDb>;
  /** Aborted when this partition is revoked or the consumer stops. */
  readonly signal: AbortSignal;
}

export interface ConsumerRunConfig<TDb> {
  /** Commit offsets after successful handlers. @default true */
  readonly autoCommit?: boolean;
  /** Accepted for KafkaJS compatibility: offsets are committed after every batch. */
  readonly autoCommitInterval?: number | null;
  readonly autoCommitThreshold?: number | null;
  /** How many partitions are processed at once. @default 1 */
  readonly partitionsConsumedConcurrently?: number;
  /** With eachBatch: resolve every message's offset when the handler returns. @default true */
  readonly eachBatchAutoResolve?: boolean;
  readonly eachMessage?: (payload: EachMessagePayload<TDb>) => Promise<void>;
  readonly eachBatch?: (payload: EachBatchPayload<TDb>) => Promise<void>;
  /** Typed handler for topics subscribed by contract: the decoded, upcast event. */
  readonly eachEvent?: (payload: EachEventPayload<TDb>) => Promise<void>;
}

/** Instrumentation event names (KafkaJS's `consumer.events`). */
export const ConsumerEvents = Object.freeze({
  GROUP_JOIN: 'consumer.group_join',
  REBALANCING: 'consumer.rebalancing',
  HEARTBEAT: 'consumer.heartbeat',
  COMMIT_OFFSETS: 'consumer.commit_offsets',
  START_BATCH_PROCESS: 'consumer.start_batch_process',
  END_BATCH_PROCESS: 'consumer.end_batch_process',
  OFFSETS_RESET: 'consumer.offsets_reset',
  DEAD_LETTER: 'consumer.dead_letter',
  PARTITION_PAUSED: 'consumer.partition_paused',
  CRASH: 'consumer.crash',
  STOP: 'consumer.stop',
  CONNECT: 'consumer.connect',
  DISCONNECT: 'consumer.disconnect',
} as const);
export type ConsumerEventName = (typeof ConsumerEvents)[keyof typeof ConsumerEvents];

/** An instrumentation event (KafkaJS's shape). */
export interface InstrumentationEvent<P = Record<string, unknown>> {
  readonly id: number;
  readonly type: ConsumerEventName;
  readonly timestamp: number;
  readonly payload: P;
}

const key = (topic: string, partition: number) => `${topic}/${partition}`;
const LIVENESS_CHECK_MS = 500;
const DLQ_PREFIX = 'annals-dlq-';

interface Subscription {
  readonly topic: string | RegExp;
  readonly contract: TopicContract | undefined;
  readonly fromBeginning: boolean;
}

/** A handler failure routed by policy, or a decode failure. */
class HandlerFailure extends Error {}

/** One owned partition: its position, generation and worker. */
class PartitionState {
  readonly topic: string;
  readonly partition: number;
  readonly generation: bigint;
  position: bigint;
  committed: bigint | null;
  paused = false;
  revoked = false;
  wake: (() => void) | undefined;
  dirty = true;
  worker: Promise<void> | undefined;
  /** Bumped by seek: a batch in hand is dropped after the record being handled. */
  seekGeneration = 0;
  /** Handlers' `signal`: aborted on revocation and on stop. */
  readonly abort = new AbortController();
  /**
   * An autocommit of a batch whose handlers wrote nothing through `tx`, still in flight while the
   * next batch is fetched and handled. Awaited before the next commit (commits stay in order), before
   * idling, and before the worker ends (so a release or a rejoin never overtakes it).
   */
  pendingCommit: Promise<void> | undefined;

  /** The next batch, fetched while the current one is handled: used only if the position is still `from`. */
  prefetch: { readonly from: bigint; readonly seekGeneration: number; readonly result: Promise<FetchResult> } | undefined;

  constructor(tp: TopicPartition, generation: bigint, position: bigint, committed: bigint | null) {
    this.topic = tp.topic;
    this.partition = tp.partition;
    this.generation = generation;
    this.position = position;
    this.committed = committed;
  }

  poke(): void {
    this.dirty = true;
    this.wake?.();
  }
}

class Semaphore {
  #free: number;
  readonly #waiters: Array<() => void> = [];
  constructor(n: number) {
    this.#free = n;
  }
  async acquire(): Promise<void> {
    if (this.#free > 0) {
      this.#free--;
      return;
    }
    await new Promise<void>((resolve) => this.#waiters.push(resolve));
  }
  release(): void {
    const next = this.#waiters.shift();
    if (next) next();
    else this.#free++;
  }
}

/** A consumer-group member. Create it with `annals.consumer({ groupId })`. */
export class Consumer<TDb = unknown> {
  readonly #ctx: ClientContext<TDb>;
  readonly #options: ResolvedConsumerOptions;
  readonly #subscriptions: Subscription[] = [];
  readonly #listeners = new Map<string, Set<(event: InstrumentationEvent<any>) => void>>();
  readonly #owned = new Map<string, PartitionState>();
  /**
   * Pauses by topic: either the whole topic (partitions assigned later too) but for those resumed
   * one by one since, or only the listed partitions.
   */
  readonly #pausedTopics = new Map<string, { readonly all: true; readonly except: Set<number> } | { readonly all: false; readonly only: Set<number> }>();
  #eventId = 0;
  #session: GroupSession | undefined;
  #running: Promise<void> | undefined;
  #stopping = false;
  #coordinatorWake: (() => void) | undefined;
  #groupChanged = false;
  #crash: unknown;
  #config: ConsumerRunConfig<TDb> | undefined;
  #semaphore = new Semaphore(1);
  #connected = false;

  /** @internal Use `annals.consumer()`. */
  constructor(ctx: ClientContext<TDb>, input: ConsumerInput) {
    this.#ctx = ctx;
    this.#options = resolveConsumerOptions(input);
  }

  /** Instrumentation event names. */
  get events(): typeof ConsumerEvents {
    return ConsumerEvents;
  }

  /** The group this consumer belongs to. */
  get groupId(): string {
    return this.#options.groupId;
  }

  /** This member's id while it is in the group. */
  get memberId(): string | undefined {
    return this.#session?.memberId;
  }

  /** The partitions this member owns now, sorted. */
  assignment(): TopicPartition[] {
    return [...this.#owned.values()]
      .map((s) => ({ topic: s.topic, partition: s.partition }))
      .sort((a, b) => (a.topic < b.topic ? -1 : a.topic > b.topic ? 1 : a.partition - b.partition));
  }

  /** Listens to an instrumentation event; returns a function that removes the listener. */
  on<P = Record<string, unknown>>(eventName: ConsumerEventName, listener: (event: InstrumentationEvent<P>) => void): () => void {
    let set = this.#listeners.get(eventName);
    if (!set) this.#listeners.set(eventName, (set = new Set()));
    set.add(listener as never);
    return () => set!.delete(listener as never);
  }

  #emit(type: ConsumerEventName, payload: Record<string, unknown>): void {
    const set = this.#listeners.get(type);
    if (!set || set.size === 0) return;
    const event: InstrumentationEvent = { id: ++this.#eventId, type, timestamp: Date.now(), payload };
    for (const listener of set) {
      try {
        listener(event);
      } catch {
        // A listener's failure is its own; it must not break consumption.
      }
    }
  }

  async connect(): Promise<void> {
    await this.#ctx.ensureConnected();
    this.#connected = true;
    this.#emit(ConsumerEvents.CONNECT, {});
  }

  async disconnect(): Promise<void> {
    await this.stop();
    this.#connected = false;
    this.#emit(ConsumerEvents.DISCONNECT, {});
  }

  /**
   * Subscribes to a topic (a name, a RegExp matched against existing topics at `run`, or a
   * `defineTopic` contract for `eachEvent`). `fromBeginning` applies to partitions the group has
   * no committed offset for.
   */
  async subscribe(input: {
    readonly topic?: string | RegExp | TopicContract;
    readonly topics?: ReadonlyArray<string | RegExp | TopicContract>;
    readonly fromBeginning?: boolean;
  }): Promise<void> {
    if (this.#running) throw new InvalidOptionsError('Subscribe before run(): this consumer is already running.');
    const list = [...(input.topics ?? []), ...(input.topic !== undefined ? [input.topic] : [])];
    if (list.length === 0) throw new InvalidOptionsError('subscribe({ topic }) or subscribe({ topics: [...] }) needs at least one topic.');
    for (const t of list) {
      const contract = isTopicContract(t) ? t : undefined;
      this.#subscriptions.push({ topic: contract ? contract.name : (t as string | RegExp), contract, fromBeginning: input.fromBeginning ?? false });
    }
  }

  /** Starts consuming (resolves once the member has joined its group; processing goes on in the background). */
  async run(config: ConsumerRunConfig<TDb>): Promise<void> {
    if (!this.#connected) await this.connect();
    if (this.#running) throw new InvalidOptionsError('This consumer is already running.');
    const handlers = [config.eachMessage, config.eachBatch, config.eachEvent].filter(Boolean).length;
    if (handlers !== 1) throw new InvalidOptionsError('consumer.run needs exactly one of eachMessage, eachBatch or eachEvent.');
    if (this.#subscriptions.length === 0) throw new InvalidOptionsError('Call consumer.subscribe({ topic }) before consumer.run().');
    if (config.eachEvent && this.#subscriptions.some((s) => !s.contract)) {
      throw new InvalidOptionsError('eachEvent needs every subscribed topic to be a defineTopic(...) contract.');
    }
    const concurrency = config.partitionsConsumedConcurrently ?? 1;
    if (!Number.isSafeInteger(concurrency) || concurrency < 1) throw new InvalidOptionsError('partitionsConsumedConcurrently must be a positive integer.');
    if (this.#options.deadLetterTopic) await this.#ctx.metadata.get(this.#options.deadLetterTopic);
    this.#config = config;
    this.#semaphore = new Semaphore(concurrency);
    this.#stopping = false;
    this.#crash = undefined;
    const joined = new Promise<void>((resolve, reject) => {
      this.#running = this.#coordinate(resolve).then(
        () => undefined,
        (error) => {
          reject(error);
        },
      );
      this.#running.finally(() => {
        this.#running = undefined;
      });
    });
    await joined;
  }

  /** Stops consuming: in-flight batches finish and commit, partitions are released, the member leaves. */
  async stop(): Promise<void> {
    this.#stopping = true;
    this.#coordinatorWake?.();
    for (const state of this.#owned.values()) {
      state.abort.abort();
      state.poke();
    }
    await this.#running?.catch(() => {});
  }

  /** Moves a partition's position; the next fetch starts there. */
  seek(target: { topic: string; partition: number; offset: string }): void {
    const state = this.#owned.get(key(target.topic, target.partition));
    let offset: bigint;
    try {
      offset = BigInt(target.offset);
    } catch {
      throw new InvalidOptionsError(`seek: offset ${JSON.stringify(target.offset)} is not an integer.`);
    }
    if (offset < 0n) throw new InvalidOptionsError('seek: offset must be ≥ 0.');
    if (!state) {
      throw new InvalidOptionsError(`seek: partition ${target.partition} of "${target.topic}" is not assigned to this member now.`, {
        topic: target.topic,
        partition: target.partition,
        groupId: this.groupId,
      });
    }
    state.position = offset;
    state.seekGeneration++;
    state.poke();
  }

  /** Pauses fetching from topics (all partitions, or the listed ones). */
  pause(topics: ReadonlyArray<{ topic: string; partitions?: number[] }>): void {
    for (const t of topics) {
      const current = this.#pausedTopics.get(t.topic);
      if (!t.partitions) this.#pausedTopics.set(t.topic, { all: true, except: new Set() });
      else if (current?.all) for (const p of t.partitions) current.except.delete(p);
      else if (current) for (const p of t.partitions) current.only.add(p);
      else this.#pausedTopics.set(t.topic, { all: false, only: new Set(t.partitions) });
    }
  }

  /** Resumes paused topics or partitions. */
  resume(topics: ReadonlyArray<{ topic: string; partitions?: number[] }>): void {
    for (const t of topics) {
      const current = this.#pausedTopics.get(t.topic);
      if (!t.partitions) this.#pausedTopics.delete(t.topic);
      else if (current?.all) for (const p of t.partitions) current.except.add(p);
      else if (current) {
        for (const p of t.partitions) current.only.delete(p);
        if (current.only.size === 0) this.#pausedTopics.delete(t.topic);
      }
      for (const state of this.#owned.values()) {
        if (state.topic === t.topic && (!t.partitions || t.partitions.includes(state.partition))) {
          state.paused = false;
          state.poke();
        }
      }
    }
  }

  /** The paused topic partitions. */
  paused(): Array<{ topic: string; partitions: number[] }> {
    const out = new Map<string, Set<number>>();
    for (const s of this.#owned.values()) if (this.#isPaused(s)) (out.get(s.topic) ?? out.set(s.topic, new Set()).get(s.topic)!).add(s.partition);
    return [...out].map(([topic, ps]) => ({ topic, partitions: [...ps].sort((a, b) => a - b) }));
  }

  #isPaused(s: PartitionState): boolean {
    const p = this.#pausedTopics.get(s.topic);
    return s.paused || (p !== undefined && (p.all ? !p.except.has(s.partition) : p.only.has(s.partition)));
  }

  /** Commits offsets (the next offset to consume) for partitions this member owns, fenced by generation. */
  async commitOffsets(offsets: ReadonlyArray<{ topic: string; partition: number; offset: string; metadata?: string | null }>): Promise<void> {
    const session = this.#session;
    if (!session) throw new NotConnectedError('commitOffsets: this consumer is not in its group (call run first).', { groupId: this.groupId });
    const generations = new Map<string, bigint>();
    for (const o of offsets) {
      const state = this.#owned.get(key(o.topic, o.partition));
      generations.set(key(o.topic, o.partition), state?.generation ?? -1n);
    }
    const commits = offsets.map((o) => ({ topic: o.topic, partition: o.partition, offset: BigInt(o.offset), metadata: o.metadata ?? null }));
    await this.#ctx.storage.commitOffsets(this.groupId, commits, { memberId: session.memberId, generations });
    for (const c of commits) {
      const state = this.#owned.get(key(c.topic, c.partition));
      if (state) state.committed = c.offset;
    }
    this.#emit(ConsumerEvents.COMMIT_OFFSETS, { groupId: this.groupId, memberId: session.memberId, topics: offsets });
  }

  // ---- coordination ------------------------------------------------------------------------------

  async #topicPartitions(): Promise<Map<string, number>> {
    const names = new Set<string>();
    let all: string[] | undefined;
    for (const s of this.#subscriptions) {
      if (typeof s.topic === 'string') names.add(s.topic);
      else {
        all ??= await this.#ctx.storage.listTopics();
        for (const t of all) if ((s.topic as RegExp).test(t)) names.add(t);
      }
    }
    const counts = new Map<string, number>();
    for (const name of names) counts.set(name, (await this.#ctx.metadata.get(name, { refresh: true })).partitions);
    return counts;
  }

  #subscriptionOf(topic: string): Subscription | undefined {
    return this.#subscriptions.find((s) => (typeof s.topic === 'string' ? s.topic === topic : s.topic.test(topic)));
  }

  async #coordinate(joined: () => void): Promise<void> {
    let announced = false;
    let failures = 0;
    try {
      while (!this.#stopping) {
        try {
          await this.#memberLifetime(() => {
            failures = 0;
            if (!announced) {
              announced = true;
              joined();
            }
          });
        } catch (error) {
          if (this.#stopping) break;
          if (!announced || !isRecoverable(error)) throw error;
          // Lost the session, or was expired: rejoin after a backoff, like KafkaJS's restart on crash.
          // A worker's recoverable error is spent now: left set, it would end every later membership
          // at once, and the member would rejoin and leave forever without processing (issue 9).
          if (this.#crash === error) this.#crash = undefined;
          this.#emit(ConsumerEvents.CRASH, { error, groupId: this.groupId, restart: true });
          await sleep(backoff(this.#ctx.retry, Math.min(failures++, 8)));
        }
      }
    } catch (error) {
      this.#crash = error;
      this.#emit(ConsumerEvents.CRASH, { error, groupId: this.groupId, restart: false });
      throw error;
    } finally {
      this.#emit(ConsumerEvents.STOP, {});
    }
  }

  /** One membership: join, keep the assignment, leave. Throws when the session is lost. */
  async #memberLifetime(onJoined: () => void): Promise<void> {
    let counts = await this.#topicPartitions();
    let countsAt = Date.now();
    let lost: unknown;
    const session = await this.#ctx.storage.joinGroup(
      this.groupId,
      { clientId: this.#ctx.clientId, clientHost: hostname(), topics: [...counts.keys()], sessionTimeoutMs: this.#options.sessionTimeout },
      {
        onGroupChange: () => {
          this.#groupChanged = true;
          this.#coordinatorWake?.();
        },
        onAppend: (topic, partition) => {
          for (const s of this.#owned.values()) if (s.topic === topic && (partition < 0 || s.partition === partition)) s.poke();
        },
        onLost: (error) => {
          lost = error;
          this.#coordinatorWake?.();
        },
      },
    );
    this.#session = session;
    this.#emit(ConsumerEvents.GROUP_JOIN, { groupId: this.groupId, memberId: session.memberId });
    onJoined();
    let lastBeat = 0;
    let pending = false;
    try {
      while (!this.#stopping && lost === undefined && this.#crash === undefined) {
        const due = Date.now() - lastBeat >= Math.min(this.#options.heartbeatInterval, LIVENESS_CHECK_MS);
        if (due || this.#groupChanged || pending) {
          this.#groupChanged = false;
          const members = await session.heartbeat();
          lastBeat = Date.now();
          this.#emit(ConsumerEvents.HEARTBEAT, { groupId: this.groupId, memberId: session.memberId });
          // Partition counts can grow (createPartitions): re-read them once per heartbeatInterval.
          if (Date.now() - countsAt >= this.#options.heartbeatInterval) {
            counts = await this.#topicPartitions();
            countsAt = Date.now();
          }
          const topicCounts = counts;
          pending = await this.#rebalance(session, members, topicCounts);
        }
        // Heartbeats also notice members whose session died (a killed process frees its locks at
        // once), so they run at least every LIVENESS_CHECK_MS for a prompt takeover.
        const interval = Math.min(this.#options.heartbeatInterval, LIVENESS_CHECK_MS);
        const wait = pending ? 100 : Math.max(1, interval - (Date.now() - lastBeat));
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, wait);
          this.#coordinatorWake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        this.#coordinatorWake = undefined;
      }
      if (this.#crash !== undefined) throw this.#crash;
      if (lost !== undefined && !this.#stopping) {
        throw new IllegalGenerationError(`Member ${session.memberId} lost its group session; rejoining.`, { groupId: this.groupId, cause: lost });
      }
    } finally {
      // Let workers finish their batch; their commits succeed only while we still own the partitions.
      for (const state of this.#owned.values()) {
        state.revoked = true;
        state.abort.abort();
        state.poke();
      }
      await Promise.all([...this.#owned.values()].map((s) => s.worker?.catch(() => {})));
      this.#owned.clear();
      this.#session = undefined;
      await session.leave();
    }
  }

  /** Releases what should go, claims what should come. Returns true while claims are pending. */
  async #rebalance(session: GroupSession, members: readonly LiveMember[], counts: ReadonlyMap<string, number>): Promise<boolean> {
    const target = assignPartitions(this.#options.assignmentStrategy, members, counts).get(session.memberId) ?? [];
    const wanted = new Set(target.map((tp) => key(tp.topic, tp.partition)));
    const releasing = [...this.#owned.values()].filter((s) => !wanted.has(key(s.topic, s.partition)));
    const missing = target.filter((tp) => !this.#owned.has(key(tp.topic, tp.partition)));
    if (releasing.length > 0 || missing.length > 0) {
      this.#emit(ConsumerEvents.REBALANCING, {
        groupId: this.groupId,
        memberId: session.memberId,
        releasing: releasing.map((s) => ({ topic: s.topic, partition: s.partition })),
        claiming: missing,
      });
    }
    for (const state of releasing) {
      state.revoked = true;
      state.abort.abort();
      state.poke();
      await state.worker?.catch(() => {});
      this.#owned.delete(key(state.topic, state.partition));
      await session.release(state.topic, state.partition);
    }
    let pending = false;
    for (const tp of missing) {
      const claim = await session.claim(tp.topic, tp.partition);
      if (!claim.acquired) {
        pending = true;
        continue;
      }
      const position = await this.#startPosition(tp, claim.committedOffset);
      const state = new PartitionState(tp, claim.generation, position, claim.committedOffset);
      this.#owned.set(key(tp.topic, tp.partition), state);
      state.worker = this.#work(state, session).catch((error) => {
        this.#crash ??= error;
        this.#coordinatorWake?.();
      });
    }
    return pending;
  }

  async #startPosition(tp: TopicPartition, committed: bigint | null): Promise<bigint> {
    const marks = (await this.#ctx.storage.fetchWatermarks(tp.topic)).find((m) => m.partition === tp.partition);
    if (!marks) throw new OffsetOutOfRangeError(`Topic "${tp.topic}" has no partition ${tp.partition}.`, tp);
    if (committed === null) return this.#subscriptionOf(tp.topic)?.fromBeginning ? marks.low : marks.high;
    if (committed >= marks.low && committed <= marks.high) return committed;
    return this.#reset(tp, committed, marks.low, marks.high);
  }

  #reset(tp: TopicPartition, offset: bigint, low: bigint, high: bigint): bigint {
    const policy = this.#options.offsetReset;
    if (policy === 'error' || offset > high) {
      throw new OffsetOutOfRangeError(
        `Group "${this.groupId}" is at offset ${offset} of ${tp.topic}[${tp.partition}], outside the log (${low}–${high}). ` +
          (policy === 'error' ? "Reset the group's offsets (admin.resetOffsets) or use offsetReset: 'earliest' | 'latest'." : 'Reset its offsets with admin.resetOffsets.'),
        { ...tp, groupId: this.groupId, offset: offset.toString() },
      );
    }
    const to = policy === 'earliest' ? low : high;
    this.#emit(ConsumerEvents.OFFSETS_RESET, { groupId: this.groupId, topic: tp.topic, partition: tp.partition, from: offset.toString(), to: to.toString(), policy });
    return to;
  }

  // ---- processing -------------------------------------------------------------------------------

  async #work(state: PartitionState, session: GroupSession): Promise<void> {
    try {
      while (!state.revoked && !this.#stopping) {
        if (this.#isPaused(state)) {
          // Clear the wake-up flag first: appends to a paused partition must not make this loop spin.
          state.dirty = false;
          this.#dropPrefetch(state);
          await this.#idle(state, this.#options.maxWaitTimeInMs);
          continue;
        }
        state.dirty = false;
        const from = state.position;
        const result = await this.#fetch(state, from);
        if (from < result.logStartOffset) {
          state.position = this.#reset(state, from, result.logStartOffset, result.highWatermark);
          continue;
        }
        if (result.records.length === 0) {
          await this.#idle(state, this.#options.maxWaitTimeInMs);
          continue;
        }
        // More is known to be there: fetch it while this batch's handlers run (one batch ahead).
        const next = result.records[result.records.length - 1]!.offset + 1n;
        if (next < result.highWatermark) this.#startPrefetch(state, next);
        await this.#semaphore.acquire();
        try {
          if (state.revoked) break;
          await this.#processBatch(state, session, result.records, result.highWatermark);
        } finally {
          this.#semaphore.release();
        }
      }
    } finally {
      this.#dropPrefetch(state);
      // The last autocommit lands before the partition is released (or the member leaves).
      await this.#settleCommit(state);
    }
  }

  #fetch(state: PartitionState, from: bigint): Promise<FetchResult> {
    const ahead = state.prefetch;
    state.prefetch = undefined;
    if (ahead && ahead.from === from && ahead.seekGeneration === state.seekGeneration) return ahead.result;
    ahead?.result.catch(() => {});
    return this.#ctx.storage.fetch(state.topic, state.partition, from, {
      maxRecords: this.#options.maxRecordsPerFetch,
      maxBytes: this.#options.maxBytesPerPartition,
    });
  }

  #startPrefetch(state: PartitionState, from: bigint): void {
    const result = this.#ctx.storage.fetch(state.topic, state.partition, from, {
      maxRecords: this.#options.maxRecordsPerFetch,
      maxBytes: this.#options.maxBytesPerPartition,
    });
    result.catch(() => {}); // a failed prefetch is reported when (if) it is used
    state.prefetch = { from, seekGeneration: state.seekGeneration, result };
  }

  #dropPrefetch(state: PartitionState): void {
    state.prefetch?.result.catch(() => {});
    state.prefetch = undefined;
  }

  /** Waits for the partition's autocommit in flight; its failure (e.g. fenced) is thrown here. */
  async #settleCommit(state: PartitionState): Promise<void> {
    const pending = state.pendingCommit;
    if (!pending) return;
    state.pendingCommit = undefined;
    await pending;
  }

  async #idle(state: PartitionState, ms: number): Promise<void> {
    if (state.dirty || state.revoked || this.#stopping) return;
    // Caught up: the last autocommit lands before waiting (lag reads 0 while idle).
    await this.#settleCommit(state);
    if (state.dirty || state.revoked || this.#stopping) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      state.wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
    state.wake = undefined;
  }

  #fence(state: PartitionState, session: GroupSession) {
    return { memberId: session.memberId, generations: new Map([[key(state.topic, state.partition), state.generation]]) };
  }

  async #processBatch(state: PartitionState, session: GroupSession, records: readonly StoredRecord[], highWatermark: bigint): Promise<void> {
    const config = this.#config!;
    const autoCommit = config.autoCommit ?? true;
    const batch = new BatchTransaction<TDb>(this.#ctx);
    const startedAt = Date.now();
    this.#emit(ConsumerEvents.START_BATCH_PROCESS, { topic: state.topic, partition: state.partition, batchSize: records.length });
    const seekGeneration = state.seekGeneration;
    const finish = async () => {
      // Offsets, buffered publishes and the handlers' writes: one commit, fenced by generation.
      const commitOffset = autoCommit && state.committed !== state.position;
      // The previous batch's autocommit first: commits of a partition land in offset order.
      await this.#settleCommit(state);
      const advance = commitOffset ? { groupId: this.groupId, offset: state.position, state, fence: this.#fence(state, session) } : undefined;
      const offset = state.position;
      const committed = () => {
        this.#emit(ConsumerEvents.COMMIT_OFFSETS, {
          groupId: this.groupId,
          memberId: session.memberId,
          topics: [{ topic: state.topic, partitions: [{ partition: state.partition, offset: offset.toString() }] }],
        });
      };
      if (advance && batch.offsetOnly) {
        // Nothing but the offset to commit (handlers never used tx): it is not part of any effect's
        // transaction, so it goes on while the next batch is handled (awaited before the next commit).
        state.committed = offset;
        state.pendingCommit = batch.finish(advance).then(committed);
        state.pendingCommit.catch(() => {});
        return;
      }
      await batch.finish(advance);
      if (commitOffset) {
        state.committed = offset;
        committed();
      }
    };
    try {
      if (config.eachBatch) {
        await this.#runBatchHandler(state, session, records, highWatermark, batch, config);
      } else {
        // The payload's functions and the topic's contract are the same for every record of the batch.
        const shared = { topic: state.topic, partition: state.partition, ...this.#payloadBase(state, session, batch) };
        const contract = config.eachEvent ? this.#subscriptionOf(state.topic)!.contract! : undefined;
        for (const record of records) {
          if (state.revoked || this.#stopping || state.seekGeneration !== seekGeneration || this.#isPaused(state)) break;
          // The first attempt runs here, in this frame: no async frame of its own per record (the
          // happy path is the hot one); a failure goes to #recordFailed (retries, policy).
          const run = this.#recordRunner(record, config, shared, contract);
          let handled: 'done' | 'paused' | 'retry-later' = 'done';
          try {
            await batch.savepoint(run);
          } catch (error) {
            handled = await this.#recordFailed(state, session, record, batch, config, run, error);
          }
          if (handled === 'retry-later') return;
          if (handled === 'paused') break;
          if (state.seekGeneration === seekGeneration) state.position = record.offset + 1n;
          batch.recordDone();
        }
      }
      await finish();
    } catch (error) {
      await batch.abort();
      throw error;
    } finally {
      this.#emit(ConsumerEvents.END_BATCH_PROCESS, { topic: state.topic, partition: state.partition, batchSize: records.length, duration: Date.now() - startedAt });
    }
  }

  #payloadBase(state: PartitionState, session: GroupSession, batch: BatchTransaction<TDb>) {
    return {
      heartbeat: async () => {
        await session.heartbeat();
      },
      pause: () => {
        state.paused = true;
        this.#emit(ConsumerEvents.PARTITION_PAUSED, { topic: state.topic, partition: state.partition, reason: 'handler' });
        return () => this.resume([{ topic: state.topic, partitions: [state.partition] }]);
      },
      tx: batch.handle,
      signal: state.abort.signal,
    };
  }

  /** The call of one record's handler: its message built once, a fresh payload per attempt. */
  #recordRunner(
    record: StoredRecord,
    config: ConsumerRunConfig<TDb>,
    shared: Omit<EachMessagePayload<TDb>, 'message'>,
    contract: TopicContract | undefined,
  ): () => Promise<void> {
    const message = toKafkaMessage(record);
    // A literal of fixed shape, not a spread (it is on the hot path); a fresh one per attempt, as
    // before, so a retry never sees what an earlier attempt did to its payload.
    const payload = (): EachMessagePayload<TDb> => ({
      topic: shared.topic,
      partition: shared.partition,
      message,
      heartbeat: shared.heartbeat,
      pause: shared.pause,
      tx: shared.tx,
      signal: shared.signal,
    });
    if (config.eachEvent) {
      return () => {
        let event: DecodedEvent;
        try {
          event = decodeEvent(contract!, record, this.#ctx.codecs, { unknownVersion: this.#options.onUnknownVersion });
        } catch (error) {
          return Promise.reject(new UndecodableRecord(error));
        }
        const withEvent = payload() as EachMessagePayload<TDb> & { event: DecodedEvent };
        withEvent.event = event;
        return config.eachEvent!(withEvent as EachEventPayload<TDb>);
      };
    }
    return () => config.eachMessage!(payload());
  }

  /**
   * A record's handler failed (its first attempt ran in the batch loop): retries with backoff,
   * then the failure policy. Returns how the partition should go on.
   */
  async #recordFailed(
    state: PartitionState,
    session: GroupSession,
    record: StoredRecord,
    batch: BatchTransaction<TDb>,
    config: ConsumerRunConfig<TDb>,
    run: () => Promise<void>,
    firstError: unknown,
  ): Promise<'done' | 'paused' | 'retry-later'> {
    let error = firstError;
    for (let attempt = 0; ; attempt++) {
      if (attempt > 0) {
        try {
          await batch.savepoint(run);
          return 'done';
        } catch (e) {
          error = e;
        }
      }
      batch.recordFailed();
      if (error instanceof IllegalGenerationError) throw error;
      const undecodable = error instanceof UndecodableRecord;
      const cause = undecodable ? (error as UndecodableRecord).cause : error;
      if (!undecodable && state.revoked) {
        // The partition was taken from this member while the handler ran: the record did not
        // fail, the member lost it. Roll the batch back and leave the record to the new owner.
        await batch.abort();
        return 'retry-later';
      }
      if (!undecodable && isConnectionLoss(cause)) {
        // The batch's connection is gone (terminated, reset, killed by a server timeout): not the
        // record's fault, and nothing more can be committed on it. Give the batch up; the member
        // rejoins and the record is handled again from the committed offset (issue 9).
        throw cause;
      }
      if (!undecodable && attempt < this.#options.retry.retries && !this.#stopping && !state.revoked) {
        // Commit what succeeded so far, then retry this record in a fresh transaction after a backoff.
        await this.#settleCommit(state);
        await batch.checkpoint(
          (config.autoCommit ?? true) && state.committed !== state.position
            ? { groupId: this.groupId, offset: state.position, state, fence: this.#fence(state, session) }
            : undefined,
        );
        if ((config.autoCommit ?? true)) state.committed = state.position;
        this.#semaphore.release();
        try {
          await sleep(backoff(this.#options.retry, attempt));
        } finally {
          await this.#semaphore.acquire();
        }
        if (state.revoked || this.#stopping) return 'retry-later';
        continue;
      }
      return this.#applyFailurePolicy(state, session, record, batch, cause, attempt + 1);
    }
  }

  async #applyFailurePolicy(
    state: PartitionState,
    session: GroupSession,
    record: StoredRecord,
    batch: BatchTransaction<TDb>,
    error: unknown,
    attempts: number,
  ): Promise<'done' | 'paused'> {
    // A record of a version newer than the contract knows goes where onUnknownVersion says; the
    // dead-letter and pause/stop paths are the failure policy's own.
    const policy =
      error instanceof UnknownSchemaVersionError && this.#options.onUnknownVersion === 'dead-letter' ? 'dead-letter' : this.#options.onFailure;
    const where = `${state.topic}[${state.partition}]@${record.offset}`;
    if (policy === 'dead-letter') {
      const reason = error instanceof Error ? error.message : String(error);
      const code = error instanceof AnnalsError ? error.code : error instanceof Error ? error.name : 'UNKNOWN';
      const headers: Record<string, Uint8Array> = { ...record.headers };
      const text = (s: string) => new TextEncoder().encode(s);
      Object.assign(headers, {
        [`${DLQ_PREFIX}topic`]: text(state.topic),
        [`${DLQ_PREFIX}partition`]: text(String(state.partition)),
        [`${DLQ_PREFIX}offset`]: text(record.offset.toString()),
        [`${DLQ_PREFIX}group`]: text(this.groupId),
        [`${DLQ_PREFIX}error-code`]: text(code),
        [`${DLQ_PREFIX}error-message`]: text(reason.slice(0, 2000)),
        [`${DLQ_PREFIX}attempts`]: text(String(attempts)),
      });
      await batch.deadLetter(this.#options.deadLetterTopic!, { key: record.key, value: record.value, headers, timestamp: record.timestamp });
      this.#emit(ConsumerEvents.DEAD_LETTER, { topic: state.topic, partition: state.partition, offset: record.offset.toString(), error });
      return 'done';
    }
    if (policy === 'pause') {
      state.paused = true;
      this.#emit(ConsumerEvents.PARTITION_PAUSED, { topic: state.topic, partition: state.partition, offset: record.offset.toString(), error, reason: 'failure' });
      return 'paused';
    }
    throw new HandlerFailure(`Handler failed on ${where} after ${attempts} attempt(s); the consumer stopped (onFailure: 'stop').`, { cause: error });
  }

  async #runBatchHandler(
    state: PartitionState,
    session: GroupSession,
    records: readonly StoredRecord[],
    highWatermark: bigint,
    batch: BatchTransaction<TDb>,
    config: ConsumerRunConfig<TDb>,
  ): Promise<void> {
    const messages = records.map(toKafkaMessage);
    const autoResolve = config.eachBatchAutoResolve ?? true;
    const last = records[records.length - 1]!.offset;
    const seekGeneration = state.seekGeneration;
    const resolve = (offset: bigint) => {
      if (state.seekGeneration === seekGeneration && offset + 1n > state.position) state.position = offset + 1n;
    };
    const payload: EachBatchPayload<TDb> = {
      batch: {
        topic: state.topic,
        partition: state.partition,
        highWatermark: highWatermark.toString(),
        messages,
        isEmpty: () => messages.length === 0,
        firstOffset: () => messages[0]?.offset ?? null,
        lastOffset: () => last.toString(),
        offsetLag: () => (highWatermark - 1n - last).toString(),
        offsetLagLow: () => (highWatermark - 1n - records[0]!.offset).toString(),
      },
      resolveOffset: (offset) => resolve(BigInt(offset)),
      commitOffsetsIfNecessary: async () => {},
      uncommittedOffsets: () => ({
        topics: state.committed === state.position ? [] : [{ topic: state.topic, partitions: [{ partition: state.partition, offset: state.position.toString() }] }],
      }),
      isRunning: () => !this.#stopping,
      isStale: () => state.revoked,
      ...this.#payloadBase(state, session, batch),
    };
    for (let attempt = 0; ; attempt++) {
      try {
        await config.eachBatch!(payload);
        if (autoResolve) resolve(last);
        return;
      } catch (error) {
        if (error instanceof IllegalGenerationError) throw error;
        if (attempt >= this.#options.retry.retries || this.#stopping || state.revoked) {
          throw new HandlerFailure(`eachBatch failed on ${state.topic}[${state.partition}] after ${attempt + 1} attempt(s); the consumer stopped.`, {
            cause: error,
          });
        }
        await batch.abort();
        batch.reset();
        state.position = records[0]!.offset;
        await sleep(backoff(this.#options.retry, attempt));
      }
    }
  }
}

/** @internal Thrown by a handler layer that decodes records itself: routed by policy at once, without retries. */
export class UndecodableRecord extends Error {
  constructor(cause: unknown) {
    super('The record cannot be decoded.', { cause });
  }
}

/** The connection under a batch's transaction was lost (its commit, if one was in flight, may or may not have happened). */
function isConnectionLoss(error: unknown): boolean {
  return error instanceof ConnectionError || error instanceof CommitOutcomeUnknownError;
}

/**
 * Errors after which the member rejoins instead of stopping. A batch commit whose outcome is
 * unknown is one of them: the offset advance commits atomically with the handlers' writes, so the
 * committed offset read at the next claim says which way it went.
 */
function isRecoverable(error: unknown): boolean {
  return error instanceof IllegalGenerationError || error instanceof CommitOutcomeUnknownError || (error instanceof AnnalsError && error.retriable);
}

interface OffsetAdvance {
  readonly groupId: string;
  readonly offset: bigint;
  readonly state: PartitionState;
  readonly fence: { memberId: string; generations: Map<string, bigint> };
}

/**
 * The transaction shared by one fetched batch: begun only when a handler uses `tx.db` (or a
 * publish or offset must be committed with it), with a savepoint per record, publishes buffered
 * per record and dropped with a failed record.
 */
class BatchTransaction<TDb> {
  readonly #ctx: ClientContext<TDb>;
  readonly #sticky = new StickyPartitions();
  #tx: DeferredTransaction<TDb>;
  #committed: PreparedRecord[] = [];
  #current: PreparedRecord[] = [];
  readonly handle: HandlerTransaction<TDb>;
  #aggregates: TransactionAggregates | undefined;

  constructor(ctx: ClientContext<TDb>) {
    this.#ctx = ctx;
    this.#tx = ctx.storage.deferredTransaction();
    const self = this;
    this.handle = {
      get db() {
        return self.#tx.db;
      },
      publish: async (topic, event, payload, options = {}) => {
        self.#current.push(await prepareEvent(ctx, topic, event, payload, options, self.#sticky));
      },
      send: async (record) => {
        self.#current.push(...(await prepareMessages(ctx, record.topic, record.messages, self.#sticky)));
      },
      get aggregates() {
        // Appends go to the batch's transaction at once (it may be replaced after a checkpoint).
        self.#aggregates ??= new TransactionAggregates(ctx, {
          read: (topic, partition, key, options) => self.#tx.readStream(topic, partition, key, options),
          append: (records, stream) => self.#tx.appendToStreams(groupByPartition(records).appends, [stream]),
        });
        return self.#aggregates;
      },
    };
  }

  /** True while the batch has nothing to commit but (possibly) its offset: no tx use, no publishes. */
  get offsetOnly(): boolean {
    return !this.#tx.begun && this.#committed.length === 0 && this.#current.length === 0;
  }

  /**
   * Runs one record's handler under its savepoint. Not wrapped in an async function of its own
   * (one promise less per record): on failure the caller calls {@link recordFailed}.
   */
  savepoint(fn: () => Promise<void>): Promise<void> {
    return this.#tx.savepoint(fn);
  }

  /** The record's handler failed: drop its publishes (its writes were rolled back with its savepoint). */
  recordFailed(): void {
    this.#current = [];
  }

  /** The record's handler succeeded: keep its publishes. */
  recordDone(): void {
    if (this.#current.length === 0) return;
    this.#committed.push(...this.#current);
    this.#current = [];
  }

  async deadLetter(topic: string, record: AppendRecord): Promise<void> {
    this.#current = [];
    const meta = await this.#ctx.metadata.get(topic);
    const partition = record.key ? partitionFor(record.key, meta.partitions) : this.#sticky.get(topic, meta.partitions);
    this.#committed.push({ topic, partition, record });
  }

  /** Commits the batch so far (publishes, writes, and the offset advance if given). */
  async finish(advance: OffsetAdvance | undefined): Promise<void> {
    this.recordDone();
    const tx = this.#tx;
    try {
      if (this.#committed.length > 0) await tx.append(groupByPartition(this.#committed).appends);
      if (advance) {
        const commit = [{ topic: advance.state.topic, partition: advance.state.partition, offset: advance.offset }];
        if (tx.begun) await tx.commitOffsets(advance.groupId, commit, advance.fence);
        else await this.#ctx.storage.commitOffsets(advance.groupId, commit, advance.fence);
      }
      await tx.commit();
    } catch (error) {
      await tx.rollback();
      throw error;
    } finally {
      this.#committed = [];
    }
  }

  /** Commits progress so far and starts a fresh transaction for what follows. */
  async checkpoint(advance: OffsetAdvance | undefined): Promise<void> {
    this.#current = [];
    await this.finish(advance);
    this.reset();
  }

  reset(): void {
    this.#tx = this.#ctx.storage.deferredTransaction();
    this.#committed = [];
    this.#current = [];
  }

  async abort(): Promise<void> {
    this.#committed = [];
    this.#current = [];
    await this.#tx.rollback();
  }
}
