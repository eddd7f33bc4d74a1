/**
 * Regressions found by the fault-injection suite (issue 9, `npm run chaos`), each reproduced here
 * in one process on a real PostgreSQL.
 */
import { ConsumerEvents, type Consumer } from '@annals/core';
import { sql } from 'kysely';
import { afterEach, describe, expect, it } from 'vitest';
import { adminClient, freshAnnals, sleep } from './support.js';

const running: Consumer<any>[] = [];
afterEach(async () => {
  for (const c of running.splice(0)) await c.disconnect();
});

async function waitFor(what: string, condition: () => boolean | Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
    await sleep(25);
  }
}

const fast = { heartbeatInterval: 100, sessionTimeout: 3_000, maxWaitTimeInMs: 200 } as const;

describe('regression (issue 9): a lost connection under a handler is not a handler failure', () => {
  it("a handler whose transaction's connection is terminated does not stop the consumer ('stop' policy); every record is applied once", async () => {
    const annals = freshAnnals();
    const admin = await adminClient();
    await annals.admin().createTopics({ topics: [{ topic: 'lost-conn', numPartitions: 1 }] });
    await admin.query('CREATE TABLE IF NOT EXISTS lost_conn_effects (v text PRIMARY KEY, n int NOT NULL)');
    await annals.producer().send({ topic: 'lost-conn', messages: ['a', 'b', 'c', 'd'].map((value) => ({ value })) });

    const crashes: Array<{ error: Error; restart: boolean }> = [];
    let terminated = false;
    const consumer = annals.consumer({ groupId: 'lost-conn-g', ...fast, retry: { retries: 2, initialRetryTime: 10 } });
    running.push(consumer);
    consumer.on<{ error: Error; restart: boolean }>(ConsumerEvents.CRASH, (event) => crashes.push(event.payload));
    await consumer.subscribe({ topic: 'lost-conn', fromBeginning: true });
    await consumer.run({
      eachMessage: async ({ message, tx }) => {
        const v = message.value!.toString();
        await sql`INSERT INTO lost_conn_effects (v, n) VALUES (${v}, 1) ON CONFLICT (v) DO UPDATE SET n = lost_conn_effects.n + 1`.execute(tx.db);
        if (v === 'b' && !terminated) {
          terminated = true;
          // What pg_terminate_backend, idle_in_transaction_session_timeout or a reset does to the batch's connection.
          await sql`SELECT pg_terminate_backend(pg_backend_pid())`.execute(tx.db);
        }
      },
    });
    await waitFor('the group to commit past every record', async () => {
      const [offsets] = await annals.admin().fetchOffsets({ groupId: 'lost-conn-g', topics: ['lost-conn'] });
      return offsets?.partitions[0]?.offset === '4';
    });
    expect(terminated).toBe(true);
    expect(crashes.filter((c) => !c.restart).map((c) => c.error.message)).toEqual([]);
    const { rows } = await admin.query<{ v: string; n: number }>('SELECT v, n FROM lost_conn_effects ORDER BY v');
    expect(rows).toEqual(['a', 'b', 'c', 'd'].map((v) => ({ v, n: 1 })));
  });
});
