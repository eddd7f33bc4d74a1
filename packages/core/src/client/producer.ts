/**
 * The producer: KafkaJS's `send` / `sendBatch` / `transaction()`, and the typed `publish`.
 *
 * Concurrent sends on one producer are coalesced (Kafka's `linger.ms` batching, driven by
 * back-pressure rather than a timer): while one append is in flight, later sends queue, and the
 * next append carries all of them in one statement. Order is kept per partition; a coalesced
 * batch that fails for a non-retriable reason is replayed one send at a time, so one bad send
 * never fails its neighbours.
 *
 * An idempotent producer numbers its records per partition (Kafka's producer id + sequence); the
 * store refuses a batch it has already written and returns the original offsets. That makes it
 * safe to retry a send whose commit acknowledgement was lost.
 */
import type { EventContract, EventInputOf } from '../contracts/event.js';
import type { TopicContract } from '../contracts/topic.js';
import {
  CommitOutcomeUnknownError,
  InvalidOptionsError,
  InvalidTransactionStateError,
  NotConnectedError,
  TransactionTimeoutError,
  UnknownTopicOrPartitionError,
} from '../errors.js';
import type { Acks, AppendOptions, PartitionAppend, PartitionAppendResult, ProducerIdentity } from '../storage/log-storage.js';
import type { ClientContext } from './context.js';
import type { Message, RecordMetadata } from './messages.js';
import {
  groupByPartition,
  prepareEvent,
  prepareMessages,
  PublishBuffer,
  StickyPartitions,
  type PreparedRecord,
  type PublishOptions,
} from './prepare.js';
import { resolveRetry, withRetry, type Retry, type RetryInput } from './retry.js';

/** Options of `annals.producer(...)`. */
export interface ProducerInput {
  /** Retry after a lost commit acknowledgement without writing twice. @default false */
  readonly idempotent?: boolean;
  /** Makes the producer transactional: a newer producer with the same id fences this one. Implies `idempotent`. */
  readonly transactionalId?: string;
  /** A transaction open longer than this (ms) is aborted. @default 60000 */
  readonly transactionTimeout?: number;
  /** Kafka's setting; topics are never created by a send in Annals, so only `false` is accepted. @default false */
  readonly allowAutoTopicCreation?: false;
  /** Overrides the client's retry policy for this producer. */
  readonly retry?: RetryInput;
  /** Most records per coalesced append. @default 10000 */
  readonly maxBatchRecords?: number;
}

interface ResolvedProducerOptions {
  readonly idempotent: boolean;
  readonly transactionalId: string | undefined;
  readonly transactionTimeout: number;
  readonly retry: Retry | undefined;
  readonly maxBatchRecords: number;
}

function resolveProducerOptions(input: ProducerInput = {}): ResolvedProducerOptions {
  if (input.allowAutoTopicCreation === (true as never)) {
    throw new InvalidOptionsError('allowAutoTopicCreation: true is not supported: create topics with admin.createTopics first.');
  }
  const transactionTimeout = input.transactionTimeout ?? 60_000;
  if (!Number.isInteger(transactionTimeout) || transactionTimeout < 1) {
    throw new InvalidOptionsError(`transactionTimeout must be a positive integer (ms), got ${String(input.transactionTimeout)}.`);
  }
  if (input.transactionalId !== undefined && (typeof input.transactionalId !== 'string' || input.transactionalId.length === 0)) {
    throw new InvalidOptionsError('transactionalId must be a non-empty string.');
  }
  const maxBatchRecords = input.maxBatchRecords ?? 10_000;
  if (!Number.isInteger(maxBatchRecords) || maxBatchRecords < 1) throw new InvalidOptionsError('maxBatchRecords must be a positive integer.');
  return Object.freeze({
    idempotent: input.idempotent === true || input.transactionalId !== undefined,
    transactionalId: input.transactionalId,
    transactionTimeout,
    retry: input.retry ? resolveRetry(input.retry, 'producer retry') : undefined,
    maxBatchRecords,
  });
}

/** A `send` call (KafkaJS's `ProducerRecord`). */
export interface ProducerRecord {
  readonly topic: string;
  readonly messages: readonly Message[];
  /** -1 (all): durable on commit; 1: local flush only; 0: do not wait for the flush. @default -1 */
  readonly acks?: Acks;
  /** Accepted for KafkaJS compatibility; ignored. */
  readonly timeout?: number;
  /** Accepted for KafkaJS compatibility; Annals does not compress. */
  readonly compression?: unknown;
}

