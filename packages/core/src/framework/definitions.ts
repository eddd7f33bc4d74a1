/**
 * The plain-function API of subscribers and projections. The decorators (`decorators.ts`) are sugar
 * over it: `@Subscriber` + `@On` build exactly the definition `defineSubscriber` builds, and every
 * check below runs for both, naming the handler (`Class.method`, or `handlers[i]`) in its error.
 */
import type { ConsumerInput } from '../client/consumer.js';
import type { RetryInput } from '../client/retry.js';
import { isEventContract, type EventContract, type EventOf } from '../contracts/event.js';
import { isTopicContract, type TopicContract } from '../contracts/topic.js';
import { RegistrationError } from '../errors.js';
import type { HandlerContext, ProjectionContext, ProjectionSetupContext } from './context.js';

type AnyEvent = EventContract<string, any>;

/** The event contracts a list of topics can carry. */
export type EventsOfTopics<T extends readonly TopicContract[]> = T[number]['events'][number];

/** One handler: an event contract and the function that handles its latest payload. Made by {@link on}. */
export interface HandlerEntry<C extends AnyEvent = AnyEvent, Ctx = HandlerContext<any>> {
  readonly kind: 'annals.handler';
  readonly event: C;
  /** Names the handler in errors, e.g. `Payments.charge`. */
  readonly label: string | undefined;
  handle(event: EventOf<C>, ctx: Ctx): unknown;
}

/**
 * Declares the handler of one event: it receives the payload of the contract's latest version
 * (older stored versions are upcast first) and the handler context.
 *
 * @example
 * ```ts
 * const payments = defineSubscriber({
 *   groupId: 'payment-service',
 *   topics: [orders],
 *   handlers: [on(OrderCreated, async (order, { tx }) => { await charge(tx.db, order) })],
 * });
 * ```
 */
export function on<C extends AnyEvent, Ctx = HandlerContext<any>>(event: C, handle: (event: EventOf<C>, ctx: Ctx) => unknown, label?: string): HandlerEntry<C, Ctx> {
  return Object.freeze({ kind: 'annals.handler' as const, event, label, handle: handle as HandlerEntry<C, Ctx>['handle'] });
}

/** Consumer options a subscriber may set (KafkaJS's `ConsumerConfig`, plus the failure policy). */
export type SubscriberConsumerOptions = Omit<ConsumerInput, 'groupId' | 'rebalanceTimeout' | 'allowAutoTopicCreation' | 'readUncommitted'>;

/** What `@Subscriber(...)` takes; `defineSubscriber` takes the same plus `handlers`. */
export interface SubscriberOptions<T extends readonly TopicContract[] = readonly TopicContract[]> extends SubscriberConsumerOptions {
  /** The consumer group: members of one group share the topics' partitions. */
  readonly groupId: string;
  /** The typed topics (`defineTopic`) to consume. */
  readonly topics: T;
  /** Where a group without committed offsets starts: the log start (`true`) or its end. @default false */
  readonly fromBeginning?: boolean;
  /** How many partitions are processed at once. @default 1 */
  readonly partitionsConsumedConcurrently?: number;
  /** Names the subscriber in errors and stats. @default the class name, or the groupId */
  readonly name?: string;
}

export interface SubscriberDefinitionInput<T extends readonly TopicContract[] = readonly TopicContract[]> extends SubscriberOptions<T> {
  /** One entry per event type, made with {@link on}. Events the subscriber has no handler for are acknowledged and counted. */
  readonly handlers: readonly HandlerEntry<EventsOfTopics<T>, HandlerContext<any>>[];
}

/** @internal A validated handler. */
export interface ResolvedHandler {
  readonly event: AnyEvent;
  readonly label: string;
  readonly handle: (payload: unknown, ctx: any) => unknown;
}

/** A validated, frozen subscriber. Made by {@link defineSubscriber} or from a decorated instance. */
export interface SubscriberDefinition {
  readonly kind: 'annals.subscriber';
  readonly name: string;
  readonly groupId: string;
  readonly topics: readonly TopicContract[];
  readonly fromBeginning: boolean;
  readonly partitionsConsumedConcurrently: number;
  readonly consumer: ConsumerInput;
  /** Handlers by event type. */
  readonly handlers: ReadonlyMap<string, ResolvedHandler>;
}

