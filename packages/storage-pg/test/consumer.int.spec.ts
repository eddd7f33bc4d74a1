/**
 * The consumer's behaviour on a real PostgreSQL, in one process: offsets (auto, manual, reset,
 * fromBeginning), handler failure policies (retry, dead-letter, pause, stop), typed events,
 * exactly-once handler transactions with publishes, and group admin.
 */
import {
  ConsumerEvents,
  GroupNotEmptyError,
  IllegalGenerationError,
  defineEvent,
  defineTopic,
  type Consumer,
  type EachMessagePayload,
} from '@annals/core';
import { sql } from 'kysely';
import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { freshAnnals, sleep } from './support.js';

const running: Consumer<any>[] = [];
afterEach(async () => {
  for (const c of running.splice(0)) await c.disconnect();
});

async function waitFor(what: string, condition: () => boolean | Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
    await sleep(20);
  }
}

const fast = { heartbeatInterval: 100, sessionTimeout: 2_000, maxWaitTimeInMs: 200 } as const;

describe('offsets', () => {
  it('auto-commits after successful handlers; a restarted consumer resumes after the last commit', async () => {
    const annals = freshAnnals();
    await annals.admin().createTopics({ topics: [{ topic: 'auto', numPartitions: 2 }] });
    await annals.producer().send({ topic: 'auto', messages: Array.from({ length: 10 }, (_, i) => ({ key: `k${i}`, value: `v${i}` })) });
    const seen: string[] = [];
    const first = annals.consumer({ groupId: 'auto-g', ...fast });
    running.push(first);
    await first.subscribe({ topic: 'auto', fromBeginning: true });
    await first.run({ eachMessage: async ({ message }) => void seen.push(message.value!.toString()) });
    await waitFor('10 records', () => seen.length === 10);
    await first.disconnect();
    await annals.producer().send({ topic: 'auto', messages: [{ key: 'k1', value: 'later' }] });
    const second = annals.consumer({ groupId: 'auto-g', ...fast });
    running.push(second);
    await second.subscribe({ topic: 'auto', fromBeginning: true });
    await second.run({ eachMessage: async ({ message }) => void seen.push(message.value!.toString()) });
    await waitFor('the new record', () => seen.length === 11);
    await sleep(300);
    expect(seen.length).toBe(11);
    expect(seen.at(-1)).toBe('later');
    const lag = await annals.admin().describeGroupLag('auto-g');
    expect(lag.map((l) => l.lag)).toEqual(['0', '0']);
  });

  it('a new group without fromBeginning starts at the log end', async () => {
    const annals = freshAnnals();
    await annals.admin().createTopics({ topics: [{ topic: 'latest' }] });
    await annals.producer().send({ topic: 'latest', messages: [{ value: 'before' }] });
    const seen: string[] = [];
    const consumer = annals.consumer({ groupId: 'latest-g', ...fast });
    running.push(consumer);
    await consumer.subscribe({ topic: 'latest' });
    await consumer.run({ eachMessage: async ({ message }) => void seen.push(message.value!.toString()) });
    await waitFor('the partition to be claimed', () => consumer.assignment().length === 1);
    await annals.producer().send({ topic: 'latest', messages: [{ value: 'after' }] });
    await waitFor('after', () => seen.length === 1);
    expect(seen).toEqual(['after']);
  });

  it("keeps the seed's manual offset management: autoCommit false and commitOffsets", async () => {
    const annals = freshAnnals();
    await annals.admin().createTopics({ topics: [{ topic: 'manual' }] });
    await annals.producer().send({ topic: 'manual', messages: [{ value: 'a' }, { value: 'b' }, { value: 'c' }] });
    const consumer = annals.consumer({ groupId: 'manual-g', ...fast });
    running.push(consumer);
    await consumer.subscribe({ topic: 'manual', fromBeginning: true });
    const seen: string[] = [];
    await consumer.run({
      autoCommit: false,
      eachMessage: async ({ topic, partition, message }) => {
        seen.push(message.value!.toString());
        if (message.value!.toString() === 'b') {
          await consumer.commitOffsets([{ topic, partition, offset: (BigInt(message.offset) + 1n).toString() }]);
        }
      },
    });
    await waitFor('3 records', () => seen.length === 3);
    const offsets = await annals.admin().fetchOffsets({ groupId: 'manual-g', topics: ['manual'] });
    expect(offsets[0]!.partitions[0]!.offset).toBe('2');
  });

  it('resets an offset below the log start by policy, and says so', async () => {
    const annals = freshAnnals();
    await annals.admin().createTopics({ topics: [{ topic: 'trimmed' }] });
    await annals.producer().send({ topic: 'trimmed', messages: ['a', 'b', 'c', 'd'].map((value) => ({ value })) });
    await annals.admin().setOffsets({ groupId: 'trim-g', topic: 'trimmed', partitions: [{ partition: 0, offset: '1' }] });
    await annals.admin().deleteRecords({ topic: 'trimmed', partitions: [{ partition: 0, offset: '3' }] });
    expect((await annals.admin().fetchTopicOffsets('trimmed'))[0]).toMatchObject({ low: '3', high: '4' });
    const consumer = annals.consumer({ groupId: 'trim-g', ...fast, offsetReset: 'earliest' });
    running.push(consumer);
    const resets: unknown[] = [];
    consumer.on(ConsumerEvents.OFFSETS_RESET, (e) => resets.push(e.payload));
    const seen: string[] = [];
    await consumer.subscribe({ topic: 'trimmed' });
    await consumer.run({ eachMessage: async ({ message }) => void seen.push(message.value!.toString()) });
    await waitFor('d', () => seen.length === 1);
    expect(seen).toEqual(['d']);
    expect(resets).toEqual([expect.objectContaining({ topic: 'trimmed', partition: 0, from: '1', to: '3', policy: 'earliest' })]);

    const strict = annals.consumer({ groupId: 'trim-strict', ...fast, offsetReset: 'error' });
    await annals.admin().setOffsets({ groupId: 'trim-strict', topic: 'trimmed', partitions: [{ partition: 0, offset: '0' }] });
    const crashes: unknown[] = [];
    strict.on(ConsumerEvents.CRASH, (e) => crashes.push(e.payload.error));
    running.push(strict);
    await strict.subscribe({ topic: 'trimmed' });
    await strict.run({ eachMessage: async () => {} });
    await waitFor('a crash', () => crashes.length > 0);
    expect((crashes[0] as { code: string }).code).toBe('OFFSET_OUT_OF_RANGE');
  });
});

