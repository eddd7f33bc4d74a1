/**
 * Deciders: definition checks, folding, the given/when/then helper of `@annals/testing`, and the
 * types end to end (checked by `npm run typecheck`: `expectTypeOf` and `@ts-expect-error` lines
 * fail the build when the types drift).
 */
import { describe, expect, expectTypeOf, it } from 'vitest';
import { z } from 'zod';
import {
  Annals,
  InvalidOptionsError,
  SchemaValidationError,
  defineDecider,
  defineEvent,
  defineTopic,
  isDecider,
  type Decider,
  type EventData,
  type HandleResult,
  type LoadedStream,
  type NewEvent,
  type StateOf,
  type CommandOf,
  type StreamEvent,
} from '@annals/core';
import { DeciderSpecification, InMemoryLogStorage } from '@annals/testing';
import { CustomerNotified, Order, OrderPaid, OrderPlaced, OrderRuleError, OrderShipped, orders, type OrderCommand, type OrderState } from '../../test/fixtures/order-aggregate.js';

describe('defineDecider', () => {
  it('returns a frozen decider that folds events from its initial state', () => {
    expect(isDecider(Order)).toBe(true);
    expect(Object.isFrozen(Order)).toBe(true);
    expect(Order.name).toBe('order');
    expect(Order.eventByType('order.paid')).toBe(OrderPaid);
    expect(Order.eventByType('customer.notified')).toBeUndefined();
    const state = Order.fold([
      { type: 'order.placed', payload: { orderId: 'o-1', totalCents: 1000 } },
      { type: 'order.paid', payload: { orderId: 'o-1', amountCents: 400 } },
    ]);
    expect(state).toEqual({ status: 'placed', totalCents: 1000, paidCents: 400 });
    expect(Order.fold([{ type: 'order.paid', payload: { orderId: 'o-1', amountCents: 600 } }], state).status).toBe('paid');
    expect(Order.snapshots).toBeUndefined();
  });

  it('refuses a bad definition with InvalidOptionsError', () => {
    const base = { name: 'x', events: [OrderPlaced], initialState: () => 0, decide: () => [], evolve: (s: number) => s };
    const bad: Array<[string, unknown]> = [
      ['name', { ...base, name: '' }],
      ['name', { ...base, name: 'has space' }],
      ['events', { ...base, events: [] }],
      ['defineEvent', { ...base, events: [{ type: 'x' }] }],
      ['twice', { ...base, events: [OrderPlaced, OrderPlaced] }],
      ['decide', { ...base, decide: undefined }],
      ['snapshots.version', { ...base, snapshots: { version: 0 } }],
      ['snapshots.every', { ...base, snapshots: { version: 1, every: 0 } }],
      ['snapshots.serialize', { ...base, snapshots: { version: 1, serialize: 'no' } }],
    ];
    for (const [word, input] of bad) {
      expect(() => defineDecider(input as never), word).toThrow(InvalidOptionsError);
      expect(() => defineDecider(input as never), word).toThrow(new RegExp(word.replace('.', '\\.')));
    }
    const withSnapshots = defineDecider({ ...base, snapshots: { version: 2 } });
    expect(withSnapshots.snapshots).toMatchObject({ version: 2, every: 100 });
    expect(withSnapshots.snapshots!.serialize(5)).toBe(5);
  });
});

