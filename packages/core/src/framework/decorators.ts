/**
 * Decorators (legacy, with `emitDecoratorMetadata`): sugar over `definitions.ts`. They only record
 * what they declare; `definitionOf(instance)` turns the record into the same definition the plain
 * functions build, so every check — and every error naming `Class.method` — is shared.
 *
 * `@On(Contract)` names the event. `@On()` without an argument takes it from the method's first
 * parameter type (`design:paramtypes`), which only works when that type is a runtime value that is
 * an event contract — a class made with `EventClass(...)`. A type alias (`EventOf<typeof X>`) is
 * erased to `Object` at run time, so `@On()` on such a method is refused at registration.
 */
import 'reflect-metadata';
import { isEventContract, type EventContract, type EventOf } from '../contracts/event.js';
import type { TopicContract } from '../contracts/topic.js';
import { RegistrationError } from '../errors.js';
import {
  buildProjection,
  buildSubscriber,
  on,
  type HandlerEntry,
  type ProjectionDefinition,
  type ProjectionOptions,
  type SubscriberDefinition,
  type SubscriberOptions,
} from './definitions.js';

const SUBSCRIBER = Symbol.for('annals:subscriber');
const PROJECTION = Symbol.for('annals:projection');
const HANDLERS = Symbol.for('annals:handlers');

interface HandlerMark {
  readonly method: string | symbol;
  /** The contract named in `@On(...)`; `undefined` when `@On()` had no argument (or got undefined). */
  readonly event: unknown;
  readonly explicit: boolean;
  /** `design:paramtypes[0]`, when the transpiler emitted it. */
  readonly paramType: unknown;
}

type AnyClass = abstract new (...args: any[]) => object;

/**
 * Checks that a handler method's first parameter accepts the payload (strictly: methods are
 * otherwise compared bivariantly, which would let a narrower payload type through).
 */
export type AcceptsPayload<M extends (...args: any[]) => unknown, P> = Parameters<M> extends []
  ? unknown
  : [P] extends [Parameters<M>[0]]
    ? unknown
    : { readonly 'the handler parameter does not accept the latest payload of the event': P };

const decorated: AnyClass[] = [];

/**
 * Marks a class as a subscriber: a consumer group whose `@On` methods handle events.
 *
 * @example
 * ```ts
 * @Subscriber({ groupId: 'payment-service', topics: [orders], fromBeginning: true })
 * class Payments {
 *   @On(OrderCreated)
 *   async charge(order: EventOf<typeof OrderCreated>, { tx }: HandlerContext<Kysely<DB>>) { … }
 * }
 * annals.register(new Payments());
 * ```
 */
export function Subscriber<const T extends readonly TopicContract[]>(options: SubscriberOptions<T>) {
  return <C extends AnyClass>(target: C): void => {
    Reflect.defineMetadata(SUBSCRIBER, options, target);
    decorated.push(target);
  };
}

/**
 * Marks a class as a projection: a versioned read model kept by its `@On` methods.
 *
 * @example
 * ```ts
 * @Projection({ name: 'order-totals', version: 2, topics: [orders], documents: ['order_totals'] })
 * class OrderTotals {
 *   @On(OrderCreated)
 *   created(order: EventOf<typeof OrderCreated>, ctx: ProjectionContext) {
 *     ctx.documents<Totals>('order_totals').update(order.customerId, (t) => ({ cents: (t?.cents ?? 0) + order.totalCents }));
 *   }
 * }
 * ```
 */
export function Projection<const T extends readonly TopicContract[]>(options: ProjectionOptions<T>) {
  return <C extends AnyClass>(target: C): void => {
    Reflect.defineMetadata(PROJECTION, options, target);
    decorated.push(target);
  };
}

/**
 * Marks a method as the handler of one event. The method receives the payload of the contract's
 * latest version; a method whose first parameter cannot take that payload does not compile.
 */