describe('failure policies', () => {
  it('retries a failing handler with backoff, in order, then succeeds', async () => {
    const annals = freshAnnals();
    await annals.admin().createTopics({ topics: [{ topic: 'flaky' }] });
    await annals.producer().send({ topic: 'flaky', messages: ['1', '2', '3'].map((value) => ({ value })) });
    const consumer = annals.consumer({ groupId: 'flaky-g', ...fast, retry: { retries: 3, initialRetryTime: 20 } });
    running.push(consumer);
    let failures = 0;
    const done: string[] = [];
    await consumer.subscribe({ topic: 'flaky', fromBeginning: true });
    await consumer.run({
      eachMessage: async ({ message }) => {
        if (message.value!.toString() === '2' && failures < 2) {
          failures++;
          throw new Error('transient');
        }
        done.push(message.value!.toString());
      },
    });
    await waitFor('3 records', () => done.length === 3);
    expect(done).toEqual(['1', '2', '3']);
    expect(failures).toBe(2);
  });

  it('handlers written without async (KafkaJS code): a plain return is a success, a synchronous throw a failure retried in place', async () => {
    const annals = freshAnnals();
    await annals.admin().createTopics({ topics: [{ topic: 'sync' }] });
    await annals.producer().send({ topic: 'sync', messages: ['1', '2', '3'].map((value) => ({ value })) });
    const consumer = annals.consumer({ groupId: 'sync-g', ...fast, retry: { retries: 3, initialRetryTime: 20 } });
    running.push(consumer);
    let failures = 0;
    const done: string[] = [];
    await consumer.subscribe({ topic: 'sync', fromBeginning: true });
    // Not an async function: returns undefined, or throws before returning anything.
    const handler = ({ message }: EachMessagePayload<unknown>): void => {
      if (message.value!.toString() === '2' && failures < 2) {
        failures++;
        throw new Error('transient');
      }
      done.push(message.value!.toString());
    };
    await consumer.run({ eachMessage: handler as unknown as (p: EachMessagePayload<unknown>) => Promise<void> });
    await waitFor('3 records', () => done.length === 3);
    await waitFor('the offsets committed', async () => (await annals.admin().describeGroupLag('sync-g')).every((l) => l.lag === '0'));
    await sleep(200);
    expect(done).toEqual(['1', '2', '3']);
    expect(failures).toBe(2);
  });

  it('dead-letters a poison record with its reason, in the same transaction as the offset advance; other partitions go on', async () => {
    const annals = freshAnnals();
    await annals.admin().createTopics({ topics: [{ topic: 'work', numPartitions: 2 }, { topic: 'work.dlq' }] });
    const producer = annals.producer();
    await producer.send({ topic: 'work', messages: [{ partition: 0, value: 'poison' }, { partition: 0, value: 'after' }, { partition: 1, value: 'other' }] });
    const consumer = annals.consumer({ groupId: 'dlq-g', ...fast, retry: { retries: 1, initialRetryTime: 10 }, onFailure: 'dead-letter', deadLetterTopic: 'work.dlq' });
    running.push(consumer);
    const done: string[] = [];
    await consumer.subscribe({ topic: 'work', fromBeginning: true });
    await consumer.run({
      eachMessage: async ({ message }) => {
        if (message.value!.toString() === 'poison') throw new TypeError('cannot parse poison');
        done.push(message.value!.toString());
      },
    });
    await waitFor('after and other', () => done.length === 2);
    expect(done.sort()).toEqual(['after', 'other']);
    await waitFor('committed past the poison record', async () => (await annals.admin().fetchOffsets({ groupId: 'dlq-g', topics: ['work'] }))[0]!.partitions[0]!.offset === '2');
    const { messages } = await annals.fetch('work.dlq', 0, 0n);
    expect(messages.length).toBe(1);
    const dead = messages[0]!;
    expect(dead.value!.toString()).toBe('poison');
    expect(dead.headers['annals-dlq-error-message']!.toString()).toBe('cannot parse poison');
    expect(dead.headers['annals-dlq-offset']!.toString()).toBe('0');
    expect(dead.headers['annals-dlq-attempts']!.toString()).toBe('2');
    await waitFor('committed past the poison record', async () => (await annals.admin().fetchOffsets({ groupId: 'dlq-g', topics: ['work'] }))[0]!.partitions[0]!.offset === '2');
  });

  it('pauses only the failing partition, keeping it at the failed record until resumed', async () => {
    const annals = freshAnnals();
    await annals.admin().createTopics({ topics: [{ topic: 'pausing', numPartitions: 2 }] });
    await annals.producer().send({ topic: 'pausing', messages: [{ partition: 0, value: 'bad' }, { partition: 0, value: 'next' }, { partition: 1, value: 'fine' }] });
    const consumer = annals.consumer({ groupId: 'pause-g', ...fast, retry: { retries: 0 }, onFailure: 'pause' });
    running.push(consumer);
    let healed = false;
    const done: string[] = [];
    await consumer.subscribe({ topic: 'pausing', fromBeginning: true });
    await consumer.run({
      eachMessage: async ({ partition, message }) => {
        if (message.value!.toString() === 'bad' && !healed) throw new Error('not yet');
        done.push(`${partition}:${message.value!.toString()}`);
      },
    });
    await waitFor('partition 0 paused', () => consumer.paused().length === 1);
    await waitFor('partition 1 consumed', () => done.includes('1:fine'));
    expect(consumer.paused()).toEqual([{ topic: 'pausing', partitions: [0] }]);
    expect(done).toEqual(['1:fine']);
    healed = true;
    consumer.resume([{ topic: 'pausing', partitions: [0] }]);
    await waitFor('partition 0 resumed', () => done.length === 3);
    expect(done).toEqual(['1:fine', '0:bad', '0:next']);
  });

  it('regression: records appended to a paused partition do not make the worker spin', async () => {
    const annals = freshAnnals();
    await annals.admin().createTopics({ topics: [{ topic: 'held' }] });
    const consumer = annals.consumer({ groupId: 'held-g', ...fast });
    running.push(consumer);
    const done: string[] = [];
    await consumer.subscribe({ topic: 'held', fromBeginning: true });
    await consumer.run({ eachMessage: async ({ message }) => void done.push(message.value!.toString()) });
    await waitFor('owned', () => consumer.assignment().length === 1);
    consumer.pause([{ topic: 'held' }]);
    await annals.producer().send({ topic: 'held', messages: [{ value: 'while paused' }] });
    // A spinning worker would starve timers: this sleep would never end within the test timeout.
    const started = Date.now();
    await sleep(300);
    expect(Date.now() - started).toBeLessThan(2_000);
    expect(done).toEqual([]);
    consumer.resume([{ topic: 'held' }]);
    await waitFor('consumed after resume', () => done.length === 1);
  });

  it('regression: pausing or resuming single partitions keeps the rest of a topic paused as a whole', async () => {
    const annals = freshAnnals();
    await annals.admin().createTopics({ topics: [{ topic: 'halves', numPartitions: 2 }] });
    const consumer = annals.consumer({ groupId: 'halves-g', ...fast });
    running.push(consumer);
    const done: string[] = [];
    await consumer.subscribe({ topic: 'halves', fromBeginning: true });
    await consumer.run({ eachMessage: async ({ partition, message }) => void done.push(`${partition}:${message.value!.toString()}`) });
    await waitFor('owned', () => consumer.assignment().length === 2);
    const producer = annals.producer();
    // The whole topic, then one of its partitions again: both stay paused (it used to un-pause 1).
    consumer.pause([{ topic: 'halves' }]);
    consumer.pause([{ topic: 'halves', partitions: [0] }]);
    expect(consumer.paused()).toEqual([{ topic: 'halves', partitions: [0, 1] }]);
    await producer.send({ topic: 'halves', messages: [{ partition: 1, value: 'a' }] });
    await sleep(400);
    expect(done).toEqual([]);
    // Resuming one partition of the paused topic resumes that one only (it used to resume both).
    consumer.resume([{ topic: 'halves', partitions: [1] }]);
    expect(consumer.paused()).toEqual([{ topic: 'halves', partitions: [0] }]);
    await producer.send({ topic: 'halves', messages: [{ partition: 0, value: 'b' }] });
    await waitFor('partition 1 consumed', () => done.includes('1:a'));
    await sleep(300);
    expect(done).toEqual(['1:a']);
    // Pausing it again by partition, then resuming the topic, resumes everything.
    consumer.pause([{ topic: 'halves', partitions: [1] }]);
    expect(consumer.paused()).toEqual([{ topic: 'halves', partitions: [0, 1] }]);
    consumer.resume([{ topic: 'halves' }]);
    expect(consumer.paused()).toEqual([]);
    await waitFor('partition 0 consumed', () => done.includes('0:b'));
  });

  it('stops the consumer after the last attempt, committing nothing past the failure', async () => {
    const annals = freshAnnals();
    await annals.admin().createTopics({ topics: [{ topic: 'fatal' }] });
    await annals.producer().send({ topic: 'fatal', messages: [{ value: 'ok' }, { value: 'boom' }, { value: 'never' }] });
    const consumer = annals.consumer({ groupId: 'stop-g', ...fast, retry: { retries: 1, initialRetryTime: 10 } });
    running.push(consumer);
    const crashes: Error[] = [];
    consumer.on(ConsumerEvents.CRASH, (e) => crashes.push(e.payload.error as Error));
    const done: string[] = [];
    await consumer.subscribe({ topic: 'fatal', fromBeginning: true });
    await consumer.run({
      eachMessage: async ({ message }) => {
        if (message.value!.toString() === 'boom') throw new Error('fatal handler error');
        done.push(message.value!.toString());
      },
    });
    await waitFor('a crash', () => crashes.length > 0);
    expect(crashes[0]!.message).toMatch(/fatal\[0\]@1 after 2 attempt/);
    expect((crashes[0]!.cause as Error).message).toBe('fatal handler error');
    expect(done).toEqual(['ok']);
    await waitFor('group left', async () => (await annals.admin().describeGroups(['stop-g'])).groups[0]!.members.length === 0);
    expect((await annals.admin().fetchOffsets({ groupId: 'stop-g', topics: ['fatal'] }))[0]!.partitions[0]!.offset).toBe('1');
  });
});