/** A `sendBatch` call. */
export interface ProducerBatch {
  readonly topicMessages: ReadonlyArray<{ readonly topic: string; readonly messages: readonly Message[] }>;
  readonly acks?: Acks;
}

interface QueuedSend {
  readonly records: readonly PreparedRecord[];
  readonly acks: Acks;
  readonly resolve: (metadata: RecordMetadata[]) => void;
  readonly reject: (error: unknown) => void;
}

function metadataFor(records: readonly PreparedRecord[], offsets: readonly bigint[]): RecordMetadata[] {
  const first = new Map<string, RecordMetadata>();
  records.forEach((r, i) => {
    const k = `${r.topic}\u0000${r.partition}`;
    if (!first.has(k)) {
      first.set(k, {
        topicName: r.topic,
        partition: r.partition,
        errorCode: 0,
        baseOffset: offsets[i]!.toString(),
        logAppendTime: '-1',
        logStartOffset: '-1',
      });
    }
  });
  return [...first.values()];
}

/** A producer. Create it with `annals.producer(options)`. */
export class Producer<TDb = unknown> {
  readonly #ctx: ClientContext<TDb>;
  readonly #options: ResolvedProducerOptions;
  readonly #sticky = new StickyPartitions();
  readonly #queue: QueuedSend[] = [];
  readonly #sequences = new Map<string, number>();
  #flushing = false;
  #connected: Promise<ProducerIdentity | undefined> | undefined;
  #identity: ProducerIdentity | undefined;
  #activeTransaction: ProducerTransaction<TDb> | undefined;
  #disconnected = false;

  /** @internal Use `annals.producer()`. */
  constructor(ctx: ClientContext<TDb>, input: ProducerInput = {}) {
    this.#ctx = ctx;
    this.#options = resolveProducerOptions(input);
  }

