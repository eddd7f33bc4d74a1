/**
 * The orders story end to end (issue 5): an order service publishing keyed events in transactions
 * with its own writes; a payment service as a three-member consumer group; notifications; a
 * compacted user-state topic; the order-totals projection and its rebuild into version 2.
 */
import { Annals, ConsumerEvents, type RebuildProgress } from '@annals/core';
import { postgres } from '@annals/storage-pg';
import pg from 'pg';
import { UserStateChanged, orders, payments, userState } from './contracts.js';
import {
  APP_SCHEMA,
  OrderService,
  OrderTotalsV1,
  OrderTotalsV2,
  PaymentService,
  createAppTables,
  notifications,
  userProfiles,
  type Db,
  type TotalsV2,
} from './services.js';

export interface DemoInput {
  /** Where PostgreSQL is (the embedded server's, or DATABASE_URL). */
  readonly connectionString: string;
  /** The schema of the log. @default 'annals_orders' */
  readonly schema?: string;
  /** Orders to place. @default 600 */
  readonly orders?: number;
  readonly log?: (line: string) => void;
}

export interface DemoOutcome {
  readonly ordersPlaced: number;
  readonly charges: number;
  readonly notificationsSent: number;
  readonly membersThatCharged: number;
  readonly totals: ReadonlyArray<[string, TotalsV2]>;
  readonly expected: ReadonlyMap<string, TotalsV2>;
  readonly profiles: ReadonlyArray<[string, unknown]>;
  readonly rebuild: RebuildProgress | undefined;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(what: string, condition: () => Promise<boolean> | boolean, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

export async function runOrdersDemo(input: DemoInput): Promise<DemoOutcome> {
  const log = input.log ?? ((line: string) => console.log(line));
  const schema = input.schema ?? 'annals_orders';
  const count = input.orders ?? 600;
  const client = (clientId: string) => new Annals<Db>({ clientId, storage: postgres({ connectionString: input.connectionString, schema }) });

  // A clean slate: the demo's log schema and its application schema.
  const admin = new pg.Client({ connectionString: input.connectionString });
  await admin.connect();
  await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  await admin.query(`DROP SCHEMA IF EXISTS ${APP_SCHEMA} CASCADE`);
  await admin.end();

  const app = client('order-service');
  const clients: Annals<Db>[] = [app];
  try {
    await app.connect();
    await app.admin().createTopics({ topics: [orders, payments, userState] });
    await createAppTables(app);
    log(`topics: orders (6 partitions, keyed by customer), payments (3), user-state (compacted)`);

    // The payment service: three members of one group, each its own client (as three processes would be).
    const members = ['payments-a', 'payments-b', 'payments-c'].map((name) => {
      const c = client(name);
      clients.push(c);
      const service = new PaymentService(name);
      const registration = c.register(service);
      registration.on<{ error: unknown }>(ConsumerEvents.CRASH, (e) => log(`[payment-service] ${name} crashed: ${String(e.payload.error)}`));
      let previous = '';
      registration.on<{ claiming: Array<{ topic: string; partition: number }>; releasing: Array<{ topic: string; partition: number }> }>(ConsumerEvents.REBALANCING, (e) => {
        const fmt = (tps: Array<{ partition: number }>) => tps.map((t) => t.partition).join(',') || '–';
        const line = `claims partitions ${fmt(e.payload.claiming)}, releases ${fmt(e.payload.releasing)}`;
        // A claim still held by the previous owner is retried at the next heartbeat: say it once.
        if (line !== previous) log(`[payment-service] ${name} rebalancing: ${line}`);
        previous = line;
      });
      return { name, client: c, service };
    });
    let sent = 0;
    const sample: string[] = [];
    const notifier = app.register(
      notifications((message) => {
        if (sample.length < 3) sample.push(message);
        sent++;
      }),
    );
    notifier.on<{ error: unknown }>(ConsumerEvents.CRASH, (e) => log(`[notifications] crashed: ${String(e.payload.error)}`));
    app.register(new OrderTotalsV1());
    app.register(userProfiles);

    // Orders: each an INSERT into the service's own table and an order.placed, one transaction.
    const service = new OrderService(app);
    const expected = new Map<string, TotalsV2>();
    const place = async (from: number, to: number, concurrency = 1) => {
      let i = from;
      const placer = async () => {
        for (; i < to; ) {
          const n = i++;
          await placeOne(n);
        }
      };
      await Promise.all(Array.from({ length: concurrency }, placer));
    };
    const placeOne = async (i: number) => {
      const order = { orderId: `o-${i}`, customerId: `c-${(i * 37) % 25}`, totalCents: 500 + ((i * 7919) % 20_000) };
      await service.place(order);
      const t = expected.get(order.customerId) ?? { orders: 0, totalCents: 0, largestCents: 0 };
      expected.set(order.customerId, { orders: t.orders + 1, totalCents: t.totalCents + order.totalCents, largestCents: Math.max(t.largestCents, order.totalCents) });
    };
    await place(0, count / 2);
    log(`[order-service] placed ${count / 2} orders (row + event in one transaction each)`);

    await Promise.all(members.map((m) => m.client.start()));
    await app.start();

    // Lag drains while the members charge.
    const lag = async () => (await app.admin().describeGroupLag('payment-service')).reduce((n, l) => n + Number(l.lag), 0);
    await place(count / 2, count, 8);
    log(`[order-service] placed ${count / 2} more, 8 at a time, while the payment service runs`);
    let last = -1;
    await until('the payment service to drain its lag', async () => {
      const now = await lag();
      if (now !== last) log(`[payment-service] lag ${now}`);
      last = now;
      return now === 0;
    });
    const charged = members.map((m) => `${m.name}: ${m.service.charged}`).join(', ');
    log(`[payment-service] charged ${members.reduce((n, m) => n + m.service.charged, 0)} orders exactly once (${charged})`);

    await until('notifications', () => sent >= count);
    log(`[notifications] ${sent} sent, e.g. "${sample[0]}"`);

    // User state on a compacted topic: many updates per user; the projection keeps the latest.
    const producer = app.producer();
    for (let round = 0; round < 3; round++) {
      for (let u = 0; u < 10; u++) {
        await producer.publish(userState, UserStateChanged, { userId: `u-${u}`, name: `User ${u}`, tier: (['basic', 'gold', 'platinum'] as const)[(u + round) % 3]! });
      }
    }
    await until('user profiles', async () => (await app.projections.status(['user-profiles']))[0]?.lag === 0);
    const profiles = await app.projections.documents('user-profiles', 'user_profiles');
    log(`[user-state] 30 updates of 10 users → 10 profiles, e.g. u-0: ${JSON.stringify(profiles[0]?.[1])}`);

    await until('order-totals v1', async () => {
      const s = (await app.projections.status(['order-totals']))[0];
      return s?.state === 'live' && s.lag === 0;
    });
    log(`[order-totals v1] live, ${(await app.projections.documents('order-totals', 'order_totals')).length} customers, lag 0`);

    // Version 2 is rebuilt from the log while v1 keeps serving (and orders keep coming), then swapped in.
    const next = client('order-service-v2');
    clients.push(next);
    next.register(new OrderTotalsV2());
    let reported = -1;
    let lastProgress: RebuildProgress | undefined;
    const rebuilding = next.projections.rebuild('order-totals', {
      onProgress: (p) => {
        lastProgress = p;
        const pct = p.eventsTotal === 0 ? 100 : Math.floor((p.eventsDone / p.eventsTotal) * 100);
        if (p.phase !== 'replaying' || pct >= reported + 25) {
          reported = pct;
          log(`[order-totals v2] ${p.phase}: ${p.eventsDone}/${p.eventsTotal} events (${pct}%), ${p.eventsPerSecond} ev/s, eta ${p.etaMs === null ? '?' : `${p.etaMs} ms`}`);
        }
      },
    });
    await place(count, count + 20);
    const result = await rebuilding;
    log(`[order-totals] swapped: v${result.previousVersion} retired, v${result.version} active (${result.events} events replayed in ${result.durationMs} ms)`);
    await next.start(); // v2 goes on live
    await until('order-totals v2 caught up', async () => (await next.projections.status(['order-totals']))[0]?.lag === 0);
    const [status] = await next.projections.status(['order-totals']);
    for (const v of status!.versions) log(`[order-totals] version ${v.version}: ${v.status}, lag ${v.lag}`);
    const totals = await next.projections.documents<TotalsV2>('order-totals', 'order_totals');
    const charges = members.reduce((n, m) => n + m.service.charged, 0);
    return {
      ordersPlaced: count + 20,
      charges,
      notificationsSent: sent,
      membersThatCharged: members.filter((m) => m.service.charged > 0).length,
      totals,
      expected,
      profiles,
      rebuild: lastProgress,
    };
  } finally {
    for (const c of clients.reverse()) await c.disconnect().catch(() => {});
  }
}
