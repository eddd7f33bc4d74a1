/**
 * The Annals quickstart: `npm run demo`.
 *
 * Uses the PostgreSQL named by DATABASE_URL, or starts an embedded one (no installed server
 * needed). It applies the migrations, defines versioned event contracts, shows them refusing bad
 * input and upcasting old events, then publishes, reads and decodes events — alone and inside a
 * transaction with the application's own write.
 */
import { Annals, SchemaValidationError, UnknownEventTypeError, defineEvent, defineTopic, type EventOf } from '@annals/core';
import { embeddedPostgres, postgres } from '@annals/storage-pg';
import { sql } from 'kysely';
import { z } from 'zod';

// 1. Event contracts: every version of a payload, and how to upcast each to the next.
export const OrderCreated = defineEvent({
  type: 'order.created',
  versions: {
    1: z.object({ orderId: z.string(), customerId: z.string(), total: z.number() }),
    2: z.object({ orderId: z.string(), customerId: z.string(), totalCents: z.number().int(), currency: z.string() }),
  },
  upcast: { 1: (v1) => ({ orderId: v1.orderId, customerId: v1.customerId, totalCents: Math.round(v1.total * 100), currency: 'EUR' }) },
});
export const OrderPaid = defineEvent({
  type: 'order.paid',
  versions: { 1: z.object({ orderId: z.string(), customerId: z.string(), paidCents: z.number().int() }) },
});
export const CustomerRenamed = defineEvent({
  type: 'customer.renamed',
  versions: { 1: z.object({ customerId: z.string(), name: z.string() }) },
});

// 2. A topic contract: the events it carries, the key of each event, Kafka's config keys.
export const orders = defineTopic({
  name: 'orders',
  partitions: 6,
  events: [OrderCreated, OrderPaid],
  key: (e) => e.customerId,
  config: { 'retention.ms': 7 * 86_400_000 },
});

interface AppDatabase {
  demo_orders: { order_id: string; customer_id: string; total_cents: number };
}

const log = (...args: unknown[]) => console.log(...args);

async function main(): Promise<void> {
  const url = process.env.DATABASE_URL;
  const storage = url ? postgres<AppDatabase>({ connectionString: url, schema: 'annals_demo' }) : embeddedPostgres<AppDatabase>({ schema: 'annals_demo' });
  log(url ? `Using PostgreSQL from DATABASE_URL.` : 'No DATABASE_URL: starting an embedded PostgreSQL…');
  const annals = new Annals({ clientId: 'quickstart', storage });
  try {
    await annals.connect(); // starts the server if embedded, applies migrations
    log(`Connected to ${storage.description}; migrations applied.`);

    // 3. The contracts at work, before anything touches the database.
    const valid: EventOf<typeof OrderCreated> = OrderCreated.validate({ orderId: 'o-1', customerId: 'c-42', totalCents: 1250, currency: 'EUR' });
    log('valid   →', valid);
    try {
      OrderCreated.validate({ orderId: 'o-2', customerId: 'c-42', totalCents: 12.5, currency: 'EUR' });
    } catch (error) {
      if (!(error instanceof SchemaValidationError)) throw error;
      log(`invalid → ${error.code}: ${error.message}`);
    }
    log('upcast  → v1', { orderId: 'o-0', customerId: 'c-7', total: 19.99 }, 'becomes', OrderCreated.upcast(1, { orderId: 'o-0', customerId: 'c-7', total: 19.99 }));

    // 4. Topics, KafkaJS-style admin, accepting the contract itself.
    const admin = annals.admin();
    await admin.deleteTopics({ topics: (await admin.listTopics()).filter((t) => t === orders.name) });
    await admin.createTopics({ topics: [orders] });
    log('topics  →', await admin.listTopics());

    // 5. Publish typed events; the key (customerId) picks the partition, as Kafka would.
    const producer = annals.producer();
    const created = await producer.publish(orders, OrderCreated, { orderId: 'o-1', customerId: 'c-42', totalCents: 1250, currency: 'EUR' });
    log(`published order.created to partition ${created.partition} at offset ${created.baseOffset}`);
    try {
      await producer.publish(orders, CustomerRenamed as never, { customerId: 'c-42', name: 'Ada' } as never);
    } catch (error) {
      if (!(error instanceof UnknownEventTypeError)) throw error;
      log(`refused → ${error.code}: ${error.message}`);
    }

    // 6. The application's own write and a publish, in one transaction.
    await annals.transaction(async (tx) => {
      await sql`CREATE TABLE IF NOT EXISTS demo_orders (order_id text PRIMARY KEY, customer_id text NOT NULL, total_cents int NOT NULL)`.execute(tx.db);
      await tx.db
        .insertInto('demo_orders')
        .values({ order_id: 'o-1', customer_id: 'c-42', total_cents: 1250 })
        .onConflict((oc) => oc.column('order_id').doNothing())
        .execute();
      await tx.publish(orders, OrderPaid, { orderId: 'o-1', customerId: 'c-42', paidCents: 1250 });
    });
    log('committed an order row and order.paid together');

    // 7. Read the partition back and decode every event to its latest version.
    const { messages, highWatermark } = await annals.fetch(orders.name, created.partition, 0n);
    for (const message of messages) {
      const event = annals.decode(orders, created.partition, message);
      log(`read    ← offset ${message.offset} ${event.type} (stored v${event.storedVersion})`, event.payload);
    }
    log(`partition ${created.partition} log end offset: ${highWatermark}`);
  } finally {
    await annals.disconnect(); // stops the embedded server too
  }
}

main().then(
  () => log('demo finished'),
  (error: unknown) => {
    console.error(error);
    process.exitCode = 1;
  },
);