describe('exactly-once handlers and typed events', () => {
  const Ordered = defineEvent({
    type: 'ordered',
    versions: { 1: z.object({ id: z.string(), cents: z.number() }), 2: z.object({ id: z.string(), cents: z.number(), currency: z.string() }) },
    upcast: { 1: (v) => ({ ...v, currency: 'EUR' }) },
  });
  const Billed = defineEvent({ type: 'billed', versions: { 1: z.object({ id: z.string(), total: z.number() }) } });
  const orders = defineTopic({ name: 'typed-orders', partitions: 2, events: [Ordered], key: (e) => e.id });
  const bills = defineTopic({ name: 'bills', partitions: 1, events: [Billed], key: (e) => e.id });

  it("commits the handler's writes, its publishes and the offset advance together; a failed record's publish is dropped", async () => {
    const annals = freshAnnals<{ totals: { id: string; cents: number } }>();
    await annals.admin().createTopics({ topics: [orders, bills] });
    await annals.transaction(async (tx) => void (await sql`CREATE TABLE totals (id text PRIMARY KEY, cents int NOT NULL)`.execute(tx.db)));
    const producer = annals.producer();
    await producer.publish(orders, Ordered, { id: 'o1', cents: 100, currency: 'USD' });
    // A version-1 record from an older producer: upcast for the handler.
    await producer.send({ topic: 'typed-orders', messages: [{ key: 'o2', value: Buffer.from(JSON.stringify({ id: 'o2', cents: 5 })), headers: { 'event-type': 'ordered', 'schema-version': '1', 'content-type': 'application/json' } }] });
    await producer.publish(orders, Ordered, { id: 'o3', cents: 7, currency: 'EUR' });
    let failedOnce = false;
    const consumer = annals.consumer({ groupId: 'billing', ...fast, retry: { retries: 2, initialRetryTime: 10 } });
    running.push(consumer);
    const currencies: string[] = [];
    await consumer.subscribe({ topic: orders, fromBeginning: true });
    await consumer.run({
      eachEvent: async ({ event, tx }) => {
        const e = event.payload as { id: string; cents: number; currency: string };
        currencies.push(`${e.id}:${e.currency}:v${event.storedVersion}`);
        await tx.db.insertInto('totals').values({ id: e.id, cents: e.cents }).execute();
        await tx.publish(bills, Billed, { id: e.id, total: e.cents });
        if (e.id === 'o3' && !failedOnce) {
          failedOnce = true;
          throw new Error('fail after writing and publishing');
        }
      },
    });
    await waitFor('3 totals', async () => (await annals.transaction((tx) => tx.db.selectFrom('totals').selectAll().execute())).length === 3);
    await waitFor('offsets committed', async () => (await annals.admin().describeGroupLag('billing')).every((l) => l.lag === '0'));
    const { messages } = await annals.fetch('bills', 0, 0n);
    expect(messages.map((m) => annals.decode(bills, 0, m).payload).sort((a: any, b: any) => (a.id < b.id ? -1 : 1))).toEqual([
      { id: 'o1', total: 100 },
      { id: 'o2', total: 5 },
      { id: 'o3', total: 7 },
    ]);
    expect(currencies).toContain('o2:EUR:v1');
    expect(failedOnce).toBe(true);
  });

  it('routes an undecodable record by policy with its reason', async () => {
    const annals = freshAnnals();
    await annals.admin().createTopics({ topics: [orders, { topic: 'orders.dlq' }] });
    await annals.producer().send({ topic: 'typed-orders', messages: [{ key: 'x', partition: 0, value: Buffer.from([0xc1]), headers: { 'event-type': 'ordered', 'schema-version': '2' } }] });
    await annals.producer().publish(orders, Ordered, { id: 'fine', cents: 1, currency: 'EUR' }, { partition: 0 });
    const consumer = annals.consumer({ groupId: 'decode-g', ...fast, onFailure: 'dead-letter', deadLetterTopic: 'orders.dlq' });
    running.push(consumer);
    const seen: string[] = [];
    await consumer.subscribe({ topic: orders, fromBeginning: true });
    await consumer.run({ eachEvent: async ({ event }) => void seen.push((event.payload as { id: string }).id) });
    await waitFor('fine', () => seen.length === 1);
    // The dead letter commits with the batch, after the handler of the next record ran.
    await waitFor('the dead letter', async () => (await annals.fetch('orders.dlq', 0, 0n)).messages.length > 0);
    const { messages } = await annals.fetch('orders.dlq', 0, 0n);
    expect(messages[0]!.headers['annals-dlq-error-code']!.toString()).toBe('CORRUPT_MESSAGE');
    expect(messages[0]!.headers['annals-dlq-attempts']!.toString()).toBe('1');
  });
});

