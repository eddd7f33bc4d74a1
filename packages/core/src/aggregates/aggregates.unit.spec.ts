/**
 * `annals.aggregates` and `tx.aggregates` on the in-memory log (the same runtime runs on
 * PostgreSQL in storage-pg's aggregates.int.spec.ts): loading with upcasting, expected-version
 * appends, `handle` with retries, snapshots, and streams inside `annals.transaction` and in a
 * consumer handler.
 */
import { describe, expect, it } from 'vitest';
import {
  Annals,
  EVENT_TYPE_HEADER,
  SCHEMA_VERSION_HEADER,
  CONTENT_TYPE_HEADER,
  defineDecider,
  defineTopic,
  msgpackCodec,
  type StreamEvent,
} from '@annals/core';
import { InMemoryLogStorage } from '@annals/testing';
import { CustomerNotified, Order, OrderPaid, OrderPlaced, OrderShipped, orders, type OrderState } from '../../test/fixtures/order-aggregate.js';

async function client(): Promise<{ annals: Annals<any>; storage: InMemoryLogStorage }> {
  const storage = new InMemoryLogStorage();
  const annals = new Annals({ clientId: 'aggregates', storage });
  await annals.admin().createTopics({ topics: [orders] });
  return { annals, storage };
}

const placed = (orderId: string, totalCents: number) => ({ type: 'order.placed' as const, payload: { orderId, totalCents } });
const paid = (orderId: string, amountCents: number) => ({ type: 'order.paid' as const, payload: { orderId, amountCents } });

describe('load and append', () => {
  it('appends at the expected version and loads the stream decoded, upcast and numbered', async () => {
    const { annals } = await client();
    // An event written by an older producer, as version 1 (euros, not cents).
    const codec = msgpackCodec();
    await annals.producer().send({
      topic: 'orders',
      messages: [
        {
          key: 'o-1',
          value: Buffer.from(codec.encode({ orderId: 'o-1', total: 12.5 })),
          headers: { [EVENT_TYPE_HEADER]: 'order.placed', [SCHEMA_VERSION_HEADER]: '1', [CONTENT_TYPE_HEADER]: codec.contentType },
        },
      ],
    });
    const appended = await annals.aggregates.append(orders, 'o-1', [paid('o-1', 500), paid('o-1', 750)], { expectedVersion: 1 });
    expect(appended).toMatchObject({ topic: 'orders', previousVersion: 1, version: 3, offsets: [1n, 2n] });
    const stream = await annals.aggregates.load(orders, 'o-1');
    expect(stream.version).toBe(3);
    expect(stream.events.map((e) => [e.type, e.version, e.offset, e.storedVersion])).toEqual([
      ['order.placed', 1, 0n, 1],
      ['order.paid', 2, 1n, 1],
      ['order.paid', 3, 2n, 1],
    ]);
    expect(stream.events[0]!.payload).toEqual({ orderId: 'o-1', totalCents: 1250 });
    expect(stream.partition).toBe(appended.partition);
    const empty = await annals.aggregates.load(orders, 'o-404');
    expect([empty.version, empty.events]).toEqual([0, []]);
    await annals.disconnect();
  });

  it('a conflict throws WrongExpectedVersionError and writes nothing; bad events are refused before anything is written', async () => {
    const { annals } = await client();
    await annals.aggregates.append(orders, 'o-1', [placed('o-1', 100)], { expectedVersion: 'no-stream' });
    await expect(annals.aggregates.append(orders, 'o-1', [paid('o-1', 1)], { expectedVersion: 'no-stream' })).rejects.toMatchObject({
      name: 'WrongExpectedVersionError',
      code: 'WRONG_EXPECTED_VERSION',
      expectedVersion: 'no-stream',
      actualVersion: 1,
      key: 'o-1',
      topic: 'orders',
    });
    await expect(annals.aggregates.append(orders, 'o-1', [paid('o-1', -1)], { expectedVersion: 1 })).rejects.toMatchObject({ name: 'SchemaValidationError' });
    await expect(annals.aggregates.append(orders, 'o-1', [{ type: 'nope', payload: {} } as never], { expectedVersion: 1 })).rejects.toMatchObject({
      name: 'UnknownEventTypeError',
    });
    // The topic keys events by orderId: an event of another order cannot join this stream.
    await expect(annals.aggregates.append(orders, 'o-1', [paid('o-2', 1)], { expectedVersion: 1 })).rejects.toThrow(/must carry its key/);
    await expect(annals.aggregates.append(orders, 'o-1', [paid('o-1', 1)], { expectedVersion: -1 })).rejects.toMatchObject({ name: 'InvalidOptionsError' });
    await expect(annals.aggregates.append(orders, 'o-1', [paid('o-1', 1)], undefined as never)).rejects.toMatchObject({ name: 'InvalidOptionsError' });
    await expect(annals.aggregates.append(orders, '', [paid('', 1)], { expectedVersion: 'any' })).rejects.toMatchObject({ name: 'InvalidOptionsError' });
    expect((await annals.aggregates.load(orders, 'o-1')).version).toBe(1);
    await annals.disconnect();
  });

  it('refuses a topic with time retention or compaction with a clear InvalidConfigError', async () => {
    const { annals } = await client();
    const timed = defineTopic({ name: 'timed-orders', events: [OrderPlaced], key: (e) => e.orderId }); // default retention.ms: 7 days
    await annals.admin().createTopics({ topics: [timed] });
    await expect(annals.aggregates.append(timed, 'o-1', [placed('o-1', 1)], { expectedVersion: 0 })).rejects.toThrow(
      /Topic "timed-orders" cannot hold event-sourced streams: its retention\.ms is 604800000/,
    );
    await annals.disconnect();
  });
});

