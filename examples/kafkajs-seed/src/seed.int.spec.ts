/** The primer's KafkaJS snippets, run on Annals exactly as the examples hold them. */
import { Annals, type Consumer } from '@annals/core';
import { postgres } from '@annals/storage-pg';
import { useTestDatabase } from '@annals/testing';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { consumeOrders } from './consumer.js';
import { annalsExactlyOnce, seedManualOffsets } from './manual-offsets.js';
import { produceOrders } from './producer.js';
import { transactionalSend } from './transactional.js';

const db = useTestDatabase();
let pool: pg.Pool;
let schema: string;
const storage = () => postgres({ connectionString: db.connectionString, schema });
const consumers: Consumer<any>[] = [];
let admin: Annals<any>;

beforeAll(async () => {
  pool = new pg.Pool({ connectionString: db.connectionString });
  // As pg asks of every pool: an idle client whose backend is terminated (the test database is
  // dropped WITH (FORCE) after the file) emits 'error' on the pool, which must not crash the run.
  pool.on('error', () => {});
  schema = `seed_${randomBytes(4).toString('hex')}`;
  admin = new Annals({ clientId: 'setup', storage: storage() });
  // kafka-topics.sh --create --topic orders --partitions 6
  await admin.admin().createTopics({ topics: [{ topic: 'orders', numPartitions: 6 }, { topic: 'payments' }, { topic: 'notifications' }] });
  await pool.query('CREATE TABLE processed_orders (id text PRIMARY KEY)');
  await pool.query('CREATE TABLE processed_orders_eos (id text PRIMARY KEY)');
  await pool.query('CREATE TABLE kafka_offsets (topic text, partition int, "offset" text, PRIMARY KEY (topic, partition))');
});
afterAll(async () => {
  for (const c of consumers) await c.disconnect();
  await admin.disconnect();
  await pool.end();
});

const waitFor = async (what: string, check: () => Promise<boolean> | boolean) => {
  const deadline = Date.now() + 15_000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
};

describe('the Kafka primer on Annals', () => {
  it('consumes, from the latest offset, what the producer snippet sends', async () => {
    const received: Array<{ id: string }> = [];
    const consumer = await consumeOrders(storage(), async (order) => void received.push(order as { id: string }));
    consumers.push(consumer);
    await waitFor('the consumer owns all 6 partitions', () => consumer.assignment().length === 6);
    const orders = Array.from({ length: 20 }, (_, i) => ({ id: `o${i}`, customerId: `c${i % 4}`, total: i }));
    await produceOrders(storage(), { id: 'first', customerId: 'c42', total: 1 }, orders);
    await waitFor('21 orders', () => received.length === 21);
    expect(received.map((o) => o.id).sort()).toEqual(['first', ...orders.map((o) => o.id)].sort());
    const lag = await admin.admin().describeGroupLag('payment-service');
    await waitFor('lag 0', async () => (await admin.admin().describeGroupLag('payment-service')).every((l) => l.lag === '0'));
    expect(lag).toHaveLength(6);
  });

  it("runs the seed's manual offset management, and the Annals one-liner", async () => {
    consumers.push(await seedManualOffsets(storage(), pool));
    consumers.push(await annalsExactlyOnce(storage()));
    await waitFor('both processed 21 orders', async () => {
      const a = await pool.query('SELECT count(*)::int AS n FROM processed_orders');
      const b = await pool.query('SELECT count(*)::int AS n FROM processed_orders_eos');
      return a.rows[0].n === 21 && b.rows[0].n === 21;
    });
    const offsets = await admin.admin().fetchOffsets({ groupId: 'payment-service-manual', topics: ['orders'] });
    const total = offsets[0]!.partitions.reduce((s, p) => s + Math.max(0, Number(p.offset)), 0);
    expect(total).toBe(21);
  });

  it('commits a transactional multi-topic send atomically, and aborts one that fails', async () => {
    await transactionalSend(storage(), { id: 'o1' }, { amount: 5 }, { text: 'paid' });
    await expect(transactionalSend(storage(), { id: 'o2' }, { amount: 6 }, { text: 'never' }, true)).rejects.toThrow('simulated');
    const payments = await admin.fetch('payments', 0, 0n);
    const notifications = await admin.fetch('notifications', 0, 0n);
    expect(payments.messages.map((m) => JSON.parse(m.value!.toString()))).toEqual([{ amount: 5 }]);
    expect(notifications.messages.map((m) => JSON.parse(m.value!.toString()))).toEqual([{ text: 'paid' }]);
  });
});