describe('DeciderSpecification (given/when/then)', () => {
  const spec = DeciderSpecification.for(Order);

  it('then: the decided events, payloads validated (defaults applied) on both sides', async () => {
    await spec.given([]).when({ type: 'place', orderId: 'o-1', totalCents: 1250 }).then([{ type: 'order.placed', payload: { orderId: 'o-1', totalCents: 1250 } }]);
    const paid = [
      { type: 'order.placed', payload: { orderId: 'o-1', totalCents: 1250 } },
      { type: 'order.paid', payload: { orderId: 'o-1', amountCents: 1250 } },
    ] as const;
    await spec.given(paid).when({ type: 'ship', orderId: 'o-1' }).then([{ type: 'order.shipped', payload: { orderId: 'o-1', carrier: 'post' } }]);
    await spec.given(paid).when({ type: 'ship', orderId: 'o-1' }).then([{ type: 'order.shipped', payload: { orderId: 'o-1' } }]);
  });

  it('thenNothingHappened, thenState, thenThrows (class, class + message, predicate)', async () => {
    const shipped = [
      { type: 'order.placed', payload: { orderId: 'o-1', totalCents: 100 } },
      { type: 'order.paid', payload: { orderId: 'o-1', amountCents: 100 } },
      { type: 'order.shipped', payload: { orderId: 'o-1' } },
    ] as const;
    await spec.given(shipped).when({ type: 'ship', orderId: 'o-1' }).thenNothingHappened();
    await spec
      .given([{ type: 'order.placed', payload: { orderId: 'o-1', totalCents: 1000 } }])
      .when({ type: 'pay', orderId: 'o-1', amountCents: 5000 })
      .thenState({ status: 'paid', totalCents: 1000, paidCents: 1000 });
    await spec.given([]).when({ type: 'pay', orderId: 'o-1', amountCents: 1 }).thenThrows(OrderRuleError);
    await spec.given([]).when({ type: 'pay', orderId: 'o-1', amountCents: 1 }).thenThrows(OrderRuleError, /is none, not placed/);
    await spec.given([]).when({ type: 'pay', orderId: 'o-1', amountCents: 1 }).thenThrows((e) => e instanceof OrderRuleError);
    await spec.given([]).when({ type: 'pay', orderId: 'o-1', amountCents: 1 }).thenThrows();
  });

  it('fails when the outcome differs, and refuses given events that are not the decider’s or break their schema', async () => {
    await expect(spec.given([]).when({ type: 'place', orderId: 'o-1', totalCents: 5 }).then([])).rejects.toThrow();
    await expect(spec.given([]).when({ type: 'place', orderId: 'o-1', totalCents: 5 }).thenThrows()).rejects.toThrow(/Expected decide to throw/);
    await expect(spec.given([]).when({ type: 'ship', orderId: 'o-1' }).then([])).rejects.toThrow(/it threw: OrderRuleError/);
    await expect(spec.given([]).when({ type: 'pay', orderId: 'o-1', amountCents: 1 }).thenThrows(SchemaValidationError)).rejects.toThrow();
    await expect(
      spec.given([{ type: 'customer.notified', payload: { orderId: 'o-1', text: 'hi' } } as never]).when({ type: 'place', orderId: 'o-1', totalCents: 1 }).then([]),
    ).rejects.toThrow(InvalidOptionsError);
    await expect(
      spec.given([{ type: 'order.placed', payload: { orderId: 'o-1', totalCents: -1 } }]).when({ type: 'ship', orderId: 'o-1' }).thenThrows(),
    ).rejects.toThrow(SchemaValidationError);
    // A decided payload the contract refuses fails the specification as the append would.
    const sloppy = defineDecider({
      name: 'sloppy',
      events: [OrderPaid],
      initialState: () => null,
      decide: (amountCents: number) => [{ type: 'order.paid', payload: { orderId: 'o', amountCents } }],
      evolve: (s) => s,
    });
    await expect(DeciderSpecification.for(sloppy).given([]).when(-5).then([])).rejects.toThrow(SchemaValidationError);
  });
});