/** Consumer options of a projection's live consumer group. */
export interface ProjectionConsumerOptions {
  /** @default 30000 */
  readonly sessionTimeout?: number;
  /** @default 3000 */
  readonly heartbeatInterval?: number;
  /** @default 5000 */
  readonly maxWaitTimeInMs?: number;
  /** @default 500 */
  readonly maxRecordsPerFetch?: number;
  /** Retries of a failing batch before the projection stops. @default { retries: 5, initialRetryTime: 300 } */
  readonly retry?: RetryInput;
  /** @default 1 */
  readonly partitionsConsumedConcurrently?: number;
}

/** What `@Projection(...)` takes; `defineProjection` takes the same plus `handlers`. */
export interface ProjectionOptions<T extends readonly TopicContract[] = readonly TopicContract[]> {
  /** The projection's name (letters, digits, `.`, `_`, `-`). Its consumer groups are `projection:<name>:v<version>`. */
  readonly name: string;
  /**
   * The read-model version this code builds. Bump it when the handlers change what they write:
   * the new version is rebuilt from the log into tables of its own while the active one keeps
   * serving, then swapped in atomically.
   */
  readonly version: number;
  readonly topics: T;
  /** Document tables the store manages (`ctx.documents(name)`): a JSON document per string id. */
  readonly documents?: readonly string[];
  /** Tables the `setup` hook creates per version (`ctx.table(name)`), for handlers writing SQL through `tx.db`. */
  readonly tables?: readonly string[];
  /** The schema of the read model and of the readers' views (Postgres). @default 'public' */
  readonly schema?: string;
  /** Creates a new version's `tables`; runs once per version, in the transaction that registers it. */
  readonly setup?: (ctx: ProjectionSetupContext<any>) => Promise<void> | void;
  /**
   * When this version is not active yet, the first client that starts it rebuilds it (one at a
   * time across processes), then serves it live. With `false`, clients wait for an explicit
   * `annals.projections.rebuild(name)`. @default true
   */
  readonly autoRebuild?: boolean;
  /** Records per transaction during a rebuild (each commits its writes with its checkpoint). @default 10000 */
  readonly batchSize?: number;
  /**
   * Partitions replayed at once during a rebuild. More overlaps the database's work with this
   * process's, at the cost of memory (each holds about two batches of records) and connections. @default 1
   */
  readonly rebuildConcurrency?: number;
  readonly consumer?: ProjectionConsumerOptions;
}

export interface ProjectionDefinitionInput<T extends readonly TopicContract[] = readonly TopicContract[]> extends ProjectionOptions<T> {
  readonly handlers: readonly HandlerEntry<EventsOfTopics<T>, ProjectionContext<any>>[];
}

/** A validated, frozen projection. Made by {@link defineProjection} or from a decorated instance. */
export interface ProjectionDefinition {
  readonly kind: 'annals.projection';
  readonly name: string;
  readonly version: number;
  readonly topics: readonly TopicContract[];
  readonly documents: readonly string[];
  readonly tables: readonly string[];
  readonly schema: string;
  readonly setup: ((ctx: ProjectionSetupContext<any>) => Promise<void> | void) | undefined;
  readonly autoRebuild: boolean;
  readonly batchSize: number;
  readonly rebuildConcurrency: number;
  readonly consumer: ProjectionConsumerOptions;
  readonly handlers: ReadonlyMap<string, ResolvedHandler>;
}

const PROJECTION_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/;
const TABLE_NAME = /^[a-z_][a-z0-9_]{0,47}$/;
const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

function fail(message: string): never {
  throw new RegistrationError(message);
}

function checkTopics(owner: string, topics: unknown): readonly TopicContract[] {
  if (!Array.isArray(topics) || topics.length === 0) fail(`${owner} needs topics: [...] with at least one defineTopic(...) contract.`);
  topics.forEach((t, i) => {
    if (!isTopicContract(t)) {
      fail(`${owner}: topics[${i}] is ${t === undefined ? 'undefined (an import cycle?)' : 'not a defineTopic(...) contract'}; subscribers and projections consume typed topics.`);
    }
  });
  return Object.freeze([...topics]);
}

