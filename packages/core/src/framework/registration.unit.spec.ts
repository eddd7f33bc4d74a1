/**
 * Declaring subscribers and projections: types (handlers get the latest payload; wrong payload
 * types do not compile — checked by `npm run typecheck` through tsconfig.test.json), the
 * plain-function and decorator forms building the same definition, and misuse refused with errors
 * naming the class and method.
 */
import { describe, expect, expectTypeOf, it } from 'vitest';
import { z } from 'zod';
import {
  Annals,
  EventClass,
  On,
  Projection,
  RegistrationError,
  Subscriber,
  defineEvent,
  defineProjection,
  defineSubscriber,
  defineTopic,
  definitionOf,
  on,
  type EventOf,
  type HandlerContext,
  type ProjectionContext,
  type SubscriberDefinition,
} from '@annals/core';
import { InMemoryLogStorage } from '@annals/testing';

const OrderCreated = defineEvent({
  type: 'order.created',
  versions: {
    1: z.object({ orderId: z.string(), total: z.number() }),
    2: z.object({ orderId: z.string(), totalCents: z.number().int(), currency: z.string() }),
  },
  upcast: { 1: (v1) => ({ orderId: v1.orderId, totalCents: Math.round(v1.total * 100), currency: 'EUR' }) },
});
const OrderPaid = defineEvent({ type: 'order.paid', versions: { 1: z.object({ orderId: z.string() }) } });
const OrderShipped = defineEvent({ type: 'order.shipped', versions: { 1: z.object({ orderId: z.string(), carrier: z.string() }) } });
const orders = defineTopic({ name: 'orders', partitions: 3, events: [OrderCreated, OrderPaid], key: (e) => e.orderId });
const shipments = defineTopic({ name: 'shipments', events: [OrderShipped] });

type Created = EventOf<typeof OrderCreated>;

const annals = () => new Annals({ clientId: 'registration', storage: new InMemoryLogStorage() });

describe('types', () => {
  it('on() hands the handler the latest payload and the handler context', () => {
    defineSubscriber({
      groupId: 'g',
      topics: [orders],
      handlers: [
        on(OrderCreated, (order, ctx) => {
          expectTypeOf(order).toEqualTypeOf<Created>();
          expectTypeOf(order).toEqualTypeOf<{ orderId: string; totalCents: number; currency: string }>();
          expectTypeOf(ctx.metadata.storedVersion).toEqualTypeOf<number>();
          expectTypeOf(ctx.signal).toEqualTypeOf<AbortSignal>();
        }),
      ],
    });
  });

  it('a projection handler gets the projection context without annotating it', () => {
    defineProjection({
      name: 'p',
      version: 1,
      topics: [orders],
      documents: ['totals'],
      handlers: [
        on(OrderCreated, (order, ctx) => {
          expectTypeOf(ctx).toEqualTypeOf<ProjectionContext<any>>();
          ctx.documents<{ cents: number }>('totals').update(order.orderId, (t) => ({ cents: (t?.cents ?? 0) + order.totalCents }));
        }),
      ],
    });
  });

  it('wrong payload types do not compile', () => {
    // A handler written for version 1's shape.
    // @ts-expect-error — { total: number } is not the latest payload
    on(OrderCreated, (order: { orderId: string; total: number }) => order.total);
    on(OrderCreated, (order) => {
      // @ts-expect-error — version 1's field is gone from the latest payload
      void order.total;
    });
    class Wrong {
      // @ts-expect-error — the method's parameter cannot take the latest payload
      @On(OrderCreated) handle(order: { orderId: number }) {
        return order;
      }
      // @ts-expect-error — nor a payload type that asks for more than the event has
      @On(OrderCreated) more(order: Created & { discount: number }) {
        return order;
      }
      @On(OrderCreated) exact(order: Created) {
        return order;
      }
      @On(OrderCreated) fewer(order: { orderId: string }) {
        return order;
      }
      @On(OrderCreated) none() {}
    }
    void Wrong;
  });

  it('an event class is a contract whose instances are the latest payload', () => {
    class Refunded extends EventClass({ type: 'order.refunded', versions: { 1: z.object({ orderId: z.string(), cents: z.number() }) } }) {}
    expectTypeOf<EventOf<typeof Refunded>>().toEqualTypeOf<{ orderId: string; cents: number }>();
    expectTypeOf(new Refunded({ orderId: 'o', cents: 1 })).toMatchTypeOf<{ orderId: string; cents: number }>();
    const refunds = defineTopic({ name: 'refunds', events: [Refunded] });
    on(Refunded, (refund) => expectTypeOf(refund).toEqualTypeOf<{ orderId: string; cents: number }>());
    class Handler {
      @On() refunded(_refund: Refunded) {}
      // @ts-expect-error — not the payload of Refunded
      @On(Refunded) wrong(_refund: { orderId: number }) {}
    }
    void Handler;
    void refunds;
  });

  it('typed publishes in the context refuse a wrong payload', () => {
    on(OrderPaid, async (_paid, ctx: HandlerContext) => {
      await ctx.publish(shipments, OrderShipped, { orderId: 'o-1', carrier: 'dhl' });
      // @ts-expect-error — carrier is missing
      await ctx.publish(shipments, OrderShipped, { orderId: 'o-1' });
    });
  });

  it('a handler for an event the topics cannot carry does not compile in the plain form', () => {
    expect(() =>
      defineSubscriber({
        groupId: 'g',
        topics: [orders],
        // @ts-expect-error — orders does not carry order.shipped (and it is refused at run time too)
        handlers: [on(OrderShipped, () => {})],
      }),
    ).toThrow(RegistrationError);
  });
});

