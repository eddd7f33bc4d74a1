/**
 * Subscribers and projections running on the in-memory log, written as given/when/then
 * specifications: typed handlers get the latest payload (older versions upcast) and the event's
 * metadata, unhandled events are acknowledged and counted, publishes commit with the handler's
 * transaction, projections build documents, suppress publishes while replaying history, rebuild
 * into a new version and swap.
 */
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import {
  Annals,
  EventClass,
  On,
  Projection,
  Subscriber,
  defineEvent,
  defineProjection,
  defineTopic,
  on,
  type EventMetadata,
  type EventOf,
  type HandlerContext,
  type ProjectionContext,
  type RebuildProgress,
} from '@annals/core';
import { InMemoryLogStorage, event, eventOfVersion, given, type InMemoryDatabase } from '@annals/testing';

const OrderCreated = defineEvent({
  type: 'order.created',
  versions: {
    1: z.object({ orderId: z.string(), customerId: z.string(), total: z.number() }),
    2: z.object({ orderId: z.string(), customerId: z.string(), totalCents: z.number().int(), currency: z.string() }),
  },
  upcast: { 1: (v1) => ({ orderId: v1.orderId, customerId: v1.customerId, totalCents: Math.round(v1.total * 100), currency: 'EUR' }) },
});
const OrderPaid = defineEvent({ type: 'order.paid', versions: { 1: z.object({ orderId: z.string(), customerId: z.string() }) } });
const Billed = defineEvent({ type: 'bill.issued', versions: { 1: z.object({ orderId: z.string(), cents: z.number() }) } });
const orders = defineTopic({ name: 'orders', partitions: 3, events: [OrderCreated, OrderPaid], key: (e) => e.customerId });
const bills = defineTopic({ name: 'bills', partitions: 1, events: [Billed], key: (e) => e.orderId });

type Created = EventOf<typeof OrderCreated>;
type Totals = { orders: number; cents: number };

const created = (orderId: string, customerId: string, totalCents: number) => event(orders, OrderCreated, { orderId, customerId, totalCents, currency: 'EUR' });

@Subscriber({ groupId: 'billing', topics: [orders] })
class Billing {
  readonly seen: Array<{ order: Created; meta: EventMetadata }> = [];
  @On(OrderCreated)
  async bill(order: Created, ctx: HandlerContext) {
    this.seen.push({ order, meta: ctx.metadata });
    await ctx.publish(bills, Billed, { orderId: order.orderId, cents: order.totalCents });
  }
}

@Projection({ name: 'customer-totals', version: 1, topics: [orders], documents: ['customer_totals'] })
class CustomerTotals {
  @On(OrderCreated)
  created(order: Created, ctx: ProjectionContext) {
    ctx.documents<Totals>('customer_totals').update(order.customerId, (t) => ({ orders: (t?.orders ?? 0) + 1, cents: (t?.cents ?? 0) + order.totalCents }));
    // A projection may publish; during a replay the publish is suppressed.
    return ctx.publish(bills, Billed, { orderId: order.orderId, cents: order.totalCents });
  }
}

