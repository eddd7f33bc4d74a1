/**
 * The Annals client: one per application and database. It owns the storage connection and hands
 * out admin clients, producers, readers and transactions that share it.
 */
import type { Codec } from '../codec/codec.js';
import { msgpackCodec } from '../codec/msgpack-codec.js';
import { isTopicContract, type TopicContract } from '../contracts/topic.js';
import type { EventContract } from '../contracts/event.js';
import { InvalidOptionsError } from '../errors.js';
import type { LogStorage, StoredRecord } from '../storage/log-storage.js';
import { Admin } from './admin.js';
import type { ClientContext } from './context.js';
import { CodecRegistry, decodeEvent, type DecodedEvent } from './events.js';
import { toKafkaMessage, type KafkaMessage } from './messages.js';
import { MetadataCache } from './metadata.js';
import { Consumer, type ConsumerInput } from './consumer.js';
import { Producer, type ProducerInput } from './producer.js';
import { PartitionReader, type ReaderInput } from './reader.js';
import { resolveRetry, withRetry, type RetryInput } from './retry.js';
import { SchemaRegistrations } from './schema-registrations.js';
import { BufferedTransaction, type AnnalsTransaction } from './transaction.js';
import { HandlerRuntime, type Projections, type Registrable, type RegisterOptions, type Registration } from '../framework/runtime.js';
import { Aggregates } from '../aggregates/aggregates.js';
import { Cleaner, resolveCleanerOptions, type CleanerInput } from './cleaner.js';

/** Options of `new Annals(...)`. */
export interface AnnalsInput<TDb> {
  /** Names this application in logs and metadata. */
  readonly clientId: string;
  /** Where the log lives: `postgres(...)` or `embeddedPostgres(...)` from `@annals/storage-pg`, or an in-memory log. */
  readonly storage: LogStorage<TDb>;
  /** Retry policy for retriable failures (connection loss, deadlocks, server restarts). */
  readonly retry?: RetryInput;
  /** Codec of typed events. @default msgpackCodec() */
  readonly codec?: Codec;
  /** How long topic metadata (partition counts, configs) is cached, in ms. @default 30000 */
  readonly metadataMaxAge?: number;
  /**
   * The in-process cleaner (retention and compaction). Every client starts one when it connects;
   * the clients of a database elect one to clean. `false` leaves cleaning to another process
   * (`annals cleaner run`). @default { enabled: true, intervalMs: 30000 }
   */
  readonly cleaner?: CleanerInput | false;
  /**
   * Register each event version in the store's schema registry the first time this client
   * publishes it, and refuse to publish a version registered with another schema
   * (`SchemaVersionConflictError`, nothing written). Checked once per contract per client.
   * Turn off only where versions are registered by `annals schema push` in CI.
   * @default true
   */
  readonly registerSchemas?: boolean;
}

/** Options of `annals.transaction(...)`. */
export interface TransactionOptions {
  /** Abort if the callback has not finished after this many ms. */
  readonly timeoutMs?: number;
}

/**
 * The Annals client.
 *
 * @example
 * ```ts
 * import { Annals } from '@annals/core';
 * import { postgres } from '@annals/storage-pg';
 *
 * const annals = new Annals({ clientId: 'order-service', storage: postgres({ connectionString: process.env.DATABASE_URL }) });
 * const producer = annals.producer();
 * await producer.connect();
 * await producer.send({ topic: 'orders', messages: [{ key: 'c-42', value: 'hello' }] });
 * await annals.disconnect();
 * ```
 */
export class Annals<TDb = unknown> {
  readonly #ctx: ClientContext<TDb>;
  readonly #consumers = new Set<Consumer<TDb>>();
  readonly #readers = new Set<PartitionReader>();
  #connecting: Promise<void> | undefined;
  #handlers: HandlerRuntime<TDb> | undefined;
  #aggregates: Aggregates | undefined;
  readonly #cleaner: Cleaner;
  readonly #cleanerEnabled: boolean;