describe('handle', () => {
  it('loads, decides and appends at the loaded version; a refused command writes nothing; no events, no append', async () => {
    const { annals } = await client();
    const first = await annals.aggregates.handle(Order, orders, 'o-1', { type: 'place', orderId: 'o-1', totalCents: 1000 });
    expect(first).toEqual({
      state: { status: 'placed', totalCents: 1000, paidCents: 0 },
      version: 1,
      events: [placed('o-1', 1000)],
      retries: 0,
      snapshot: 'not-due',
    });
    await expect(annals.aggregates.handle(Order, orders, 'o-1', { type: 'place', orderId: 'o-1', totalCents: 5 })).rejects.toMatchObject({ name: 'OrderRuleError' });
    await annals.aggregates.handle(Order, orders, 'o-1', { type: 'pay', orderId: 'o-1', amountCents: 1000 });
    const shipped = await annals.aggregates.handle(Order, orders, 'o-1', { type: 'ship', orderId: 'o-1' });
    expect(shipped.events).toEqual([{ type: 'order.shipped', payload: { orderId: 'o-1', carrier: 'post' } }]);
    const again = await annals.aggregates.handle(Order, orders, 'o-1', { type: 'ship', orderId: 'o-1' });
    expect([again.events, again.version, again.state.status]).toEqual([[], 3, 'shipped']);
    expect(await annals.aggregates.aggregate(Order, orders, 'o-1')).toEqual({ state: { status: 'shipped', totalCents: 1000, paidCents: 1000 }, version: 3, snapshotVersion: 0 });
    await annals.disconnect();
  });

  it('retries conflicts: 12 concurrent payments on one order all land, each once, at dense versions', async () => {
    const { annals } = await client();
    await annals.aggregates.handle(Order, orders, 'o-1', { type: 'place', orderId: 'o-1', totalCents: 1_000_000 });
    const results = await Promise.all(
      Array.from({ length: 12 }, () => annals.aggregates.handle(Order, orders, 'o-1', { type: 'pay', orderId: 'o-1', amountCents: 10 }, { maxRetries: 20 })),
    );
    expect(results.map((r) => r.version).sort((a, b) => a - b)).toEqual(Array.from({ length: 12 }, (_, i) => i + 2));
    expect(results.reduce((n, r) => n + r.retries, 0)).toBeGreaterThan(0);
    const { state, version } = await annals.aggregates.aggregate(Order, orders, 'o-1');
    expect([state.paidCents, version]).toEqual([120, 13]);
    await annals.disconnect();
  });

  it('gives up after maxRetries with the conflict', async () => {
    const { annals } = await client();
    await annals.aggregates.handle(Order, orders, 'o-1', { type: 'place', orderId: 'o-1', totalCents: 100 });
    // A decider whose decide lets another writer in first, every time.
    let interfering = 0;
    const Racy = defineDecider({
      ...{ name: 'racy', events: [OrderPlaced, OrderPaid, OrderShipped] },
      initialState: Order.initialState,
      evolve: Order.evolve,
      async decide(command: { orderId: string }) {
        await annals.aggregates.append(orders, command.orderId, [paid(command.orderId, 1)], { expectedVersion: 'any' });
        interfering++;
        return [paid(command.orderId, 2)];
      },
    });
    await expect(annals.aggregates.handle(Racy, orders, 'o-1', { orderId: 'o-1' }, { maxRetries: 2 })).rejects.toMatchObject({ name: 'WrongExpectedVersionError' });
    expect(interfering).toBe(3);
    expect((await annals.aggregates.load(orders, 'o-1')).events.map((e) => e.payload)).toEqual([
      { orderId: 'o-1', totalCents: 100 },
      { orderId: 'o-1', amountCents: 1 },
      { orderId: 'o-1', amountCents: 1 },
      { orderId: 'o-1', amountCents: 1 },
    ]);
    await expect(annals.aggregates.handle(Order, orders, 'o-1', { type: 'ship', orderId: 'o-1' }, { maxRetries: -1 })).rejects.toMatchObject({ name: 'InvalidOptionsError' });
    await annals.disconnect();
  });

  it('refuses a topic that does not carry the decider’s events, and a stream holding an event the decider does not know', async () => {
    const { annals } = await client();
    const partial = defineTopic({ name: 'partial', events: [OrderPlaced], key: (e) => e.orderId, config: { 'retention.ms': -1 } });
    await annals.admin().createTopics({ topics: [partial] });
    await expect(annals.aggregates.handle(Order, partial as never, 'o-1', { type: 'place', orderId: 'o-1', totalCents: 1 })).rejects.toThrow(
      /Decider "order" has event "order.paid", which topic "partial" does not carry/,
    );
    await annals.aggregates.append(orders, 'o-9', [{ type: 'customer.notified', payload: { orderId: 'o-9', text: 'hi' } }], { expectedVersion: 0 });
    await expect(annals.aggregates.aggregate(Order, orders, 'o-9')).rejects.toThrow(/holds event "customer.notified" at offset \d+, which decider "order" does not list/);
    expect(CustomerNotified.type).toBe('customer.notified');
    await annals.disconnect();
  });
});