describe('plain functions and decorators build the same definition', () => {
  it('a decorated class and defineSubscriber agree', () => {
    @Subscriber({ groupId: 'payments', topics: [orders], fromBeginning: true })
    class Payments {
      @On(OrderCreated)
      charge(order: Created, _ctx: HandlerContext) {
        return order.totalCents;
      }
      @On(OrderPaid)
      paid() {}
    }
    const decorated = definitionOf(new Payments()) as SubscriberDefinition;
    const plain = defineSubscriber({ groupId: 'payments', topics: [orders], fromBeginning: true, handlers: [on(OrderCreated, () => {}), on(OrderPaid, () => {})] });
    expect(decorated.kind).toBe('annals.subscriber');
    expect(decorated.name).toBe('Payments');
    expect([...decorated.handlers.keys()]).toEqual([...plain.handlers.keys()]);
    expect(decorated.handlers.get('order.created')!.label).toBe('Payments.charge');
    expect({ ...decorated, handlers: undefined, name: undefined }).toEqual({ ...plain, handlers: undefined, name: undefined });
  });

  it('a subclass inherits handlers and may replace one', () => {
    @Subscriber({ groupId: 'base', topics: [orders] })
    class Base {
      @On(OrderCreated) created() {}
    }
    @Subscriber({ groupId: 'child', topics: [orders] })
    class Child extends Base {
      @On(OrderPaid) paid() {}
    }
    const d = definitionOf(new Child()) as SubscriberDefinition;
    expect([...d.handlers.values()].map((h) => h.label)).toEqual(['Child.created', 'Child.paid']);
    expect((definitionOf(new Base()) as SubscriberDefinition).handlers.size).toBe(1);
  });

  it('registers classes through a resolver (a DI container hook)', () => {
    @Projection({ name: 'by-container', version: 1, topics: [orders], documents: ['t'] })
    class ByContainer {
      constructor(readonly dependency: string) {}
      @On(OrderCreated) created() {}
    }
    const a = annals();
    const made: unknown[] = [];
    const registration = a.register(ByContainer, { resolve: (cls) => (made.push(cls), new ByContainer('injected')) });
    expect(made).toEqual([ByContainer]);
    expect(registration).toMatchObject({ kind: 'projection', name: 'by-container' });
  });
});