  constructor(input: AnnalsInput<TDb>) {
    if (!input || typeof input.clientId !== 'string' || input.clientId.length === 0) {
      throw new InvalidOptionsError('new Annals({ clientId, storage }) needs a non-empty clientId.');
    }
    if (!input.storage || typeof input.storage.connect !== 'function') {
      throw new InvalidOptionsError(
        "new Annals({ clientId, storage }) needs a storage: postgres({ connectionString }) or embeddedPostgres() from '@annals/storage-pg'.",
      );
    }
    const metadataMaxAge = input.metadataMaxAge ?? 30_000;
    if (!Number.isSafeInteger(metadataMaxAge) || metadataMaxAge < 0) {
      throw new InvalidOptionsError('metadataMaxAge must be an integer ≥ 0 (ms).');
    }
    const codec = input.codec ?? msgpackCodec();
    const retry = resolveRetry(input.retry);
    if (input.registerSchemas !== undefined && typeof input.registerSchemas !== 'boolean') {
      throw new InvalidOptionsError('registerSchemas must be true or false.');
    }
    const storage = input.storage;
    this.#ctx = Object.freeze({
      clientId: input.clientId,
      storage: input.storage,
      retry,
      codec,
      codecs: new CodecRegistry(codec),
      metadata: new MetadataCache(input.storage, metadataMaxAge),
      schemas: new SchemaRegistrations(() => storage.schemaRegistry, input.clientId, input.registerSchemas ?? true, (fn) => withRetry(retry, fn)),
      ensureConnected: () => this.connect(),
    });
    const cleanerOptions = resolveCleanerOptions(input.cleaner);
    this.#cleanerEnabled = cleanerOptions.enabled;
    this.#cleaner = new Cleaner(input.storage as LogStorage<unknown>, cleanerOptions, () => this.connect());
  }

  /** Retention and compaction: the in-process cleaner, and {@link Cleaner.runOnce} to clean now. */
  get cleaner(): Cleaner {
    return this.#cleaner;
  }

  get clientId(): string {
    return this.#ctx.clientId;
  }

  /** The storage this client uses. */
  get storage(): LogStorage<TDb> {
    return this.#ctx.storage;
  }

  /** Connects the storage, retrying while the database is unreachable. Idempotent; called lazily by everything else. */
  connect(): Promise<void> {
    this.#connecting ??= withRetry(this.#ctx.retry, () => this.#ctx.storage.connect()).then(
      () => {
        if (this.#cleanerEnabled) this.#cleaner.start();
      },
      (error) => {
        this.#connecting = undefined;
        throw error;
      },
    );
    return this.#connecting;
  }

  /**
   * Stops this client's consumers and readers (in-flight batches finish and commit), then
   * disconnects the storage (never ending a pool you passed in). Idempotent.
   */
  async disconnect(): Promise<void> {
    await this.#handlers?.stop().catch(() => {});
    await Promise.all([...this.#consumers].map((c) => c.disconnect().catch(() => {})));
    await Promise.all([...this.#readers].map((r) => r.stop()));
    await this.#cleaner.stop();
    const connecting = this.#connecting;
    this.#connecting = undefined;
    if (connecting) await connecting.catch(() => {});
    await this.#ctx.storage.disconnect();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.disconnect();
  }

  /** The admin client (topics, configs, offsets). */
  admin(): Admin {
    return new Admin(this.#ctx);
  }

  /** A producer. See {@link ProducerInput} for idempotent and transactional producers. */
  producer(options?: ProducerInput): Producer<TDb> {
    return new Producer(this.#ctx, options);
  }

  /**
   * A consumer-group member (KafkaJS's shape). Members of one group share the partitions of the
   * topics they subscribe to; each partition is processed by one member at a time.
   *
   * @example
   * ```ts
   * const consumer = annals.consumer({ groupId: 'payment-service' });
   * await consumer.subscribe({ topic: 'orders', fromBeginning: true });
   * await consumer.run({ eachMessage: async ({ message, tx }) => { ... } });
   * ```
   */
  consumer(options: ConsumerInput): Consumer<TDb> {
    const consumer = new Consumer(this.#ctx, options);
    this.#consumers.add(consumer);
    return consumer;
  }

  #runtime(): HandlerRuntime<TDb> {
    this.#handlers ??= new HandlerRuntime(this.#ctx, (options) => this.consumer(options));
    return this.#handlers;
  }

  /**
   * Registers a subscriber or projection: an instance (or class) decorated with `@Subscriber` /
   * `@Projection`, or a `defineSubscriber` / `defineProjection` definition. Misuse — a handler for
   * an event its topics cannot carry, two handlers for one event, a missing contract — throws a
   * `RegistrationError` naming the class and method. Registrations start with `annals.start()`
   * (at once when it was already called).
   *
   * @example
   * ```ts
   * annals.register(new Payments(repository));
   * annals.register(OrderTotals, { resolve: (cls) => container.get(cls) });
   * await annals.start();
   * ```
   */
  register(target: Registrable, options?: RegisterOptions): Registration {
    return this.#runtime().register(target, options);
  }

  /** Starts every registered subscriber (resolves once they joined their groups) and projection. Idempotent. */
  async start(): Promise<void> {
    await this.#runtime().start();
  }

  /** Projections: rebuild, status (version, checkpoint, lag), read names, documents. */
  get projections(): Projections {
    return this.#runtime().projections;
  }

  /**
   * Event-sourced aggregates: streams (the records of one key in one topic) with expected-version
   * appends, deciders with `handle` (load, decide, append, retry on conflict), snapshots.
   * See docs/event-sourcing.md.
   *
   * @example
   * ```ts
   * const { state, version } = await annals.aggregates.handle(Order, orders, 'o-1', { type: 'pay', orderId: 'o-1' });
   * ```
   */
  get aggregates(): Aggregates {
    this.#aggregates ??= new Aggregates(this.#ctx);
    return this.#aggregates;
  }

  /**
   * Registers (or verifies) the latest version of each event these contracts carry, as a first
   * publish would, and caches the result for this client: later publishes of them cost no round
   * trip. Call it at start-up when the first publishes happen inside transactions, so a burst of
   * transactions each holding a pooled connection does not wait for another one to register.
   * Throws `SchemaVersionConflictError` when a version is registered with another schema.
   * A no-op with `registerSchemas: false`.
   *
   * @example
   * ```ts
   * await annals.registerContracts([orders, payments]);
   * ```
   */
  async registerContracts(contracts: ReadonlyArray<EventContract<string, any> | TopicContract>): Promise<void> {
    await this.connect();
    // One at a time: the first conflict is thrown and nothing after it is attempted.
    for (const c of contracts) {
      const events = isTopicContract(c) ? c.events.map((e) => [e, c.name] as const) : [[c, ''] as const];
      for (const [event, topic] of events) {
        const registering = this.#ctx.schemas.ensure(event, topic);
        if (registering) await registering;
      }
    }
  }

  /** A reader of partitions assigned by hand, with `seek` (no consumer group). */
  reader(options?: ReaderInput): PartitionReader {
    const reader = new PartitionReader(this.#ctx, options);
    this.#readers.add(reader);
    return reader;
  }

  /**
   * Runs `fn` in one database transaction: the application's writes through `tx.db` and every
   * `tx.publish` / `tx.send` commit together, or none of it does. Publishes are buffered and
   * appended just before COMMIT, so partition locks are held only for the commit itself.
   *
   * @example
   * ```ts
   * await annals.transaction(async (tx) => {
   *   await tx.db.insertInto('orders').values(row).execute();
   *   await tx.publish(orders, OrderCreated, { orderId: row.id, customerId: row.customerId, totalCents: 1250, currency: 'EUR' });
   * });
   * ```
   */
  async transaction<T>(fn: (tx: AnnalsTransaction<TDb>) => Promise<T>, options: TransactionOptions = {}): Promise<T> {
    await this.connect();
    return this.#ctx.storage.transaction(
      async (stx) => {
        const tx = new BufferedTransaction(this.#ctx, stx);
        try {
          const result = await fn(tx);
          await tx.flush();
          return result;
        } finally {
          tx.close();
        }
      },
      options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs },
    );
  }

  /**
   * Fetches records of one partition from `offset` (low-level; no group, no position kept).
   * Offsets are strings and keys and values Buffers, as in KafkaJS.
   */
  async fetch(
    topic: string,
    partition: number,
    offset: string | bigint,
    limits: { maxRecords?: number; maxBytes?: number } = {},
  ): Promise<{ messages: KafkaMessage[]; highWatermark: string; logStartOffset: string }> {
    await this.connect();
    const result = await withRetry(this.#ctx.retry, () =>
      this.#ctx.storage.fetch(topic, partition, BigInt(offset), {
        maxRecords: limits.maxRecords ?? 500,
        maxBytes: limits.maxBytes ?? 1_048_576,
      }),
    );
    return {
      messages: result.records.map(toKafkaMessage),
      highWatermark: result.highWatermark.toString(),
      logStartOffset: result.logStartOffset.toString(),
    };
  }

  /**
   * Decodes a consumed message of a typed topic: the event type, the version it was stored with,
   * and the payload upcast to the latest version and validated.
   */
  decode<T extends TopicContract>(topic: T, partition: number, message: KafkaMessage): DecodedEvent {
    const record: StoredRecord = {
      topic: topic.name,
      partition,
      offset: BigInt(message.offset),
      timestamp: Number(message.timestamp),
      key: message.key,
      value: message.value,
      headers: message.headers,
    };
    return decodeEvent(topic, record, this.#ctx.codecs);
  }
}