describe('snapshots', () => {
  const withSnapshots = (version: number, extra: Partial<{ deserialize: (v: unknown) => OrderState; serialize: (s: OrderState) => unknown }> = {}) =>
    defineDecider({
      name: 'order',
      events: [OrderPlaced, OrderPaid, OrderShipped],
      initialState: Order.initialState,
      decide: Order.decide,
      evolve: Order.evolve,
      snapshots: { version, every: 3, ...extra },
    });

  it('are taken when a handle crosses a multiple of `every`, used by loads, and re-taken under a new schema version', async () => {
    const { annals, storage } = await client();
    const V1 = withSnapshots(1);
    const r1 = await annals.aggregates.handle(V1, orders, 'o-1', { type: 'place', orderId: 'o-1', totalCents: 1000 });
    const r2 = await annals.aggregates.handle(V1, orders, 'o-1', { type: 'pay', orderId: 'o-1', amountCents: 100 });
    const r3 = await annals.aggregates.handle(V1, orders, 'o-1', { type: 'pay', orderId: 'o-1', amountCents: 100 });
    expect([r1.snapshot, r2.snapshot, r3.snapshot]).toEqual(['not-due', 'not-due', 'stored']);
    const partition = (await annals.aggregates.load(orders, 'o-1')).partition;
    const slice = await storage.readStream('orders', partition, Buffer.from('o-1'), { snapshot: { name: 'order', schemaVersion: 1 } });
    expect([slice.snapshot?.version, slice.records.length]).toEqual([3, 0]);
    await annals.aggregates.handle(V1, orders, 'o-1', { type: 'pay', orderId: 'o-1', amountCents: 100 });
    expect(await annals.aggregates.aggregate(V1, orders, 'o-1')).toEqual({ state: { status: 'placed', totalCents: 1000, paidCents: 300 }, version: 4, snapshotVersion: 3 });
    // A new state shape: the v1 snapshot is ignored (a full load), and a v2 one is taken at the next handle.
    const V2 = withSnapshots(2);
    expect((await annals.aggregates.aggregate(V2, orders, 'o-1')).snapshotVersion).toBe(0);
    const r5 = await annals.aggregates.handle(V2, orders, 'o-1', { type: 'pay', orderId: 'o-1', amountCents: 100 });
    expect(r5.snapshot).toBe('stored');
    expect(await annals.aggregates.aggregate(V2, orders, 'o-1')).toMatchObject({ version: 5, snapshotVersion: 5, state: { paidCents: 400 } });
    // Old code (schema version 1) crossing a multiple again: its snapshot is due, but the newer
    // schema version's is kept — and the result says so (it said 'stored').
    const r6 = await annals.aggregates.handle(V1, orders, 'o-1', { type: 'pay', orderId: 'o-1', amountCents: 100 });
    expect([r6.version, r6.snapshot]).toEqual([6, 'kept']);
    expect(await annals.aggregates.aggregate(V2, orders, 'o-1')).toMatchObject({ version: 6, snapshotVersion: 5, state: { paidCents: 500 } });
    expect(await annals.aggregates.deleteSnapshots(V2)).toBe(1);
    expect(await annals.aggregates.aggregate(V2, orders, 'o-1')).toMatchObject({ version: 6, snapshotVersion: 0, state: { paidCents: 500 } });
    await annals.disconnect();
  });

  it('an unreadable snapshot falls back to the whole stream; a snapshot that cannot be stored never fails the handle', async () => {
    const { annals } = await client();
    const V1 = withSnapshots(1);
    for (const cmd of [{ type: 'place', orderId: 'o-1', totalCents: 1000 }, { type: 'pay', orderId: 'o-1', amountCents: 1 }, { type: 'pay', orderId: 'o-1', amountCents: 1 }] as const) {
      await annals.aggregates.handle(V1, orders, 'o-1', cmd);
    }
    const Broken = withSnapshots(1, {
      deserialize: () => {
        throw new Error('cannot read');
      },
    });
    expect(await annals.aggregates.aggregate(Broken, orders, 'o-1')).toEqual({ state: { status: 'placed', totalCents: 1000, paidCents: 2 }, version: 3, snapshotVersion: 0 });
    const Unencodable = withSnapshots(3, { serialize: (s) => ({ ...s, when: new Map() }) });
    const r = await annals.aggregates.handle(Unencodable, orders, 'o-1', { type: 'pay', orderId: 'o-1', amountCents: 1 });
    expect(r.version).toBe(4);
    expect(r.snapshot).toEqual({ error: expect.any(Error) });
    await annals.disconnect();
  });
});

