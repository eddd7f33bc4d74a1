/**
 * Event contracts as classes: `class OrderCreated extends EventClass({ type, versions, upcast }) {}`
 * is a contract (the class itself: `defineTopic({ events: [OrderCreated] })`, `publish(orders,
 * OrderCreated, …)`) whose instances are its latest payload. That makes the payload type a runtime
 * value, so a handler can name its event by its parameter type alone — `@On() handle(e: OrderCreated)`
 * reads it from `design:paramtypes` — and handlers of a class contract receive instances of it
 * (methods the class declares work on them). Everything else is `defineEvent`.
 */
import { defineEvent, type EventContract, type EventDefinitionInput, type EventInputOf, type EventOf, type VersionMap } from './event.js';

/** The class `EventClass` returns: a contract (its static side) whose instances are the latest payload. */
export type EventClassType<T extends string, V extends VersionMap> = EventContract<T, V> & {
  new (payload: EventInputOf<EventContract<T, V>>): EventOf<EventContract<T, V>>;
  readonly prototype: EventOf<EventContract<T, V>>;
};

/**
 * Defines an event contract as a class to extend.
 *
 * @example
 * ```ts
 * class OrderCreated extends EventClass({
 *   type: 'order.created',
 *   versions: { 1: z.object({ orderId: z.string(), totalCents: z.number().int() }) },
 * }) {}
 *
 * @Subscriber({ groupId: 'billing', topics: [orders] })
 * class Billing {
 *   @On() bill(order: OrderCreated) { … } // the event is the parameter's class
 * }
 * ```
 */
export function EventClass<const T extends string, const V extends VersionMap>(definition: EventDefinitionInput<T, V>): EventClassType<T, V> {
  const contract = defineEvent(definition);
  // A plain constructor function: `new` validates and copies the payload onto the instance.
  const Event = function (this: object, payload: unknown) {
    Object.assign(this, contract.validate(payload));
  } as unknown as EventClassType<T, V>;
  for (const key of ['kind', 'type', 'latestVersion', 'versions', 'compatibility', 'hasUpcaster', 'schema', 'validate', 'upcast'] as const) {
    Object.defineProperty(Event, key, { value: contract[key], enumerable: true });
  }
  Object.defineProperty(Event, 'name', { value: `EventClass(${contract.type})` });
  return Event;
}

/** A payload of an event class as an instance of it (the prototype's methods available); other contracts' payloads as they are. */
export function asEventInstance(contract: EventContract, payload: unknown): unknown {
  if (typeof contract !== 'function' || typeof payload !== 'object' || payload === null) return payload;
  return Object.assign(Object.create((contract as unknown as { prototype: object }).prototype) as object, payload);
}