describe('subscribers', () => {
  it('handlers get the latest payload — older versions upcast — with metadata; unhandled events are acknowledged and counted', async () => {
    const billing = new Billing();
    await given(
      created('o-1', 'c-1', 1250),
      eventOfVersion(orders, OrderCreated, 1, { orderId: 'o-2', customerId: 'c-2', total: 9.99 }),
      event(orders, OrderPaid, { orderId: 'o-1', customerId: 'c-1' }),
    )
      .when(billing, { topics: [bills] })
      .then(({ published, stats }) => {
        // Partitions are consumed in any order: compare as a set.
        expect(published.map((p) => p.payload).sort((x: any, y: any) => x.orderId.localeCompare(y.orderId))).toEqual([
          { orderId: 'o-1', cents: 1250 },
          { orderId: 'o-2', cents: 999 },
        ]);
        expect(stats.unhandledByType).toEqual({ 'order.paid': 1 });
      });
    const byOrder = Object.fromEntries(billing.seen.map((s) => [s.order.orderId, s]));
    expect(byOrder['o-2']!.order).toEqual({ orderId: 'o-2', customerId: 'c-2', totalCents: 999, currency: 'EUR' });
    expect(byOrder['o-2']!.meta).toMatchObject({ topic: 'orders', eventType: 'order.created', storedVersion: 1, offset: expect.any(String) });
    expect(byOrder['o-1']!.meta.storedVersion).toBe(2);
    expect(byOrder['o-1']!.meta.key?.toString()).toBe('c-1');
    expect(byOrder['o-1']!.meta.headers['event-type']!.toString()).toBe('order.created');
  });

  it('publishes in order and counts unhandled events (one partition)', async () => {
    const one = defineTopic({ name: 'one', events: [OrderCreated, OrderPaid] });
    const outcome = await given(
      event(one, OrderCreated, { orderId: 'o-1', customerId: 'c', totalCents: 1, currency: 'EUR' }),
      event(one, OrderPaid, { orderId: 'o-1', customerId: 'c' }),
      event(one, OrderCreated, { orderId: 'o-2', customerId: 'c', totalCents: 2, currency: 'EUR' }),
    )
      .when(on(OrderCreated, (order, ctx) => ctx.publish(bills, Billed, { orderId: order.orderId, cents: order.totalCents })), { topics: [bills] })
      .then({
        published: [
          { topic: 'bills', type: 'bill.issued', payload: { orderId: 'o-1', cents: 1 }, key: 'o-1' },
          { topic: 'bills', type: 'bill.issued', payload: { orderId: 'o-2', cents: 2 }, key: 'o-2' },
        ],
        unhandled: 1,
      });
    expect(outcome.stats).toEqual({ handled: 2, unhandled: 1, unhandledByType: { 'order.paid': 1 } });
  });

  it("a failed attempt's writes and publishes roll back; the retry's commit once (exactly once through tx)", async () => {
    const one = defineTopic({ name: 'one', events: [OrderCreated] });
    let attempts = 0;
    const handler = on(OrderCreated, async (order, ctx: HandlerContext<InMemoryDatabase>) => {
      const table = ctx.tx.db.tables.get('charges');
      table.set(order.orderId, { cents: (table.get(order.orderId)?.cents ?? 0) + order.totalCents });
      await ctx.publish(bills, Billed, { orderId: order.orderId, cents: order.totalCents });
      if (order.orderId === 'o-2' && ++attempts === 1) throw new Error('payment gateway timeout');
    });
    const storage = new InMemoryLogStorage();
    await given(created('o-1', 'c', 100), created('o-2', 'c', 200))
      .when(handler, { topics: [bills], storage })
      .then(({ published }) => {
        expect(published.map((p) => p.payload).sort((a: any, b: any) => a.orderId.localeCompare(b.orderId))).toEqual([
          { orderId: 'o-1', cents: 100 },
          { orderId: 'o-2', cents: 200 },
        ]);
      });
    expect(attempts).toBe(2);
    expect(storage.db.tables.get('charges').entries().sort()).toEqual([
      ['o-1', { cents: 100 }],
      ['o-2', { cents: 200 }],
    ]);
  });

  it('the signal aborts a long handler when the client stops', async () => {
    const storage = new InMemoryLogStorage();
    const annals = new Annals({ clientId: 'signal', storage });
    await annals.admin().createTopics({ topics: [orders] });
    let aborted: unknown;
    let entered!: () => void;
    const inHandler = new Promise<void>((r) => (entered = r));
    annals.register(
      defineSubscriberFor(async (_order, ctx) => {
        entered();
        await new Promise<void>((resolve) => ctx.signal.addEventListener('abort', () => resolve(), { once: true }));
        aborted = ctx.signal.aborted;
      }),
    );
    await annals.start();
    await annals.producer().publish(orders, OrderCreated, { orderId: 'o', customerId: 'c', totalCents: 1, currency: 'EUR' });
    await inHandler;
    await annals.disconnect();
    expect(aborted).toBe(true);
  });
});