describe('in annals.transaction', () => {
  it('appends are checked at commit: a conflict fails the whole transaction and nothing of it is written', async () => {
    const { annals, storage } = await client();
    await annals.aggregates.append(orders, 'o-1', [placed('o-1', 100)], { expectedVersion: 0 });
    await expect(
      annals.transaction(async (tx) => {
        tx.db.tables.get('audit').set('a-1', { done: true });
        await tx.aggregates.append(orders, 'o-1', [paid('o-1', 100)], { expectedVersion: 1 });
        await tx.publish(orders, CustomerNotified, { orderId: 'o-2', text: 'thanks' });
        // Another writer gets in first.
        await annals.aggregates.append(orders, 'o-1', [paid('o-1', 1)], { expectedVersion: 1 });
      }),
    ).rejects.toMatchObject({ name: 'WrongExpectedVersionError', expectedVersion: 1, actualVersion: 2 });
    expect(storage.db.tables.get('audit').get('a-1')).toBeUndefined();
    expect((await annals.aggregates.load(orders, 'o-2')).version).toBe(0);
    expect((await annals.aggregates.load(orders, 'o-1')).version).toBe(2);

    await annals.transaction(async (tx) => {
      const r = await tx.aggregates.handle(Order, orders, 'o-1', { type: 'pay', orderId: 'o-1', amountCents: 99 });
      expect(r).toMatchObject({ version: 3, state: { status: 'paid', paidCents: 100 } });
      // A second append to the same stream must expect where the first one leads.
      await tx.aggregates.append(orders, 'o-1', [{ type: 'order.shipped', payload: { orderId: 'o-1' } }], { expectedVersion: 3 });
      await expect(tx.aggregates.append(orders, 'o-1', [paid('o-1', 1)], { expectedVersion: 3 })).rejects.toThrow(/an earlier append in the same transaction leaves the stream at 4/);
      await tx.publish(orders, CustomerNotified, { orderId: 'o-3', text: 'hello' });
    });
    const stream = await annals.aggregates.load(orders, 'o-1');
    // The first transaction's payment of 100 was rolled back; the other writer's 1 and this one's 99 remain.
    expect(stream.events.map((e) => e.type)).toEqual(['order.placed', 'order.paid', 'order.paid', 'order.shipped']);
    expect((await annals.aggregates.load(orders, 'o-3')).version).toBe(1);
    await annals.disconnect();
  });
});