/** Checks handlers against the topics: a contract each, carried by a topic, one handler per event type. */
export function resolveHandlers(owner: string, topics: readonly TopicContract[], entries: readonly unknown[]): ReadonlyMap<string, ResolvedHandler> {
  if (!Array.isArray(entries) || entries.length === 0) fail(`${owner} has no handlers: add on(Event, handler) entries (or @On(Event) methods).`);
  const byType = new Map<string, ResolvedHandler>();
  entries.forEach((raw, i) => {
    const entry = raw as Partial<HandlerEntry> | undefined;
    if (!entry || entry.kind !== 'annals.handler' || typeof entry.handle !== 'function') {
      fail(`${owner}: handlers[${i}] is not an on(Event, handler) entry.`);
    }
    const label = entry.label ?? `${owner} handlers[${i}]`;
    const event = entry.event;
    if (!isEventContract(event)) {
      fail(
        event === undefined
          ? `${label} has no event contract: name it, as in @On(OrderCreated) or on(OrderCreated, fn) (undefined here often means an import cycle).`
          : `${label}: its event is not a defineEvent(...) contract.`,
      );
    }
    const carriers = topics.filter((t) => t.eventByType(event.type) !== undefined);
    if (carriers.length === 0) {
      fail(`${label} handles "${event.type}", which none of its topics (${topics.map((t) => t.name).join(', ')}) carries: add the event to a topic's events, or the topic to topics.`);
    }
    for (const t of carriers) {
      if (t.eventByType(event.type) !== event) {
        fail(`${label} handles a contract of "${event.type}" that is not the one topic "${t.name}" carries (two defineEvent calls for one type?): use the topic's contract.`);
      }
    }
    const previous = byType.get(event.type);
    if (previous) fail(`${previous.label} and ${label} both handle "${event.type}": one handler per event type.`);
    byType.set(event.type, Object.freeze({ event, label, handle: entry.handle as ResolvedHandler['handle'] }));
  });
  return byType;
}

function positiveInt(owner: string, name: string, value: unknown, fallback: number): number {
  const v = value ?? fallback;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1) fail(`${owner}: ${name} must be a positive integer, got ${String(value)}.`);
  return v;
}

/** @internal Builds a subscriber definition; `owner` names it in errors. */
export function buildSubscriber(owner: string, options: SubscriberOptions, entries: readonly unknown[]): SubscriberDefinition {
  if (!options || typeof options.groupId !== 'string' || options.groupId.length === 0) fail(`${owner} needs a non-empty groupId.`);
  const topics = checkTopics(owner, options.topics);
  const handlers = resolveHandlers(owner, topics, entries);
  const { groupId, topics: _t, fromBeginning, partitionsConsumedConcurrently, name, ...consumer } = options;
  return Object.freeze({
    kind: 'annals.subscriber' as const,
    name: name ?? groupId,
    groupId,
    topics,
    fromBeginning: fromBeginning ?? false,
    partitionsConsumedConcurrently: positiveInt(owner, 'partitionsConsumedConcurrently', partitionsConsumedConcurrently, 1),
    consumer: Object.freeze({ ...consumer, groupId }),
    handlers,
  });
}