function defineSubscriberFor(handle: (order: Created, ctx: HandlerContext) => Promise<void>) {
  @Subscriber({ groupId: 'signal', topics: [orders], fromBeginning: true, heartbeatInterval: 100, maxWaitTimeInMs: 100 })
  class LongRunning {
    @On(OrderCreated) handle(order: Created, ctx: HandlerContext) {
      return handle(order, ctx);
    }
  }
  return new LongRunning();
}

describe('event classes', () => {
  class Shipped extends EventClass({
    type: 'order.shipped',
    versions: {
      1: z.object({ orderId: z.string(), carrier: z.string() }),
      2: z.object({ orderId: z.string(), carrier: z.string(), trackingCode: z.string() }),
    },
    upcast: { 1: (v1) => ({ ...v1, trackingCode: 'unknown' }) },
  }) {
    label(): string {
      return `${this.carrier}:${this.trackingCode}`;
    }
  }
  const shipments = defineTopic({ name: 'shipments', events: [Shipped], key: (e) => e.orderId });

  it('@On() takes the event from the parameter type; handlers get instances, upcast', async () => {
    const labels: string[] = [];
    @Subscriber({ groupId: 'labels', topics: [shipments] })
    class Labels {
      @On() print(shipment: Shipped) {
        expect(shipment).toBeInstanceOf(Shipped);
        labels.push(shipment.label());
      }
    }
    await given(
      event(shipments, Shipped, { orderId: 'o-1', carrier: 'dhl', trackingCode: 'T1' }),
      eventOfVersion(shipments, Shipped, 1, { orderId: 'o-2', carrier: 'ups' }),
    )
      .when(new Labels())
      .then({ unhandled: 0 });
    expect(labels).toEqual(['dhl:T1', 'ups:unknown']);
    expect(new Shipped({ orderId: 'o', carrier: 'c', trackingCode: 't' }).label()).toBe('c:t');
    expect(() => new Shipped({ orderId: 'o' } as never)).toThrow(/does not match version 2/);
  });
});

describe('projections', () => {
  it('build documents from history (publishes suppressed), then keep them live (publishes made)', async () => {
    await given(created('o-1', 'c-1', 100), created('o-2', 'c-1', 50), eventOfVersion(orders, OrderCreated, 1, { orderId: 'o-3', customerId: 'c-2', total: 1.5 }))
      .when(new CustomerTotals(), { topics: [bills] })
      .and(created('o-4', 'c-2', 25))
      .then({
        documents: { customer_totals: { 'c-1': { orders: 2, cents: 150 }, 'c-2': { orders: 2, cents: 175 } } },
        published: [{ type: 'bill.issued', payload: { orderId: 'o-4', cents: 25 } }],
      });
  });

  it('rebuild a new version while the active one serves, then swap; the old runner stands down', async () => {
    const storage = new InMemoryLogStorage();
    const live = new Annals({ clientId: 'live', storage });
    await live.admin().createTopics({ topics: [orders, bills] });
    const producer = live.producer();
    for (let i = 0; i < 60; i++) await producer.publish(orders, OrderCreated, { orderId: `o-${i}`, customerId: `c-${i % 7}`, totalCents: i, currency: 'EUR' });
    const definition = (version: number) =>
      defineProjection({
        name: 'totals',
        version,
        topics: [orders],
        documents: ['totals'],
        batchSize: 7,
        consumer: { heartbeatInterval: 100, maxWaitTimeInMs: 50 },
        handlers: [on(OrderCreated, (o, ctx) => ctx.documents<Totals>('totals').update(o.customerId, (t) => ({ orders: (t?.orders ?? 0) + 1, cents: (t?.cents ?? 0) + o.totalCents })))],
      });
    live.register(definition(1));
    await live.start();
    await waitFor(async () => (await live.projections.status())[0]?.lag === 0);

    const next = new Annals({ clientId: 'next', storage });
    next.register(definition(2));
    const progress: RebuildProgress[] = [];
    const rebuilding = next.projections.rebuild('totals', { onProgress: (p) => progress.push(p) });
    for (let i = 60; i < 80; i++) await producer.publish(orders, OrderCreated, { orderId: `o-${i}`, customerId: `c-${i % 7}`, totalCents: i, currency: 'EUR' });
    const result = await rebuilding;
    expect(result).toMatchObject({ projection: 'totals', version: 2, previousVersion: 1, swapped: true });
    expect(progress.at(-1)).toMatchObject({ phase: 'done', etaMs: 0 });
    expect(progress.some((p) => p.phase === 'replaying' && p.eventsTotal > 0)).toBe(true);
    await waitFor(async () => (await live.projections.status())[0]?.state === 'superseded');
    const status = (await next.projections.status())[0]!;
    expect(status).toMatchObject({ name: 'totals', version: 2, activeVersion: 2 });
    expect(status.versions.map((v) => [v.version, v.status])).toEqual([
      [1, 'retired'],
      [2, 'active'],
    ]);
    // Version 2 went live at the swap: it goes on after it, with v1's documents as they were then.
    await next.start();
    await producer.publish(orders, OrderCreated, { orderId: 'o-80', customerId: 'c-3', totalCents: 80, currency: 'EUR' });
    await waitFor(async () => (await next.projections.status(['totals']))[0]?.lag === 0);
    const expected = new Map<string, Totals>();
    for (let i = 0; i <= 80; i++) {
      const t = expected.get(`c-${i % 7}`) ?? { orders: 0, cents: 0 };
      expected.set(`c-${i % 7}`, { orders: t.orders + 1, cents: t.cents + i });
    }
    expect(await next.projections.documents('totals', 'totals')).toEqual([...expected].sort(([a], [b]) => a.localeCompare(b)));
    await expect(next.projections.rebuild('totals')).rejects.toThrow(/version 2 is already active/);
    await next.projections.dropVersion('totals', 1);
    expect((await next.projections.status(['totals']))[0]!.versions.map((v) => v.version)).toEqual([2]);
    await live.disconnect();
    await next.disconnect();
  });
});