describe('in a consumer handler', () => {
  it('a conflict fails the record, the consumer retries it (loading again), and the events commit with the offset advance', async () => {
    const { annals } = await client();
    const commands = defineTopic({ name: 'order-commands', events: [OrderPaid], key: (e) => e.orderId });
    await annals.admin().createTopics({ topics: [commands] });
    await annals.aggregates.handle(Order, orders, 'o-1', { type: 'place', orderId: 'o-1', totalCents: 1000 });
    const producer = annals.producer();
    for (const amount of [100, 200, 300]) await producer.publish(commands, OrderPaid, { orderId: 'o-1', amountCents: amount });

    let attempts = 0;
    const consumer = annals.consumer({ groupId: 'payments', heartbeatInterval: 100, sessionTimeout: 5_000, retry: { retries: 5, initialRetryTime: 10 } });
    await consumer.subscribe({ topic: commands, fromBeginning: true });
    const done = new Promise<void>((resolve) => {
      void consumer.run({
        eachEvent: async ({ event, tx }) => {
          attempts++;
          const payment = event.payload as { orderId: string; amountCents: number };
          const loaded = await tx.aggregates.load(orders, payment.orderId);
          if (attempts === 1) {
            // Someone else appends between this handler's load and its append: a conflict. (Once
            // this batch has appended to the partition, it holds the head lock until it commits:
            // other writers wait, and cannot conflict with it.)
            await annals.aggregates.append(orders, payment.orderId, [paid(payment.orderId, 1)], { expectedVersion: loaded.version });
          }
          await tx.aggregates.append(orders, payment.orderId, [paid(payment.orderId, payment.amountCents)], { expectedVersion: loaded.version });
          if (loaded.version + 1 >= 5) resolve();
        },
      });
    });
    await done;
    await consumer.disconnect();
    const stream = await annals.aggregates.load(orders, 'o-1');
    expect(stream.events.map((e) => (e as StreamEvent<typeof OrderPaid>).payload.amountCents)).toEqual([undefined, 1, 100, 200, 300]);
    expect(attempts).toBe(4);
    const lag = await annals.admin().fetchOffsets({ groupId: 'payments', topics: ['order-commands'] });
    expect(lag[0]!.partitions.reduce((n, p) => n + Number(p.offset), 0)).toBe(3);
    await annals.disconnect();
  });
});