describe('misuse is refused at registration, naming the class and method', () => {
  const refused = (fn: () => unknown) => {
    try {
      fn();
    } catch (error) {
      expect(error).toBeInstanceOf(RegistrationError);
      expect((error as RegistrationError).code).toBe('INVALID_REGISTRATION');
      return (error as Error).message;
    }
    throw new Error('expected a RegistrationError');
  };

  it('a method for an event the topics cannot carry', () => {
    @Subscriber({ groupId: 'g', topics: [orders] })
    class Shipping {
      @On(OrderShipped) ship() {}
    }
    expect(refused(() => annals().register(new Shipping()))).toMatch(/^Shipping\.ship handles "order\.shipped", which none of its topics \(orders\) carries/);
  });

  it('two handlers for one event in one class', () => {
    @Subscriber({ groupId: 'g', topics: [orders] })
    class Twice {
      @On(OrderCreated) first() {}
      @On(OrderCreated) second() {}
    }
    expect(refused(() => annals().register(new Twice()))).toMatch(/^Twice\.first and Twice\.second both handle "order\.created"/);
  });

  it('a missing contract (undefined, as an import cycle leaves it)', () => {
    const missing = undefined as unknown as typeof OrderCreated;
    @Subscriber({ groupId: 'g', topics: [orders] })
    class Cyclic {
      @On(missing) handle() {}
    }
    expect(refused(() => annals().register(new Cyclic()))).toMatch(/^Cyclic\.handle has no event contract/);
  });

  it('@On() without a contract, on a parameter typed with a type alias', () => {
    @Subscriber({ groupId: 'g', topics: [orders] })
    class Implicit {
      @On() handle(_order: Created) {}
    }
    expect(refused(() => annals().register(new Implicit()))).toMatch(/^Implicit\.handle: @On\(\) without an event needs the first parameter typed with an event class/);
  });

  it('handlers without a class decorator, a class that is not decorated, both decorators', () => {
    class Forgot {
      @On(OrderCreated) handle() {}
    }
    expect(refused(() => annals().register(new Forgot()))).toMatch(/^Forgot has @On handlers \(Forgot\.handle\) but no @Subscriber/);
    class Plain {}
    expect(refused(() => annals().register(Plain))).toMatch(/Plain cannot be registered/);
    @Subscriber({ groupId: 'g', topics: [orders] })
    @Projection({ name: 'p', version: 1, topics: [orders] })
    class Both {
      @On(OrderCreated) handle() {}
    }
    expect(refused(() => annals().register(new Both()))).toMatch(/^Both is decorated with both/);
  });

  it("a contract that is not the topic's, no handlers, no topics, bad projection options", () => {
    const Impostor = defineEvent({ type: 'order.created', versions: { 1: z.object({ orderId: z.string() }) } });
    expect(refused(() => defineSubscriber({ groupId: 'g', topics: [orders], handlers: [on(Impostor as unknown as typeof OrderCreated, () => {})] }))).toMatch(
      /handles a contract of "order\.created" that is not the one topic "orders" carries/,
    );
    @Subscriber({ groupId: 'g', topics: [orders] })
    class Empty {}
    expect(refused(() => annals().register(new Empty()))).toMatch(/^Empty has no handlers/);
    expect(refused(() => defineSubscriber({ groupId: 'g', topics: [], handlers: [] }))).toMatch(/needs topics/);
    const base = { name: 'p', version: 1, topics: [orders], handlers: [on(OrderCreated, () => {})] } as const;
    expect(refused(() => defineProjection({ ...base, version: 0 }))).toMatch(/needs version: a positive integer/);
    expect(refused(() => defineProjection({ ...base, name: 'no spaces' }))).toMatch(/projection name "no spaces" is not valid/);
    expect(refused(() => defineProjection({ ...base, documents: ['Totals'] }))).toMatch(/read-model table name "Totals" is not valid/);
    expect(refused(() => defineProjection({ ...base, tables: ['totals'] }))).toMatch(/declares tables \(totals\) but no setup hook/);
  });

  it('the same projection twice in one client', () => {
    const p = defineProjection({ name: 'twice', version: 1, topics: [orders], handlers: [on(OrderCreated, () => {})] });
    const a = annals();
    a.register(p);
    expect(refused(() => a.register(p))).toMatch(/"twice" is already registered/);
  });
});
