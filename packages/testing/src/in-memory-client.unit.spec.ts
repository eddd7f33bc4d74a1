/** The whole client on the in-memory log: what users' unit tests run on. */
import { Annals, defineEvent, defineTopic } from '@annals/core';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { InMemoryLogStorage } from './index.js';

const Deposited = defineEvent({ type: 'deposited', versions: { 1: z.object({ account: z.string(), cents: z.number().int() }) } });
const accounts = defineTopic({ name: 'accounts', partitions: 3, events: [Deposited], key: (e) => e.account });

describe('Annals on InMemoryLogStorage', () => {
  it('publishes, consumes in a group with tx writes, and commits offsets', async () => {
    const storage = new InMemoryLogStorage<{ balances: { cents: number } }>();
    await using annals = new Annals({ clientId: 'unit', storage });
    await annals.admin().createTopics({ topics: [accounts] });
    const producer = annals.producer();
    for (const [account, cents] of [['a', 5], ['b', 7], ['a', 3]] as const) await producer.publish(accounts, Deposited, { account, cents });

    const consumer = annals.consumer({ groupId: 'balances', heartbeatInterval: 50, sessionTimeout: 1_000, maxWaitTimeInMs: 50 });
    await consumer.subscribe({ topic: accounts, fromBeginning: true });
    await consumer.run({
      eachEvent: async ({ event, tx }) => {
        const { account, cents } = event.payload as { account: string; cents: number };
        const table = tx.db.tables.get('balances');
        table.set(account, { cents: (table.get(account)?.cents ?? 0) + cents });
      },
    });
    const deadline = Date.now() + 5_000;
    while (Date.now() < deadline && (await annals.admin().describeGroupLag('balances')).some((l) => l.lag !== '0')) {
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(storage.db.snapshot()).toEqual({ balances: { a: { cents: 8 }, b: { cents: 7 } } });
    await consumer.disconnect();
  });
});
