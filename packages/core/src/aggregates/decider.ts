/**
 * Deciders: an aggregate as three pure functions, the shape event-sourcing users know (Jérémie
 * Chassaing's decider; Emmett, Marten, Axon's command handlers):
 *
 * - `initialState()` — the state of a stream with no events;
 * - `decide(command, state)` — the events a command produces (an empty list: nothing happens), or
 *   a thrown error (the command is refused);
 * - `evolve(state, event)` — the state after one more event.
 *
 * Events are `{ type, payload }` pairs typed by the decider's event contracts: `decide` returns
 * payloads as publishers give them (`EventInputOf`), `evolve` receives them as readers get them
 * (validated and upcast to the latest version, `EventOf`), and `type` narrows the union in a
 * `switch`. Everything else — loading, snapshots, appending with the expected version, retrying
 * on conflict — is done by `annals.aggregates`.
 */
import type { EventContract, EventInputOf, EventOf } from '../contracts/event.js';
import { isEventContract } from '../contracts/event.js';
import type { TopicContract } from '../contracts/topic.js';
import { InvalidOptionsError } from '../errors.js';
import type { StoredHeaders } from '../storage/log-storage.js';

/** Any event contract. */
export type AnyEventContract = EventContract<string, any>;

/** An event to append: a type the contracts carry and a payload its latest version accepts. */
export type NewEvent<C extends AnyEventContract = AnyEventContract> =
  C extends EventContract<infer T, any> ? { readonly type: T; readonly payload: EventInputOf<C> } : never;

/** An event as `evolve` gets it: its type, and its payload validated and upcast to the latest version. */
export type EventData<C extends AnyEventContract = AnyEventContract> =
  C extends EventContract<infer T, any> ? { readonly type: T; readonly payload: EventOf<C> } : never;

/** An event loaded from a stream: {@link EventData} and where and how it was stored. */
export type StreamEvent<C extends AnyEventContract = AnyEventContract> =
  C extends EventContract<infer T, any>
    ? {
        readonly type: T;
        readonly payload: EventOf<C>;
        /** The stream's version after this event: 1 for the first. */
        readonly version: number;
        readonly topic: string;
        readonly partition: number;
        readonly offset: bigint;
        /** Milliseconds since the epoch. */
        readonly timestamp: number;
        /** The schema version it was written with (the payload has been upcast from it). */
        readonly storedVersion: number;
        readonly headers: StoredHeaders;
      }
    : never;

// The same unions as NewEvent / EventData, mapped over a tuple of contracts: written this way, the
// literal `type` of an event returned by `decide` is kept while defineDecider infers its types
// (a conditional type distributed over a union still being inferred widens it to string).
type NewEventOf<E extends readonly AnyEventContract[]> = {
  [K in keyof E]: E[K] extends EventContract<infer T, any> ? { readonly type: T; readonly payload: EventInputOf<E[K]> } : never;
}[number];
type EventDataOf<E extends readonly AnyEventContract[]> = {
  [K in keyof E]: E[K] extends EventContract<infer T, any> ? { readonly type: T; readonly payload: EventOf<E[K]> } : never;
}[number];

/** The event contracts of a topic contract, as a union. */
export type EventsOfTopic<T extends TopicContract> = T['events'][number];

/** Snapshot settings of a decider. */
export interface SnapshotPolicyInput<S> {
  /**
   * The snapshot schema version. Bump it whenever the state's shape (or `evolve`) changes:
   * snapshots of any other version are ignored, and a new one is taken at the next `handle`.
   */
  readonly version: number;
  /** Take a snapshot whenever a `handle` moves the stream past a multiple of this. @default 100 */
  readonly every?: number;
  /** The state as a value the client's codec can encode (msgpack by default: no class instances). @default the state itself */
  readonly serialize?: (state: S) => unknown;
  /** The state from what `serialize` returned. @default the value itself */
  readonly deserialize?: (value: unknown) => S;
}

export interface SnapshotPolicy<S> {
  readonly version: number;
  readonly every: number;
  readonly serialize: (state: S) => unknown;
  readonly deserialize: (value: unknown) => S;
}

/** What {@link defineDecider} takes. */
export interface DeciderInput<E extends readonly AnyEventContract[], S, Cmd> {
  /** The aggregate type, e.g. `order`: names its snapshots and appears in errors. */
  readonly name: string;
  /** The events its streams hold. A stream holding another event type cannot be loaded by it. */
  readonly events: E;
  /** The state of a stream with no events. Called once per load: return a fresh value. */
  initialState(): S;
  /** The events `command` produces in `state` (none: nothing to append). Throw to refuse the command. */
  decide(command: Cmd, state: S): readonly NewEventOf<E>[] | Promise<readonly NewEventOf<E>[]>;
  /** The state after `event`. Pure: no I/O, no clock, no randomness (it runs again on every load). */
  evolve(state: S, event: EventDataOf<E>): S;
  /** Snapshots: the state stored every `every` events, so loads read only the events after it. */
  readonly snapshots?: SnapshotPolicyInput<S>;
}

/** A decider. Made by {@link defineDecider}. */
export interface Decider<C extends AnyEventContract = AnyEventContract, S = any, Cmd = any> {
  readonly kind: 'annals.decider';
  readonly name: string;
  readonly events: readonly C[];
  initialState(): S;
  decide(command: Cmd, state: S): readonly NewEvent<C>[] | Promise<readonly NewEvent<C>[]>;
  evolve(state: S, event: EventData<C>): S;
  readonly snapshots: SnapshotPolicy<S> | undefined;
  /** The contract of an event type this decider knows, or undefined. */
  eventByType(type: string): C | undefined;
  /** Folds events over a state (by default the initial state). */
  fold(events: Iterable<EventData<C>>, state?: S): S;
}

