/**
 * Given/when/then specifications for subscribers and projections, on the in-memory log (the
 * default) or on PostgreSQL (pass a storage):
 *
 * ```ts
 * await given(event(orders, OrderCreated, { orderId: 'o-1', customerId: 'c-1', totalCents: 1250, currency: 'EUR' }))
 *   .when(new OrderTotals())
 *   .then({ documents: { order_totals: { 'c-1': { orders: 1, totalCents: 1250 } } } });
 * ```
 *
 * `given` events are published first (in order, each in its own send), then the subscriber or
 * projection runs for real — a consumer group on the store, from the log start — until it has
 * processed everything; `then` checks the projection's documents (its active version) and the
 * events its handlers published. A projection processes `given` events as history: it builds its
 * first version by replaying them, so its publishes are suppressed (as in production); events
 * given with `.and(...)` arrive after it is live.
 */
import {
  Annals,
  CONTENT_TYPE_HEADER,
  EVENT_TYPE_HEADER,
  SCHEMA_VERSION_HEADER,
  InvalidOptionsError,
  defineSubscriber,
  definitionOf,
  isProjectionDefinition,
  isSubscriberDefinition,
  msgpackCodec,
  type EventContract,
  type EventInputOf,
  type HandlerEntry,
  type HandlerStats,
  type LogStorage,
  type ProjectionDefinition,
  type Registrable,
  type RegisterOptions,
  type SubscriberDefinition,
  type TopicContract,
} from '@annals/core';
import { expect } from 'vitest';
import { InMemoryLogStorage } from './in-memory-log-storage.js';

/** One event to publish before the handler runs. Made by {@link event}. */
export interface GivenEvent {
  readonly kind: 'annals.given-event';
  readonly topic: TopicContract;
  readonly event: EventContract<string, any>;
  readonly payload: unknown;
  /** Write it as this (older) version: the payload is that version's shape. */
  readonly version: number | undefined;
  readonly partition: number | undefined;
}

/**
 * An event of the latest version to publish to `topic`.
 *
 * @example
 * ```ts
 * given(event(orders, OrderCreated, { orderId: 'o-1', customerId: 'c-1', totalCents: 1250, currency: 'EUR' }))
 * ```
 */
export function event<C extends EventContract<string, any>>(topic: TopicContract, contract: C, payload: EventInputOf<C>, options: { readonly partition?: number } = {}): GivenEvent {
  return Object.freeze({ kind: 'annals.given-event' as const, topic, event: contract, payload, version: undefined, partition: options.partition });
}

/** An event stored as an older `version` of its contract (the payload has that version's shape): handlers get it upcast. */
export function eventOfVersion(topic: TopicContract, contract: EventContract<string, any>, version: number, payload: unknown, options: { readonly partition?: number } = {}): GivenEvent {
  if (!contract.versions.includes(version)) throw new InvalidOptionsError(`Event "${contract.type}" has no version ${version}.`);
  return Object.freeze({ kind: 'annals.given-event' as const, topic, event: contract, payload, version, partition: options.partition });
}

/** An event a handler published, decoded. */
export interface PublishedEvent {
  readonly topic: string;
  readonly type: string;
  readonly payload: unknown;
  readonly key: string | null;
}

/** What a specification observed. */
export interface Outcome<TDb = unknown> {
  /** The projection's documents, active version: `{ table: { id: document } }` (empty for a subscriber). */
  readonly documents: Record<string, Record<string, unknown>>;
  /** Events the handlers published, in log order per partition (topics in `topics` and the handler's own). */
  readonly published: readonly PublishedEvent[];
  readonly stats: HandlerStats;
  /** The client, still connected inside a `then` callback: query `annals.storage`, read models, tables. */
  readonly annals: Annals<TDb>;
}

/** What `then` compares (each field that is given, with `toEqual`). */
export interface Expectation {
  readonly documents?: Record<string, Record<string, unknown>>;
  /** Published events; give `{ type, payload }` or whole {@link PublishedEvent}s. */
  readonly published?: ReadonlyArray<Partial<PublishedEvent>>;
  readonly unhandled?: number;
}

export interface WhenOptions extends RegisterOptions {
  /** The store: a fresh `InMemoryLogStorage` by default; pass a Postgres storage (a fresh schema) to run there. It is disconnected at the end. */
  readonly storage?: LogStorage<any>;
  /** Topics the handlers publish to (created if missing, and read for `published`). */
  readonly topics?: readonly TopicContract[];
  /** Give up waiting after this long (ms). @default 15000 */
  readonly timeoutMs?: number;
}

type Target = Registrable | HandlerEntry<any, any> | readonly HandlerEntry<any, any>[];

