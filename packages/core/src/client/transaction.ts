import type { EventContract, EventInputOf } from '../contracts/event.js';
import type { TopicContract } from '../contracts/topic.js';
import { InvalidTransactionStateError } from '../errors.js';
import { StreamBuffer, TransactionAggregates } from '../aggregates/aggregates.js';
import type { StorageTransaction } from '../storage/log-storage.js';
import type { ClientContext } from './context.js';
import { groupByPartition, PublishBuffer, type PublishOptions } from './prepare.js';
import type { ProducerBatch, ProducerRecord } from './producer.js';

/**
 * What `annals.transaction` hands its callback: the application's database handle in the
 * transaction, and publishes that commit with it.
 */
export interface AnnalsTransaction<TDb> {
  /** The application's database, in this transaction (for Postgres: a Kysely transaction). */
  readonly db: TDb;
  /** Publishes a typed event in this transaction. Offsets are assigned at commit. */
  publish<C extends EventContract<string, any>>(
    topic: TopicContract,
    event: C,
    payload: EventInputOf<C>,
    options?: PublishOptions,
  ): Promise<void>;
  /** Sends raw messages in this transaction (KafkaJS's shape). */
  send(record: ProducerRecord): Promise<void>;
  sendBatch(batch: ProducerBatch): Promise<void>;
  /**
   * Event-sourced streams in this transaction. Appends are buffered like publishes and checked at
   * commit (under the head locks): a stream not at the expected version fails the transaction with
   * `WrongExpectedVersionError`, and nothing of it is written.
   */
  readonly aggregates: TransactionAggregates;
}

/** @internal Buffers a transaction's publishes; `flush` appends them just before COMMIT. */
export class BufferedTransaction<TDb> implements AnnalsTransaction<TDb> {
  readonly #ctx: ClientContext<TDb>;
  readonly #stx: StorageTransaction<TDb>;
  readonly #buffer: PublishBuffer;
  readonly #streams = new StreamBuffer();
  #aggregates: TransactionAggregates | undefined;
  #closed = false;

  constructor(ctx: ClientContext<TDb>, stx: StorageTransaction<TDb>) {
    this.#ctx = ctx;
    this.#stx = stx;
    this.#buffer = new PublishBuffer(ctx);
  }

  get db(): TDb {
    this.#checkOpen();
    return this.#stx.db;
  }

  #checkOpen(): void {
    if (this.#closed) {
      throw new InvalidTransactionStateError('This transaction has ended: use the tx only inside the annals.transaction callback.');
    }
  }

  async publish<C extends EventContract<string, any>>(
    topic: TopicContract,
    event: C,
    payload: EventInputOf<C>,
    options: PublishOptions = {},
  ): Promise<void> {
    this.#checkOpen();
    await this.#buffer.publish(topic, event, payload, options);
  }

  async send(record: ProducerRecord): Promise<void> {
    this.#checkOpen();
    await this.#buffer.send(record);
  }

  async sendBatch(batch: ProducerBatch): Promise<void> {
    this.#checkOpen();
    await this.#buffer.sendBatch(batch);
  }

  get aggregates(): TransactionAggregates {
    this.#checkOpen();
    this.#aggregates ??= new TransactionAggregates(this.#ctx, {
      read: (topic, partition, key, options) => {
        this.#checkOpen();
        return this.#stx.readStream(topic, partition, key, options);
      },
      append: async (records, stream) => {
        this.#checkOpen();
        this.#streams.add(stream, records.length);
        this.#buffer.records.push(...records);
        return undefined;
      },
    });
    return this.#aggregates;
  }

  /** Appends everything buffered (taking partition locks only now), checks stream versions, and closes the handle. */
  async flush(): Promise<void> {
    this.#checkOpen();
    this.#closed = true;
    const streams = this.#streams.expectations;
    if (this.#buffer.records.length === 0 && streams.length === 0) return;
    const { appends } = groupByPartition(this.#buffer.records);
    if (streams.length > 0) await this.#stx.appendToStreams(appends, streams);
    else await this.#stx.append(appends);
  }

  close(): void {
    this.#closed = true;
  }
}