/** @internal Builds a projection definition; `owner` names it in errors. */
export function buildProjection(owner: string, options: ProjectionOptions, entries: readonly unknown[]): ProjectionDefinition {
  if (!options || typeof options.name !== 'string' || !PROJECTION_NAME.test(options.name)) {
    fail(`${owner}: projection name ${JSON.stringify(options?.name)} is not valid: use 1–100 letters, digits, '.', '_' or '-'.`);
  }
  const version = options.version;
  if (typeof version !== 'number' || !Number.isSafeInteger(version) || version < 1 || version > 2_147_483_647) {
    fail(`${owner}: projection "${options.name}" needs version: a positive integer (bump it to rebuild), got ${String(version)}.`);
  }
  const topics = checkTopics(owner, options.topics);
  const handlers = resolveHandlers(owner, topics, entries);
  const documents = [...(options.documents ?? [])];
  const tables = [...(options.tables ?? [])];
  const seen = new Set<string>();
  for (const t of [...documents, ...tables]) {
    if (typeof t !== 'string' || !TABLE_NAME.test(t)) fail(`${owner}: read-model table name ${JSON.stringify(t)} is not valid: use lowercase letters, digits and '_' (at most 48).`);
    if (seen.has(t)) fail(`${owner}: read-model table "${t}" is declared twice.`);
    seen.add(t);
  }
  const schema = options.schema ?? 'public';
  if (!SCHEMA_NAME.test(schema)) fail(`${owner}: schema ${JSON.stringify(schema)} is not valid: use lowercase letters, digits and '_'.`);
  if (options.setup !== undefined && typeof options.setup !== 'function') fail(`${owner}: setup must be a function.`);
  if (options.setup === undefined && tables.length > 0) {
    // Nothing would create them: handlers would fail on the first write of every new version.
    fail(`${owner}: projection "${options.name}" declares tables (${tables.join(', ')}) but no setup hook to create them per version.`);
  }
  return Object.freeze({
    kind: 'annals.projection' as const,
    name: options.name,
    version,
    topics,
    documents: Object.freeze(documents),
    tables: Object.freeze(tables),
    schema,
    setup: options.setup,
    autoRebuild: options.autoRebuild ?? true,
    batchSize: positiveInt(owner, 'batchSize', options.batchSize, 10_000),
    rebuildConcurrency: positiveInt(owner, 'rebuildConcurrency', options.rebuildConcurrency, 1),
    consumer: Object.freeze({ ...(options.consumer ?? {}) }),
    handlers,
  });
}

/**
 * Defines a subscriber: a consumer group whose typed handlers run exactly once per event when they
 * write through `tx`. The plain-function twin of `@Subscriber` + `@On`.
 *
 * @example
 * ```ts
 * const payments = defineSubscriber({
 *   groupId: 'payment-service',
 *   topics: [orders],
 *   fromBeginning: true,
 *   handlers: [on(OrderCreated, async (order, ctx) => ctx.publish(payments, PaymentTaken, { orderId: order.orderId }))],
 * });
 * annals.register(payments);
 * await annals.start();
 * ```
 */
export function defineSubscriber<const T extends readonly TopicContract[]>(input: SubscriberDefinitionInput<T>): SubscriberDefinition {
  const { handlers, ...options } = input ?? ({} as SubscriberDefinitionInput<T>);
  return buildSubscriber(`subscriber ${JSON.stringify(options.name ?? options.groupId)}`, options, handlers ?? []);
}

/**
 * Defines a projection: a read model kept exactly once from topics, versioned, and rebuilt by
 * replaying the log. The plain-function twin of `@Projection` + `@On`.
 *
 * @example
 * ```ts
 * const orderTotals = defineProjection({
 *   name: 'order-totals',
 *   version: 1,
 *   topics: [orders],
 *   documents: ['order_totals'],
 *   handlers: [
 *     on(OrderCreated, (order, ctx: ProjectionContext) =>
 *       ctx.documents<{ cents: number }>('order_totals').update(order.customerId, (t) => ({ cents: (t?.cents ?? 0) + order.totalCents }))),
 *   ],
 * });
 * ```
 */
export function defineProjection<const T extends readonly TopicContract[]>(input: ProjectionDefinitionInput<T>): ProjectionDefinition {
  const { handlers, ...options } = input ?? ({} as ProjectionDefinitionInput<T>);
  return buildProjection(`projection ${JSON.stringify(options.name)}`, options, handlers ?? []);
}

export function isSubscriberDefinition(value: unknown): value is SubscriberDefinition {
  return typeof value === 'object' && value !== null && (value as SubscriberDefinition).kind === 'annals.subscriber';
}

export function isProjectionDefinition(value: unknown): value is ProjectionDefinition {
  return typeof value === 'object' && value !== null && (value as ProjectionDefinition).kind === 'annals.projection';
}