  get #retry(): Retry {
    return this.#options.retry ?? this.#ctx.retry;
  }

  /** Connects (and registers an idempotent or transactional producer id). Idempotent. */
  connect(): Promise<void> {
    this.#disconnected = false;
    this.#connected ??= (async () => {
      await this.#ctx.ensureConnected();
      if (!this.#options.idempotent) return undefined;
      const identity = await withRetry(this.#retry, () => this.#ctx.storage.initProducer(this.#options.transactionalId));
      this.#identity = identity;
      return identity;
    })().catch((error) => {
      this.#connected = undefined;
      throw error;
    });
    return this.#connected.then(() => undefined);
  }

  /** Waits for queued sends, then disconnects this producer. The client's storage stays connected. */
  async disconnect(): Promise<void> {
    while (this.#flushing || this.#queue.length > 0) await new Promise((r) => setTimeout(r, 5));
    this.#disconnected = true;
    this.#connected = undefined;
    this.#identity = undefined;
    this.#sequences.clear();
  }

  /** True for idempotent (and transactional) producers. */
  isIdempotent(): boolean {
    return this.#options.idempotent;
  }

  async #ready(): Promise<void> {
    if (this.#disconnected) throw new NotConnectedError('The producer is disconnected: call producer.connect() again.');
    await this.connect();
  }

  /**
   * Sends messages to one topic (KafkaJS's shape). Resolves once they are committed, with the
   * base offset written per partition.
   *
   * @example
   * ```ts
   * await producer.send({ topic: 'orders', messages: [{ key: order.customerId, value: JSON.stringify(order) }] });
   * ```
   */
  async send(record: ProducerRecord): Promise<RecordMetadata[]> {
    await this.#ready();
    const prepared = await prepareMessages(this.#ctx, record.topic, record.messages, this.#sticky);
    return this.#enqueue(prepared, record.acks ?? -1);
  }

  /** Sends to several topics at once; all of it commits together. */
  async sendBatch(batch: ProducerBatch): Promise<RecordMetadata[]> {
    await this.#ready();
    const prepared: PreparedRecord[] = [];
    for (const tm of batch.topicMessages) prepared.push(...(await prepareMessages(this.#ctx, tm.topic, tm.messages, this.#sticky)));
    return this.#enqueue(prepared, batch.acks ?? -1);
  }

  /**
   * Publishes one typed event: validates it against the contract's latest version, encodes it
   * with the client's codec, derives the key from the topic contract and sets the `event-type`,
   * `schema-version` and `content-type` headers.
   *
   * @example
   * ```ts
   * await producer.publish(orders, OrderCreated, { orderId: 'o-1', customerId: 'c-42', totalCents: 1250, currency: 'EUR' });
   * ```
   */
  async publish<C extends EventContract<string, any>>(
    topic: TopicContract,
    event: C,
    payload: EventInputOf<C>,
    options: PublishOptions = {},
  ): Promise<RecordMetadata> {
    await this.#ready();
    const prepared = await prepareEvent(this.#ctx, topic, event, payload, options, this.#sticky);
    const [metadata] = await this.#enqueue([prepared], -1);
    return metadata!;
  }

  /**
   * Begins a KafkaJS-style transaction: sends are buffered and written atomically by `commit()`.
   * With a `transactionalId`, a newer producer with the same id fences this one.
   */
  async transaction(): Promise<ProducerTransaction<TDb>> {
    await this.#ready();
    if (this.#activeTransaction?.isActive()) {
      throw new InvalidTransactionStateError('This producer already has an open transaction: commit or abort it first.');
    }
    const tx = new ProducerTransaction<TDb>(this.#ctx, this.#sticky, this.#options.transactionTimeout, (records) =>
      this.#commitTransaction(records),
    );
    this.#activeTransaction = tx;
    return tx;
  }

  async #commitTransaction(records: readonly PreparedRecord[]): Promise<void> {
    await this.connect();
    const { appends } = groupByPartition(records);
    const options = this.#appendOptions(appends);
    await this.#appendWithRetry(appends, options);
  }

  #enqueue(records: readonly PreparedRecord[], acks: Acks): Promise<RecordMetadata[]> {
    if (records.length === 0) return Promise.resolve([]);
    return new Promise((resolve, reject) => {
      this.#queue.push({ records, acks, resolve, reject });
      if (!this.#flushing) {
        // Yield once before the first append so sends issued together (Promise.all, several
        // callers in one tick) travel in one statement — Kafka's linger.ms = 0, by back-pressure.
        this.#flushing = true;
        setImmediate(() => void this.#flushLoop());
      }
    });
  }

  async #flushLoop(): Promise<void> {
    this.#flushing = true;
    try {
      while (this.#queue.length > 0) {
        const batch: QueuedSend[] = [this.#queue.shift()!];
        let count = batch[0]!.records.length;
        while (this.#queue.length > 0) {
          const next = this.#queue[0]!;
          if (next.acks !== batch[0]!.acks || count + next.records.length > this.#options.maxBatchRecords) break;
          batch.push(this.#queue.shift()!);
          count += next.records.length;
        }
        await this.#flush(batch);
      }
    } finally {
      this.#flushing = false;
    }
  }

  async #flush(batch: QueuedSend[]): Promise<void> {
    try {
      const offsets = await this.#write(batch.flatMap((s) => s.records), batch[0]!.acks);
      let at = 0;
      for (const send of batch) {
        send.resolve(metadataFor(send.records, offsets.slice(at, at + send.records.length)));
        at += send.records.length;
      }
    } catch (error) {
      if (batch.length === 1 || error instanceof CommitOutcomeUnknownError) {
        for (const send of batch) send.reject(error);
        return;
      }
      // One bad send must not fail the sends it was coalesced with: replay them one at a time.
      for (const send of batch) await this.#flush([send]);
    } finally {
      const topics = new Set(batch.flatMap((s) => s.records.map((r) => r.topic)));
      this.#sticky.advance(topics, (t) => this.#ctx.metadata.peek(t)?.partitions ?? 1);
    }
  }

  /** Writes records in one append; returns each record's offset. */
  async #write(records: readonly PreparedRecord[], acks: Acks): Promise<bigint[]> {
    if (this.#options.idempotent) await this.connect(); // a reset identity is renewed before use
    const { appends, slots } = groupByPartition(records);
    const options: AppendOptions = { ...this.#appendOptions(appends), acks };
    const results = await this.#appendWithRetry(appends, options);
    return slots.map((s) => results[s.append]!.baseOffset + BigInt(s.index));
  }

  #appendOptions(appends: PartitionAppend[]): AppendOptions {
    const id = this.#identity;
    if (!this.#options.idempotent || !id) return {};
    for (const [i, a] of appends.entries()) {
      appends[i] = { ...a, baseSequence: this.#sequences.get(`${a.topic}\u0000${a.partition}`) ?? 0 };
    }
    return {
      producerId: id.producerId,
      ...(this.#options.transactionalId !== undefined
        ? { fence: { transactionalId: this.#options.transactionalId, producerId: id.producerId, epoch: id.epoch } }
        : {}),
    };
  }

  async #appendWithRetry(appends: PartitionAppend[], options: AppendOptions): Promise<PartitionAppendResult[]> {
    const idempotent = options.producerId !== undefined;
    let refreshed = false;
    const results = await withRetry(
      this.#retry,
      async () => {
        try {
          return await this.#ctx.storage.append(appends, options);
        } catch (error) {
          // Partition counts may have grown or a topic been re-created: refresh metadata once.
          if (error instanceof UnknownTopicOrPartitionError && !refreshed) {
            refreshed = true;
            for (const a of appends) this.#ctx.metadata.invalidate(a.topic);
          }
          throw error;
        }
      },
      // Only an idempotent producer may retry a commit whose outcome is unknown: the store
      // recognises the batch by its sequence and does not write it twice.
      { alsoRetry: (e) => idempotent && e instanceof CommitOutcomeUnknownError },
    ).catch((error: unknown) => {
      if (idempotent && error instanceof CommitOutcomeUnknownError) {
        // The batch may or may not be in the log, and its sequence can no longer tell: a later
        // send reusing it would be taken for a duplicate and dropped. Start over with a new
        // producer id (Kafka's producer does the same after an unresolved sequence).
        this.#connected = undefined;
        this.#identity = undefined;
        this.#sequences.clear();
      }
      throw error;
    });
    if (idempotent) {
      for (const a of appends) {
        const k = `${a.topic}\u0000${a.partition}`;
        this.#sequences.set(k, (a.baseSequence ?? 0) + a.records.length);
      }
    }
    return results;
  }
}

/** A KafkaJS-style producer transaction: sends are buffered until `commit()`. */
export class ProducerTransaction<TDb = unknown> {
  readonly #buffer: PublishBuffer;
  readonly #commit: (records: readonly PreparedRecord[]) => Promise<void>;
  readonly #deadline: number;
  readonly #timeoutMs: number;
  #state: 'open' | 'committing' | 'committed' | 'aborted' = 'open';

  /** @internal */
  constructor(
    ctx: ClientContext<TDb>,
    sticky: StickyPartitions,
    timeoutMs: number,
    commit: (records: readonly PreparedRecord[]) => Promise<void>,
  ) {
    this.#buffer = new PublishBuffer(ctx, sticky);
    this.#commit = commit;
    this.#timeoutMs = timeoutMs;
    this.#deadline = Date.now() + timeoutMs;
  }

  #checkOpen(): void {
    if (this.#state !== 'open') {
      throw new InvalidTransactionStateError(`The transaction is ${this.#state}; start a new one with producer.transaction().`);
    }
    if (Date.now() > this.#deadline) {
      this.#state = 'aborted';
      this.#buffer.take();
      throw new TransactionTimeoutError(
        `The transaction was open longer than transactionTimeout (${this.#timeoutMs} ms) and was aborted; nothing was written.`,
      );
    }
  }

  /** True until the transaction is committed or aborted. */
  isActive(): boolean {
    return this.#state === 'open' || this.#state === 'committing';
  }

  /** Buffers messages for the commit. Validates them (topic, partition, size) now. */
  async send(record: ProducerRecord): Promise<void> {
    this.#checkOpen();
    await this.#buffer.send(record);
  }

  async sendBatch(batch: ProducerBatch): Promise<void> {
    this.#checkOpen();
    await this.#buffer.sendBatch(batch);
  }

  /** Buffers a typed event for the commit. */
  async publish<C extends EventContract<string, any>>(
    topic: TopicContract,
    event: C,
    payload: EventInputOf<C>,
    options: PublishOptions = {},
  ): Promise<void> {
    this.#checkOpen();
    await this.#buffer.publish(topic, event, payload, options);
  }

  /** Writes everything sent in this transaction atomically: all of it becomes visible, or none. */
  async commit(): Promise<void> {
    this.#checkOpen();
    this.#state = 'committing';
    try {
      if (this.#buffer.records.length > 0) await this.#commit(this.#buffer.records);
      this.#state = 'committed';
    } catch (error) {
      this.#state = 'aborted';
      throw error;
    } finally {
      this.#buffer.take();
    }
  }

  /** Discards everything sent in this transaction. */
  async abort(): Promise<void> {
    if (this.#state === 'committed') throw new InvalidTransactionStateError('The transaction is already committed.');
    this.#state = 'aborted';
    this.#buffer.take();
  }
}
