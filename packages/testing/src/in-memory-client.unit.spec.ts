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

describe('the cleaner through the client, on InMemoryLogStorage', () => {
  it('refuses a record without a key on a compacted topic, writing nothing of the send', async () => {
    await using annals = new Annals({ clientId: 'unit', storage: new InMemoryLogStorage() });
    await annals.admin().createTopics({ topics: [{ topic: 'profiles', configEntries: [{ name: 'cleanup.policy', value: 'compact' }] }] });
    const producer = annals.producer();
    await expect(
      producer.send({ topic: 'profiles', messages: [{ key: 'u1', value: 'a' }, { key: null, value: 'b' }] }),
    ).rejects.toMatchObject({ name: 'InvalidRecordError', code: 'INVALID_RECORD', topic: 'profiles' });
    expect((await annals.admin().fetchTopicOffsets('profiles'))[0]!.high).toBe('0');
  });

  it('regression: refuses a typed publish without a key on a compacted topic too (producer, transaction, and cleanup.policy compact,delete)', async () => {
    await using annals = new Annals({ clientId: 'unit', storage: new InMemoryLogStorage() });
    const Noted = defineEvent({ type: 'noted', versions: { 1: z.object({ id: z.string() }) } });
    const notes = defineTopic({ name: 'notes', events: [Noted], config: { 'cleanup.policy': 'compact' } });
    const both = defineTopic({ name: 'notes-both', events: [Noted], config: { 'cleanup.policy': 'compact,delete' } });
    await annals.admin().createTopics({ topics: [notes, both] });
    await expect(annals.producer().publish(notes, Noted, { id: 'x' })).rejects.toMatchObject({ name: 'InvalidRecordError', topic: 'notes' });
    await expect(annals.transaction(async (tx) => tx.publish(both, Noted, { id: 'y' }))).rejects.toMatchObject({ name: 'InvalidRecordError', topic: 'notes-both' });
    // With a key it goes through.
    await annals.producer().publish(notes, Noted, { id: 'x' }, { key: 'x' });
    expect((await annals.admin().fetchTopicOffsets('notes'))[0]!.high).toBe('1');
    expect((await annals.admin().fetchTopicOffsets('notes-both'))[0]!.high).toBe('0');
  });

  it('annals.cleaner.runOnce compacts a topic and reports what it did', async () => {
    await using annals = new Annals({ clientId: 'unit', storage: new InMemoryLogStorage(), cleaner: false });
    await annals.admin().createTopics({ topics: [{ topic: 'profiles', configEntries: [{ name: 'cleanup.policy', value: 'compact' }] }] });
    const producer = annals.producer();
    await producer.send({ topic: 'profiles', messages: ['a', 'b', 'c'].map((v) => ({ key: 'u1', value: v, partition: 0 })) });
    const progress: number[] = [];
    const result = await annals.cleaner.runOnce({ onProgress: (p) => progress.push(p.done) });
    expect(result.ran).toBe(true);
    if (!result.ran) return;
    expect(result.report.partitions.find((p) => p.partition === 0)).toMatchObject({ recordsCompacted: 2, cleanedOffset: 3n });
    expect(progress.length).toBe(result.report.partitions.length);
    expect(annals.cleaner.started).toBe(false); // cleaner: false — no loop
  });

  it('starts the in-process cleaner on connect, and it cleans on its interval', async () => {
    const passes: number[] = [];
    await using annals = new Annals({ clientId: 'unit', storage: new InMemoryLogStorage(), cleaner: { intervalMs: 20, onPass: (r) => passes.push(r.partitions.length) } });
    await annals.admin().createTopics({ topics: [{ topic: 'profiles', configEntries: [{ name: 'cleanup.policy', value: 'compact' }] }] });
    expect(annals.cleaner.started).toBe(true);
    const deadline = Date.now() + 5_000;
    while (passes.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    expect(passes.length).toBeGreaterThanOrEqual(2);
    expect(annals.cleaner.leading).toBe(true);
    await annals.disconnect();
    expect(annals.cleaner.started).toBe(false);
    expect(annals.cleaner.leading).toBe(false);
  });
});