describe('types', () => {
  it('infers events, state and command from the definition', () => {
    expectTypeOf(Order).toEqualTypeOf<Decider<typeof OrderPlaced | typeof OrderPaid | typeof OrderShipped, OrderState, OrderCommand>>();
    expectTypeOf<StateOf<typeof Order>>().toEqualTypeOf<OrderState>();
    expectTypeOf<CommandOf<typeof Order>>().toEqualTypeOf<OrderCommand>();
    // decide returns input payloads (carrier optional: it has a default); evolve gets outputs (carrier set).
    expectTypeOf<NewEvent<typeof OrderShipped>>().toEqualTypeOf<{ readonly type: 'order.shipped'; readonly payload: { orderId: string; carrier?: string | undefined } }>();
    expectTypeOf<EventData<typeof OrderShipped>>().toEqualTypeOf<{ readonly type: 'order.shipped'; readonly payload: { orderId: string; carrier: string } }>();
    expectTypeOf<Parameters<typeof Order.evolve>[1]>().toEqualTypeOf<EventData<typeof OrderPlaced> | EventData<typeof OrderPaid> | EventData<typeof OrderShipped>>();
  });

  it('narrows payloads by type, and rejects unknown event types and wrong payloads at compile time', () => {
    defineDecider({
      name: 'typed',
      events: [OrderPlaced, OrderPaid],
      initialState: () => 0,
      decide: (command: number) => [{ type: 'order.paid', payload: { orderId: 'o', amountCents: command } }],
      evolve(state, event) {
        if (event.type === 'order.placed') {
          expectTypeOf(event.payload).toEqualTypeOf<{ orderId: string; totalCents: number }>();
          return event.payload.totalCents;
        }
        expectTypeOf(event.payload).toEqualTypeOf<{ orderId: string; amountCents: number }>();
        // @ts-expect-error — narrowed: a paid event has no totalCents
        return state + event.payload.totalCents;
      },
    });
    defineDecider({
      name: 'unknown-type',
      events: [OrderPlaced, OrderPaid],
      initialState: () => 0,
      // @ts-expect-error — order.shipped is not an event of this decider
      decide: (command: number) => [{ type: 'order.shipped', payload: { orderId: String(command) } }],
      evolve: (state) => state,
    });
    defineDecider({
      name: 'wrong-payload',
      events: [OrderPlaced, OrderPaid],
      initialState: () => 0,
      // @ts-expect-error — totalCents must be a number
      decide: (command: number) => [{ type: 'order.placed', payload: { orderId: String(command), totalCents: 'ten' } }],
      evolve: (state) => state,
    });
    expect(true).toBe(true);
  });

  it('types annals.aggregates by the topic and the decider', async () => {
    const annals = new Annals({ clientId: 'types', storage: new InMemoryLogStorage() });
    const elsewhere = defineTopic({ name: 'elsewhere', events: [OrderPlaced, CustomerNotified], key: (e) => e.orderId });
    // Only compiled: these calls never run.
    const compileOnly = async () => {
      const loaded = await annals.aggregates.load(orders, 'o-1');
      expectTypeOf(loaded).toEqualTypeOf<LoadedStream<typeof OrderPlaced | typeof OrderPaid | typeof OrderShipped | typeof CustomerNotified>>();
      const first = loaded.events[0]!;
      if (first.type === 'order.placed') expectTypeOf(first.payload.totalCents).toEqualTypeOf<number>();
      expectTypeOf(first).toMatchTypeOf<{ version: number; offset: bigint; storedVersion: number }>();
      expectTypeOf<StreamEvent<typeof OrderPaid>['payload']>().toEqualTypeOf<{ orderId: string; amountCents: number }>();

      await annals.aggregates.append(orders, 'o-1', [{ type: 'customer.notified', payload: { orderId: 'o-1', text: 'hello' } }], { expectedVersion: 'any' });
      // @ts-expect-error — the topic does not carry this type
      await annals.aggregates.append(orders, 'o-1', [{ type: 'nope', payload: {} }], { expectedVersion: 0 });
      // @ts-expect-error — expectedVersion is required
      await annals.aggregates.append(orders, 'o-1', [], {});

      const handled = await annals.aggregates.handle(Order, orders, 'o-1', { type: 'pay', orderId: 'o-1', amountCents: 100 });
      expectTypeOf(handled).toEqualTypeOf<HandleResult<typeof OrderPlaced | typeof OrderPaid | typeof OrderShipped, OrderState>>();
      expectTypeOf(handled.state).toEqualTypeOf<OrderState>();
      // @ts-expect-error — not a command of this decider
      await annals.aggregates.handle(Order, orders, 'o-1', { type: 'refund', orderId: 'o-1' });
      // @ts-expect-error — this topic does not carry order.paid and order.shipped
      await annals.aggregates.handle(Order, elsewhere, 'o-1', { type: 'ship', orderId: 'o-1' });
      const { state } = await annals.aggregates.aggregate(Order, orders, 'o-1');
      expectTypeOf(state).toEqualTypeOf<OrderState>();

      await annals.transaction(async (tx) => {
        await tx.aggregates.append(orders, 'o-1', [{ type: 'order.paid', payload: { orderId: 'o-1', amountCents: 5 } }], { expectedVersion: 3 });
        const r = await tx.aggregates.handle(Order, orders, 'o-1', { type: 'ship', orderId: 'o-1' });
        expectTypeOf(r.state).toEqualTypeOf<OrderState>();
      });
    };
    expect(typeof compileOnly).toBe('function');
    await annals.disconnect();
  });
});

it('a stand-alone decider needs no topic: z and contracts only', () => {
  const Counted = defineEvent({ type: 'counted', versions: { 1: z.object({ by: z.number() }) } });
  const Counter = defineDecider({
    name: 'counter',
    events: [Counted],
    initialState: () => ({ n: 0 }),
    decide: (by: number) => (by === 0 ? [] : [{ type: 'counted' as const, payload: { by } }]),
    evolve: (s, e) => ({ n: s.n + e.payload.by }),
  });
  expect(Counter.fold([{ type: 'counted', payload: { by: 2 } }, { type: 'counted', payload: { by: 3 } }])).toEqual({ n: 5 });
});