/** The state type of a decider. */
export type StateOf<D> = D extends Decider<any, infer S, any> ? S : never;
/** The command type of a decider. */
export type CommandOf<D> = D extends Decider<any, any, infer Cmd> ? Cmd : never;
/** The event contracts of a decider, as a union. */
export type EventsOfDecider<D> = D extends Decider<infer C, any, any> ? C : never;

const NAME = /^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$/;

/**
 * Defines a decider: an aggregate's behaviour as `initialState`, `decide` and `evolve`.
 *
 * @example
 * ```ts
 * type OrderState = { status: 'none' | 'placed' | 'paid'; totalCents: number };
 * type OrderCommand = { type: 'place'; orderId: string; totalCents: number } | { type: 'pay'; orderId: string };
 *
 * const Order = defineDecider({
 *   name: 'order',
 *   events: [OrderPlaced, OrderPaid],
 *   initialState: (): OrderState => ({ status: 'none', totalCents: 0 }),
 *   decide(command: OrderCommand, state) {
 *     switch (command.type) {
 *       case 'place':
 *         if (state.status !== 'none') throw new Error('already placed');
 *         return [{ type: 'order.placed', payload: { orderId: command.orderId, totalCents: command.totalCents } }];
 *       case 'pay':
 *         return state.status === 'placed' ? [{ type: 'order.paid', payload: { orderId: command.orderId } }] : [];
 *     }
 *   },
 *   evolve(state, event) {
 *     switch (event.type) {
 *       case 'order.placed': return { status: 'placed', totalCents: event.payload.totalCents };
 *       case 'order.paid': return { ...state, status: 'paid' };
 *     }
 *   },
 *   snapshots: { version: 1, every: 100 },
 * });
 * await annals.aggregates.handle(Order, orders, 'o-1', { type: 'place', orderId: 'o-1', totalCents: 1250 });
 * ```
 */
export function defineDecider<const E extends readonly AnyEventContract[], S, Cmd>(input: DeciderInput<E, S, Cmd>): Decider<E[number], S, Cmd> {
  if (!input || typeof input !== 'object') throw new InvalidOptionsError('defineDecider({ name, events, initialState, decide, evolve }) needs an object.');
  const { name, events } = input;
  if (typeof name !== 'string' || !NAME.test(name)) {
    throw new InvalidOptionsError(
      `Decider name ${JSON.stringify(name)} is not valid: use 1–128 characters from letters, digits and . _ : / - (starting with a letter or digit).`,
    );
  }
  if (!Array.isArray(events) || events.length === 0) throw new InvalidOptionsError(`Decider "${name}" must list its events: events: [OrderPlaced, …].`);
  const byType = new Map<string, E[number]>();
  for (const e of events as readonly unknown[]) {
    if (!isEventContract(e)) throw new InvalidOptionsError(`Decider "${name}": every entry of events must come from defineEvent().`);
    if (byType.has(e.type)) throw new InvalidOptionsError(`Decider "${name}" lists event "${e.type}" twice.`);
    byType.set(e.type, e as E[number]);
  }
  for (const fn of ['initialState', 'decide', 'evolve'] as const) {
    if (typeof input[fn] !== 'function') throw new InvalidOptionsError(`Decider "${name}" needs a function ${fn}.`);
  }
  const snapshots = input.snapshots === undefined ? undefined : resolveSnapshots(name, input.snapshots);
  const initialState = () => input.initialState();
  const evolve = (state: S, event: EventData<E[number]>) => input.evolve(state, event);
  const decider: Decider<E[number], S, Cmd> = {
    kind: 'annals.decider',
    name,
    events,
    initialState,
    decide: (command, state) => input.decide(command, state),
    evolve,
    snapshots,
    eventByType: (type) => byType.get(type),
    fold(list, state = initialState()) {
      let s = state;
      for (const event of list) s = evolve(s, event);
      return s;
    },
  };
  return Object.freeze(decider);
}

function resolveSnapshots<S>(name: string, input: SnapshotPolicyInput<S>): SnapshotPolicy<S> {
  const every = input.every ?? 100;
  if (!Number.isSafeInteger(input.version) || input.version < 1) {
    throw new InvalidOptionsError(`Decider "${name}": snapshots.version must be an integer ≥ 1, got ${String(input.version)}.`);
  }
  if (!Number.isSafeInteger(every) || every < 1) throw new InvalidOptionsError(`Decider "${name}": snapshots.every must be an integer ≥ 1, got ${String(input.every)}.`);
  for (const fn of ['serialize', 'deserialize'] as const) {
    if (input[fn] !== undefined && typeof input[fn] !== 'function') throw new InvalidOptionsError(`Decider "${name}": snapshots.${fn} must be a function.`);
  }
  return Object.freeze({
    version: input.version,
    every,
    serialize: input.serialize ?? ((state: S) => state),
    deserialize: input.deserialize ?? ((value: unknown) => value as S),
  });
}

export function isDecider(value: unknown): value is Decider {
  return typeof value === 'object' && value !== null && (value as Decider).kind === 'annals.decider';
}
