/**
 * Runs a subscriber definition on a consumer-group consumer. Each record is looked up by its
 * `event-type` header first: a type the subscriber has no handler for is acknowledged without
 * being decoded, and counted. A handled record is decoded and upcast to its contract's latest
 * version; one that cannot be is routed by the consumer's failure policy at once (no retries).
 * Handlers run in the consumer's batch transaction, so writes through `ctx.tx` and publishes
 * commit with the offset advance.
 */
import type { Consumer, ConsumerEventName, ConsumerInput, EachMessagePayload, InstrumentationEvent } from '../client/consumer.js';
import { ConsumerEvents, UndecodableRecord } from '../client/consumer.js';
import type { ClientContext } from '../client/context.js';
import type { HandlerContext, HandlerTx } from './context.js';
import type { SubscriberDefinition } from './definitions.js';
import { asEventInstance } from '../contracts/event-class.js';
import { decode, eventTypeOf, metadataOf, storedRecordOf, topicsByName } from './records.js';

/** Counters of a registered subscriber or projection. */
export interface HandlerStats {
  /** Events a handler ran for (successfully). */
  readonly handled: number;
  /** Events acknowledged without a handler, by event type (`(none)`: records without an `event-type` header). */
  readonly unhandled: number;
  readonly unhandledByType: Readonly<Record<string, number>>;
}

export class StatsCounter {
  handled = 0;
  unhandled = 0;
  readonly byType = new Map<string, number>();
  skip(type: string): void {
    this.unhandled++;
    this.byType.set(type, (this.byType.get(type) ?? 0) + 1);
  }
  snapshot(): HandlerStats {
    return Object.freeze({ handled: this.handled, unhandled: this.unhandled, unhandledByType: Object.freeze(Object.fromEntries(this.byType)) });
  }
}

/** Instrumentation listeners of a registration, attached to each consumer it runs. */
export class ConsumerListeners {
  readonly #entries = new Set<{ name: ConsumerEventName; listener: (event: InstrumentationEvent<any>) => void }>();
  readonly #consumers = new Set<Consumer<any>>();
  readonly #detach = new Map<object, Array<() => void>>();

  add(name: ConsumerEventName, listener: (event: InstrumentationEvent<any>) => void): () => void {
    const entry = { name, listener };
    this.#entries.add(entry);
    const offs = [...this.#consumers].map((c) => c.on(name, listener));
    this.#detach.set(entry, offs);
    return () => {
      this.#entries.delete(entry);
      for (const off of this.#detach.get(entry) ?? []) off();
      this.#detach.delete(entry);
    };
  }

  attach(consumer: Consumer<any>): void {
    this.#consumers.add(consumer);
    for (const entry of this.#entries) this.#detach.get(entry)?.push(consumer.on(entry.name, entry.listener));
    consumer.on(ConsumerEvents.STOP, () => this.#consumers.delete(consumer));
  }
}

export class SubscriberRunner<TDb> {
  readonly definition: SubscriberDefinition;
  readonly stats = new StatsCounter();
  readonly #ctx: ClientContext<TDb>;
  readonly #createConsumer: (input: ConsumerInput) => Consumer<TDb>;
  readonly #topics;
  #consumer: Consumer<TDb> | undefined;
  #error: unknown;
  readonly listeners = new ConsumerListeners();

  constructor(ctx: ClientContext<TDb>, createConsumer: (input: ConsumerInput) => Consumer<TDb>, definition: SubscriberDefinition) {
    this.#ctx = ctx;
    this.#createConsumer = createConsumer;
    this.definition = definition;
    this.#topics = topicsByName(definition.topics);
  }

  get consumer(): Consumer<TDb> | undefined {
    return this.#consumer;
  }

  /** Why the consumer stopped for good (its failure policy stopped it), if it did. */
  get error(): unknown {
    return this.#error;
  }

  /** Joins the group; resolves once joined (processing goes on in the background). Idempotent. */
  async start(): Promise<void> {
    if (this.#consumer) return;
    const consumer = this.#createConsumer(this.definition.consumer);
    this.#consumer = consumer;
    this.#error = undefined;
    this.listeners.attach(consumer);
    consumer.on<{ error: unknown; restart: boolean }>(ConsumerEvents.CRASH, (e) => {
      if (!e.payload.restart) this.#error = e.payload.error;
    });
    try {
      await consumer.subscribe({ topics: this.definition.topics, fromBeginning: this.definition.fromBeginning });
      await consumer.run({
        partitionsConsumedConcurrently: this.definition.partitionsConsumedConcurrently,
        eachMessage: (payload) => this.#handle(payload),
      });
    } catch (error) {
      // Could not join (a topic is missing, the database is down): a later start() tries again.
      this.#consumer = undefined;
      await consumer.disconnect().catch(() => {});
      throw error;
    }
  }

  async stop(): Promise<void> {
    const consumer = this.#consumer;
    this.#consumer = undefined;
    await consumer?.disconnect();
  }

  async #handle(payload: EachMessagePayload<TDb>): Promise<void> {
    const record = storedRecordOf(payload.topic, payload.partition, payload.message);
    const type = eventTypeOf(record.headers);
    const handler = type === undefined ? undefined : this.definition.handlers.get(type);
    if (type !== undefined && !handler) {
      this.stats.skip(type);
      return;
    }
    let event;
    try {
      // onUnknownVersion: read-as-latest-known happens here; fail / dead-letter are routed by the consumer.
      event = decode(this.#ctx, this.#topics.get(payload.topic)!, record, { unknownVersion: this.definition.consumer.onUnknownVersion });
    } catch (error) {
      throw new UndecodableRecord(error);
    }
    const tx: HandlerTx<TDb> = {
      get db() {
        return payload.tx.db;
      },
      publish: (topic, contract, data, options) => payload.tx.publish(topic, contract, data, options),
      send: (r) => payload.tx.send(r),
    };
    const context: HandlerContext<TDb> = {
      metadata: metadataOf(record, event),
      tx,
      publish: tx.publish,
      heartbeat: payload.heartbeat,
      signal: payload.signal,
    };
    await handler!.handle(asEventInstance(handler!.event, event.payload), context);
    this.stats.handled++;
  }
}