describe('group admin', () => {
  it('describes members and lag, resets offsets of an inactive group, refuses an active one, deletes groups', async () => {
    const annals = freshAnnals();
    await annals.admin().createTopics({ topics: [{ topic: 'lagging', numPartitions: 2 }] });
    await annals.producer().send({ topic: 'lagging', messages: Array.from({ length: 6 }, (_, i) => ({ partition: i % 2, value: `v${i}`, timestamp: 1_000 * (i + 1) })) });
    const consumer = annals.consumer({ groupId: 'lag-g', ...fast });
    running.push(consumer);
    await consumer.subscribe({ topic: 'lagging', fromBeginning: true });
    let gate!: () => void;
    const blocked = new Promise<void>((r) => (gate = r));
    await consumer.run({ eachMessage: async (_p: EachMessagePayload<unknown>) => blocked });
    await waitFor('a member owning both partitions', () => consumer.assignment().length === 2);
    const described = await annals.admin().describeGroups(['lag-g']);
    expect(described.groups[0]!.members).toHaveLength(1);
    expect(described.groups[0]!.members[0]!.assignment.map((a) => a.partition).sort()).toEqual([0, 1]);
    const lag = await annals.admin().describeGroupLag('lag-g');
    expect(lag.map((l) => [l.partition, l.currentOffset, l.logEndOffset, l.lag])).toEqual([
      [0, null, '3', '3'],
      [1, null, '3', '3'],
    ]);
    expect(lag[0]!.lagSeconds).toBeGreaterThan(1_000_000);
    expect(lag[0]!.consumerId).toBe(consumer.memberId);
    await expect(annals.admin().resetOffsets({ groupId: 'lag-g', topic: 'lagging', to: 'latest' })).rejects.toBeInstanceOf(GroupNotEmptyError);
    await expect(annals.admin().deleteGroups(['lag-g'])).rejects.toBeInstanceOf(GroupNotEmptyError);
    gate();
    await consumer.disconnect();

    await annals.admin().resetOffsets({ groupId: 'lag-g', topic: 'lagging', to: 'timestamp', timestamp: 3_000 });
    expect((await annals.admin().fetchOffsets({ groupId: 'lag-g', topics: ['lagging'] }))[0]!.partitions.map((p) => p.offset)).toEqual(['1', '1']);
    await annals.admin().resetOffsets({ groupId: 'lag-g', topic: 'lagging', to: 'offset', offset: '2', partitions: [1] });
    expect((await annals.admin().fetchOffsets({ groupId: 'lag-g', topics: ['lagging'] }))[0]!.partitions.map((p) => p.offset)).toEqual(['1', '2']);
    await annals.admin().resetOffsets({ groupId: 'lag-g', topic: 'lagging', to: 'earliest' });
    expect((await annals.admin().describeGroupLag('lag-g')).map((l) => l.lag)).toEqual(['3', '3']);
    expect((await annals.admin().listGroups()).groups.map((g) => g.groupId)).toEqual(['lag-g']);
    await annals.admin().deleteGroups(['lag-g']);
    expect((await annals.admin().listGroups()).groups).toEqual([]);
  });

  it('refuses a commit for a partition the member does not own', async () => {
    const annals = freshAnnals();
    await annals.admin().createTopics({ topics: [{ topic: 'owned' }, { topic: 'notmine' }] });
    const consumer = annals.consumer({ groupId: 'own-g', ...fast });
    running.push(consumer);
    await consumer.subscribe({ topic: 'owned' });
    await consumer.run({ eachMessage: async () => {} });
    await waitFor('owned', () => consumer.assignment().length === 1);
    await expect(consumer.commitOffsets([{ topic: 'notmine', partition: 0, offset: '0' }])).rejects.toBeInstanceOf(IllegalGenerationError);
    await consumer.commitOffsets([{ topic: 'owned', partition: 0, offset: '0' }]);
  });
});