describe('live and rebuild never run one version at once', () => {
  it('a client whose version is being built waits (no live member) until the swap, then serves it live', async () => {
    const storage = new InMemoryLogStorage();
    const builder = new Annals({ clientId: 'builder', storage });
    await builder.admin().createTopics({ topics: [orders] });
    const producer = builder.producer();
    for (let i = 0; i < 30; i++) await producer.publish(orders, OrderCreated, { orderId: `o-${i}`, customerId: `c-${i % 4}`, totalCents: i, currency: 'EUR' });
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let replaying = 0;
    const definition = (gated: boolean) =>
      defineProjection({
        name: 'gated',
        version: 1,
        topics: [orders],
        documents: ['gated'],
        autoRebuild: false,
        batchSize: 5,
        consumer: { heartbeatInterval: 100, maxWaitTimeInMs: 50 },
        handlers: [
          on(OrderCreated, async (o, ctx) => {
            if (gated && ctx.replaying) {
              replaying++;
              await gate;
            }
            ctx.documents<number>('gated').update(o.customerId, (n) => (n ?? 0) + 1);
          }),
        ],
      });
    const waiter = new Annals({ clientId: 'waiter', storage });
    waiter.register(definition(false));
    await waiter.start();
    builder.register(definition(true));
    const rebuilding = builder.projections.rebuild('gated');
    await waitFor(async () => replaying > 0);
    expect((await waiter.projections.status(['gated']))[0]).toMatchObject({ state: 'waiting', activeVersion: null });
    expect((await storage.describeGroup('projection:gated:v1')).members).toEqual([]);
    release();
    await rebuilding;
    await waitFor(async () => (await waiter.projections.status(['gated']))[0]?.state === 'live');
    await producer.publish(orders, OrderCreated, { orderId: 'late', customerId: 'c-0', totalCents: 1, currency: 'EUR' });
    await waitFor(async () => (await waiter.projections.status(['gated']))[0]?.lag === 0);
    expect((await storage.describeGroup('projection:gated:v1')).members.map((m) => m.clientId)).toEqual(['waiter']);
    expect(await waiter.projections.documents('gated', 'gated')).toEqual([
      ['c-0', 9],
      ['c-1', 8],
      ['c-2', 7],
      ['c-3', 7],
    ]);
    await builder.disconnect();
    await waiter.disconnect();
  });
});

async function waitFor(condition: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 20));
  }
}
