/**
 * The services of the orders story: an order service writing its own rows and publishing in one
 * transaction; a payment service (a consumer group, charging exactly once through `tx`);
 * notifications; the order-totals and user-profiles projections.
 */
import {
  On,
  Projection,
  Subscriber,
  defineProjection,
  defineSubscriber,
  on,
  type Annals,
  type EventOf,
  type HandlerContext,
  type ProjectionContext,
} from '@annals/core';
import { sql, type Kysely } from 'kysely';
import { OrderPlaced, PaymentCompleted, UserStateChanged, orders, payments, userState } from './contracts.js';

/** The application's own tables (schema `orders_app`). */
export interface AppDatabase {
  'orders_app.orders': { order_id: string; customer_id: string; total_cents: number; placed_at: Date };
  'orders_app.charges': { order_id: string; payment_id: string; amount_cents: number };
}
export type Db = Kysely<AppDatabase>;
export const APP_SCHEMA = 'orders_app';

export async function createAppTables(annals: Annals<Db>): Promise<void> {
  await annals.transaction(async (tx) => {
    await sql`CREATE SCHEMA IF NOT EXISTS orders_app`.execute(tx.db);
    await sql`CREATE TABLE IF NOT EXISTS orders_app.orders (order_id text PRIMARY KEY, customer_id text NOT NULL, total_cents int NOT NULL, placed_at timestamptz NOT NULL)`.execute(tx.db);
    await sql`CREATE TABLE IF NOT EXISTS orders_app.charges (order_id text PRIMARY KEY, payment_id text NOT NULL, amount_cents int NOT NULL)`.execute(tx.db);
  });
}

/** The order service: its row and its event commit together, or neither does. */
export class OrderService {
  constructor(private readonly annals: Annals<Db>) {}

  async place(order: { orderId: string; customerId: string; totalCents: number }): Promise<void> {
    await this.annals.transaction(async (tx) => {
      await tx.db
        .insertInto('orders_app.orders')
        .values({ order_id: order.orderId, customer_id: order.customerId, total_cents: order.totalCents, placed_at: new Date() })
        .execute();
      await tx.publish(orders, OrderPlaced, { ...order, currency: 'EUR' });
    });
  }
}

/**
 * The payment service: a consumer group. Each charge is a row written through the handler's
 * transaction and a `payment.completed` published in it — both commit with the offset advance,
 * so a crash or rebalance never charges twice.
 */
@Subscriber({ groupId: 'payment-service', topics: [orders], fromBeginning: true, heartbeatInterval: 250, sessionTimeout: 5_000, maxWaitTimeInMs: 200 })
export class PaymentService {
  charged = 0;
  constructor(readonly member: string) {}

  @On(OrderPlaced)
  async charge(order: EventOf<typeof OrderPlaced>, ctx: HandlerContext<Db>) {
    const paymentId = `pay-${order.orderId}`;
    await ctx.tx.db.insertInto('orders_app.charges').values({ order_id: order.orderId, payment_id: paymentId, amount_cents: order.totalCents }).execute();
    await ctx.publish(payments, PaymentCompleted, { orderId: order.orderId, customerId: order.customerId, amountCents: order.totalCents, paymentId });
    this.charged++;
    await new Promise((r) => setTimeout(r, 2)); // a payment provider's latency: lets the lag show
  }
}

/** Notifications, in the plain-function form: a side effect per completed payment. */
export function notifications(sent: (message: string) => void) {
  return defineSubscriber({
    groupId: 'notifications',
    topics: [payments],
    fromBeginning: true,
    heartbeatInterval: 250,
    maxWaitTimeInMs: 200,
    handlers: [on(PaymentCompleted, (p) => sent(`to ${p.customerId}: payment ${p.paymentId} of ${(p.amountCents / 100).toFixed(2)} EUR received`))],
  });
}

export interface Totals {
  orders: number;
  totalCents: number;
}

/** Version 1 of order-totals: orders and money per customer. */
@Projection({ name: 'order-totals', version: 1, topics: [orders], schema: APP_SCHEMA, documents: ['order_totals'], consumer: { heartbeatInterval: 250, maxWaitTimeInMs: 200 } })
export class OrderTotalsV1 {
  @On(OrderPlaced)
  placed(order: EventOf<typeof OrderPlaced>, ctx: ProjectionContext) {
    ctx.documents<Totals>('order_totals').update(order.customerId, (t) => ({ orders: (t?.orders ?? 0) + 1, totalCents: (t?.totalCents ?? 0) + order.totalCents }));
  }
}

export interface TotalsV2 extends Totals {
  largestCents: number;
}

/** Version 2 adds the largest order: a new read model, rebuilt from the log, then swapped in. */
@Projection({ name: 'order-totals', version: 2, topics: [orders], schema: APP_SCHEMA, documents: ['order_totals'], consumer: { heartbeatInterval: 250, maxWaitTimeInMs: 200 }, batchSize: 500 })
export class OrderTotalsV2 {
  @On(OrderPlaced)
  placed(order: EventOf<typeof OrderPlaced>, ctx: ProjectionContext) {
    ctx.documents<TotalsV2>('order_totals').update(order.customerId, (t) => ({
      orders: (t?.orders ?? 0) + 1,
      totalCents: (t?.totalCents ?? 0) + order.totalCents,
      largestCents: Math.max(t?.largestCents ?? 0, order.totalCents),
    }));
  }
}

/** The latest profile of every user, from the compacted user-state topic. */
export const userProfiles = defineProjection({
  name: 'user-profiles',
  version: 1,
  topics: [userState],
  schema: APP_SCHEMA,
  documents: ['user_profiles'],
  consumer: { heartbeatInterval: 250, maxWaitTimeInMs: 200 },
  handlers: [on(UserStateChanged, (u, ctx) => ctx.documents('user_profiles').set(u.userId, { name: u.name, tier: u.tier }))],
});
