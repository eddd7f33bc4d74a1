/**
 * The primer's "Manual Offset Management" snippet, twice:
 *
 * 1. `seedManualOffsets` — the seed's own version, with only the construction changed. (Its SQL
 *    needed two fixes to run on PostgreSQL at all: `offset` is a reserved word, and `ON CONFLICT
 *    DO UPDATE` needs a conflict target.) It writes, commits, then commits the offset: a crash in
 *    between processes the order again.
 * 2. `annalsExactlyOnce` — the same job in one line of Annals: write through the handler's `tx`;
 *    the write and the offset advance commit together, fenced to the partition's owner.
 */
import { Annals, type Consumer, type LogStorage } from '@annals/core';
import { sql, type Kysely } from 'kysely';
import pg from 'pg';

/** The seed's `db`: a tiny transaction helper over a pg pool. */
function database(pool: pg.Pool) {
  return {
    async transaction<T>(fn: (tx: pg.PoolClient) => Promise<T>): Promise<T> {
      const client = await pool.connect();
      try {
        await client.query('BEGIN');
        const result = await fn(client);
        await client.query('COMMIT');
        return result;
      } catch (error) {
        await client.query('ROLLBACK');
        throw error;
      } finally {
        client.release();
      }
    },
  };
}

export async function seedManualOffsets(storage: LogStorage<any>, pool: pg.Pool): Promise<Consumer<any>> {
  const db = database(pool);
  const processOrderInTx = async (tx: pg.PoolClient, order: { id: string }) => {
    await tx.query('INSERT INTO processed_orders (id) VALUES ($1)', [order.id]);
  };
  const kafka = new Annals({ clientId: 'payment-service', storage });
  const consumer = kafka.consumer({ groupId: 'payment-service-manual' });
  await consumer.subscribe({ topic: 'orders', fromBeginning: true });

  await consumer.run({
    autoCommit: false,
    eachMessage: async ({ topic, partition, message, heartbeat }) => {
      const order = JSON.parse(message.value!.toString());
      // Process and persist atomically
      await db.transaction(async (tx) => {
        await processOrderInTx(tx, order);
        // Record the offset so we know where to resume
        await tx.query(
          'INSERT INTO kafka_offsets (topic, partition, "offset") VALUES ($1, $2, $3) ON CONFLICT (topic, partition) DO UPDATE SET "offset" = $3',
          [topic, partition, message.offset],
        );
      });
      // Commit only after successful DB write
      await consumer.commitOffsets([
        {
          topic,
          partition,
          offset: (BigInt(message.offset) + 1n).toString(),
        },
      ]);
      await heartbeat(); // prevent session timeout during long processing
    },
  });
  return consumer;
}

export async function annalsExactlyOnce(storage: LogStorage<Kysely<any>>): Promise<Consumer<Kysely<any>>> {
  const annals = new Annals({ clientId: 'payment-service', storage });
  const consumer = annals.consumer({ groupId: 'payment-service-eos' });
  await consumer.subscribe({ topic: 'orders', fromBeginning: true });
  await consumer.run({
    eachMessage: async ({ message, tx }) => {
      const order = JSON.parse(message.value!.toString());
      // The one line: this write and the offset advance commit in one transaction.
      await sql`INSERT INTO processed_orders_eos (id) VALUES (${order.id})`.execute(tx.db);
    },
  });
  return consumer;
}