export function On<C extends EventContract<string, any>>(
  event: C,
): <M extends (...args: any[]) => unknown>(target: object, method: string | symbol, descriptor: TypedPropertyDescriptor<M> & AcceptsPayload<M, EventOf<C>>) => void;
/** Marks a method as a handler of the event class its first parameter is typed with (see `EventClass`). */
export function On(): (target: object, method: string | symbol, descriptor: PropertyDescriptor) => void;
export function On(...args: unknown[]) {
  const explicit = args.length > 0;
  return (target: object, method: string | symbol, _descriptor: PropertyDescriptor): void => {
    const paramTypes = Reflect.getMetadata('design:paramtypes', target, method) as unknown[] | undefined;
    const own = (Reflect.getOwnMetadata(HANDLERS, target) as HandlerMark[] | undefined) ?? [...((Reflect.getMetadata(HANDLERS, target) as HandlerMark[] | undefined) ?? [])];
    const mark: HandlerMark = { method, event: args[0], explicit, paramType: paramTypes?.[0] };
    // A subclass re-declaring a method's handler replaces the inherited one.
    const at = own.findIndex((m) => m.method === method);
    if (at >= 0) own.splice(at, 1, mark);
    else own.push(mark);
    Reflect.defineMetadata(HANDLERS, own, target);
  };
}

/** The classes decorated with `@Subscriber` or `@Projection` so far, in load order: a hook for DI containers. */
export function decoratedClasses(): readonly AnyClass[] {
  return [...decorated];
}

/** True when `value` is a class decorated with `@Subscriber` or `@Projection`. */
export function isDecoratedClass(value: unknown): value is AnyClass {
  return typeof value === 'function' && (Reflect.hasMetadata(SUBSCRIBER, value) || Reflect.hasMetadata(PROJECTION, value));
}

function handlerEntries(className: string, instance: object, marks: readonly HandlerMark[]): HandlerEntry[] {
  return marks.map((mark) => {
    const label = `${className}.${String(mark.method)}`;
    const fn = (instance as Record<string | symbol, unknown>)[mark.method];
    if (typeof fn !== 'function') throw new RegistrationError(`${label} is marked @On but is not a method of the instance.`);
    let event = mark.event;
    if (!mark.explicit) {
      if (!isEventContract(mark.paramType)) {
        throw new RegistrationError(
          mark.paramType === undefined
            ? `${label}: @On() found no parameter type (design:paramtypes); name the event, as in @On(OrderCreated), or turn on emitDecoratorMetadata.`
            : `${label}: @On() without an event needs the first parameter typed with an event class (EventClass(...)); ` +
                `its type is ${(mark.paramType as { name?: string }).name ?? 'not a class'} at run time. Name the event: @On(OrderCreated).`,
        );
      }
      event = mark.paramType;
    }
    return on(event as EventContract<string, any>, (fn as (...a: unknown[]) => unknown).bind(instance), label);
  });
}

/**
 * The definition a decorated instance declares. Throws `RegistrationError` naming the class (and
 * method) when the class is not decorated, is decorated twice, or its handlers are wrong.
 */
export function definitionOf(instance: object): SubscriberDefinition | ProjectionDefinition {
  const ctor = (instance as { constructor?: AnyClass }).constructor;
  const className = ctor?.name || 'anonymous class';
  const marks = (Reflect.getMetadata(HANDLERS, Object.getPrototypeOf(instance) as object) as HandlerMark[] | undefined) ?? [];
  const subscriber = ctor ? (Reflect.getMetadata(SUBSCRIBER, ctor) as SubscriberOptions | undefined) : undefined;
  const projection = ctor ? (Reflect.getMetadata(PROJECTION, ctor) as ProjectionOptions | undefined) : undefined;
  if (subscriber && projection) throw new RegistrationError(`${className} is decorated with both @Subscriber and @Projection: choose one.`);
  if (!subscriber && !projection) {
    throw new RegistrationError(
      marks.length > 0
        ? `${className} has @On handlers (${marks.map((m) => `${className}.${String(m.method)}`).join(', ')}) but no @Subscriber(...) or @Projection(...) on the class.`
        : `${className} cannot be registered: decorate it with @Subscriber(...) or @Projection(...), or register a defineSubscriber/defineProjection definition.`,
    );
  }
  const entries = handlerEntries(className, instance, marks);
  if (subscriber) return buildSubscriber(className, { name: className, ...subscriber }, entries);
  return buildProjection(className, projection!, entries);
}