export interface Given {
  /** The handler under test: a decorated instance or class, a definition, or `on(...)` entries. */
  when(target: Target, options?: WhenOptions): When;
}

export interface When {
  /** Events published after the subscriber or projection is running (live). */
  and(...events: ReadonlyArray<GivenEvent | readonly GivenEvent[]>): When;
  /** Runs the specification and checks the outcome; resolves with it. */
  then<TDb = any>(expected: Expectation | ((outcome: Outcome<TDb>) => void | Promise<void>)): Promise<Outcome<TDb>>;
}

/** Starts a specification with the events already in the log. */
export function given(...events: ReadonlyArray<GivenEvent | readonly GivenEvent[]>): Given {
  const history = events.flat() as GivenEvent[];
  return {
    when: (target, options = {}) => {
      const live: GivenEvent[] = [];
      const when: When = {
        and: (...more) => {
          live.push(...(more.flat() as GivenEvent[]));
          return when;
        },
        then: (expected) => run(history, live, target, options, expected),
      };
      return when;
    },
  };
}

const FAST = { heartbeatInterval: 100, sessionTimeout: 10_000, maxWaitTimeInMs: 100 } as const;

function isEntry(value: unknown): value is HandlerEntry<any, any> {
  return typeof value === 'object' && value !== null && (value as HandlerEntry).kind === 'annals.handler';
}

async function run<TDb>(
  history: readonly GivenEvent[],
  live: readonly GivenEvent[],
  target: Target,
  options: WhenOptions,
  expected: Expectation | ((outcome: Outcome<TDb>) => void | Promise<void>),
): Promise<Outcome<TDb>> {
  const storage = options.storage ?? new InMemoryLogStorage();
  const annals = new Annals<TDb>({ clientId: 'given-when-then', storage: storage as LogStorage<TDb> });
  const timeoutMs = options.timeoutMs ?? 15_000;
  try {
    const definition = speedUp(definitionOfTarget(target, [...history, ...live], options));
    const registration = annals.register(definition);
    const topics = new Map<string, TopicContract>();
    for (const t of [...definition.topics, ...history.map((e) => e.topic), ...live.map((e) => e.topic), ...(options.topics ?? [])]) topics.set(t.name, t);
    const existing = new Set(await annals.admin().listTopics());
    const missing = [...topics.values()].filter((t) => !existing.has(t.name));
    if (missing.length > 0) await annals.admin().createTopics({ topics: missing });

    await publish(annals, history);
    const before = await watermarks(annals, [...topics.keys()]);
    await annals.start();
    await caughtUp(annals, definition, registration, timeoutMs);
    const liveOffsets = new Set<string>();
    if (live.length > 0) {
      for (const at of await publish(annals, live)) liveOffsets.add(at);
      await caughtUp(annals, definition, registration, timeoutMs);
    }
    const outcome: Outcome<TDb> = {
      documents: await documentsOf(annals, definition),
      published: await publishedSince(annals, topics, before, liveOffsets),
      stats: registration.stats(),
      annals,
    };
    if (typeof expected === 'function') await expected(outcome);
    else {
      if (expected.documents !== undefined) expect(outcome.documents).toEqual(expected.documents);
      if (expected.published !== undefined) {
        const keys = new Set(expected.published.flatMap((p) => Object.keys(p)));
        expect(outcome.published.map((p) => Object.fromEntries(Object.entries(p).filter(([k]) => keys.has(k))))).toEqual(expected.published);
      }
      if (expected.unhandled !== undefined) expect(outcome.stats.unhandled).toBe(expected.unhandled);
    }
    return outcome;
  } finally {
    await annals.disconnect();
  }
}

/** The definition under test: entries become a subscriber of the given events' topics that carry them. */
function definitionOfTarget(target: Target, events: readonly GivenEvent[], options: RegisterOptions): SubscriberDefinition | ProjectionDefinition {
  if (isEntry(target) || (Array.isArray(target) && target.length > 0 && target.every(isEntry))) {
    const entries = (Array.isArray(target) ? target : [target]) as HandlerEntry<any, any>[];
    const topics = [...new Set(events.map((e) => e.topic))].filter((t) => entries.some((h) => t.eventByType(h.event?.type)));
    return defineSubscriber({ groupId: 'given-when-then', topics, handlers: entries as never });
  }
  if (isSubscriberDefinition(target) || isProjectionDefinition(target)) return target;
  if (typeof target === 'function') {
    const cls = target as abstract new (...args: any[]) => object;
    return definitionOf(options.resolve ? options.resolve(cls) : new (cls as new () => object)());
  }
  return definitionOf(target as object);
}

/** The definition with fast polling; a subscriber starts at the log start. */
function speedUp(definition: SubscriberDefinition | ProjectionDefinition): SubscriberDefinition | ProjectionDefinition {
  return isSubscriberDefinition(definition)
    ? Object.freeze({ ...definition, fromBeginning: true, consumer: Object.freeze({ ...FAST, ...definition.consumer }) })
    : Object.freeze({ ...definition, autoRebuild: true, consumer: Object.freeze({ ...FAST, ...definition.consumer }) });
}

/** Publishes in order; returns `topic/partition/offset` of each record written. */
async function publish(annals: Annals<any>, events: readonly GivenEvent[]): Promise<string[]> {
  const producer = annals.producer();
  const codec = msgpackCodec();
  const written: string[] = [];
  for (const e of events) {
    let meta: { topicName: string; partition: number; baseOffset: string };
    if (e.version === undefined) {
      meta = await producer.publish(e.topic, e.event, e.payload as never, e.partition === undefined ? {} : { partition: e.partition });
    } else {
      const latest = e.event.upcast(e.version, e.payload);
      const key = e.topic.keyOf(latest as never);
      const sent = await producer.send({
        topic: e.topic.name,
        messages: [
          {
            key: key === undefined ? null : key,
            value: Buffer.from(codec.encode(e.payload)),
            headers: { [EVENT_TYPE_HEADER]: e.event.type, [SCHEMA_VERSION_HEADER]: String(e.version), [CONTENT_TYPE_HEADER]: codec.contentType },
            ...(e.partition === undefined ? {} : { partition: e.partition }),
          },
        ],
      });
      meta = sent[0]!;
    }
    written.push(`${meta.topicName}/${meta.partition}/${meta.baseOffset}`);
  }
  await producer.disconnect();
  return written;
}

async function watermarks(annals: Annals<any>, topics: readonly string[]): Promise<Map<string, bigint>> {
  const out = new Map<string, bigint>();
  for (const topic of topics) for (const m of await annals.storage.fetchWatermarks(topic)) out.set(`${topic}/${m.partition}`, m.high);
  return out;
}

async function caughtUp(annals: Annals<any>, definition: SubscriberDefinition | ProjectionDefinition, registration: { error(): unknown }, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const storage = annals.storage;
  for (;;) {
    const error = registration.error();
    if (error !== undefined) throw error;
    let done = false;
    if (isProjectionDefinition(definition)) {
      const status = (await annals.projections.status([definition.name]))[0];
      done = status?.state === 'live' && status.activeVersion === definition.version && status.lag === 0;
    } else {
      const committed = await storage.fetchCommittedOffsets(definition.groupId, definition.topics.map((t) => t.name));
      done = true;
      for (const topic of definition.topics) {
        for (const m of await storage.fetchWatermarks(topic.name)) {
          const c = committed.find((o) => o.topic === topic.name && o.partition === m.partition)?.offset ?? m.low;
          if (c < m.high) done = false;
        }
      }
    }
    if (done) return;
    if (Date.now() > deadline) {
      throw new Error(`given/when/then: ${definition.kind === 'annals.projection' ? `projection "${definition.name}"` : `subscriber "${definition.name}"`} did not process every event within ${timeoutMs} ms.`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function documentsOf(annals: Annals<any>, definition: SubscriberDefinition | ProjectionDefinition): Promise<Record<string, Record<string, unknown>>> {
  if (!isProjectionDefinition(definition)) return {};
  const out: Record<string, Record<string, unknown>> = {};
  for (const table of definition.documents) out[table] = Object.fromEntries(await annals.projections.documents(definition.name, table));
  return out;
}

async function publishedSince(annals: Annals<any>, topics: ReadonlyMap<string, TopicContract>, before: ReadonlyMap<string, bigint>, given: ReadonlySet<string>): Promise<PublishedEvent[]> {
  const out: PublishedEvent[] = [];
  for (const [name, topic] of topics) {
    for (const m of await annals.storage.fetchWatermarks(name)) {
      const from = before.get(`${name}/${m.partition}`) ?? m.low;
      if (from >= m.high) continue;
      const { messages } = await annals.fetch(name, m.partition, from, { maxRecords: 1_000_000, maxBytes: 1 << 30 });
      for (const message of messages) {
        if (given.has(`${name}/${m.partition}/${message.offset}`)) continue;
        const decoded = annals.decode(topic, m.partition, message);
        out.push({ topic: name, type: decoded.type, payload: decoded.payload, key: message.key ? message.key.toString() : null });
      }
    }
  }
  return out;
}
