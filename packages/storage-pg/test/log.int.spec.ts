/**
 * The log's public API on a real PostgreSQL: admin (KafkaJS shapes), producers, transactions,
 * fetch and the reader, and refusal of bad input with nothing written.
 */
import {
  ConfigResourceTypes,
  InvalidConfigError,
  InvalidPartitionsError,
  InvalidTopicError,
  MessageTooLargeError,
  SchemaValidationError,
  TopicAlreadyExistsError,
  UnknownEventTypeError,
  UnknownTopicOrPartitionError,
  defineEvent,
  defineTopic,
  type KafkaMessage,
} from '@annals/core';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { freshAnnals, sleep } from './support.js';

const OrderCreated = defineEvent({
  type: 'order.created',
  versions: {
    1: z.object({ orderId: z.string(), customerId: z.string(), total: z.number() }),
    2: z.object({ orderId: z.string(), customerId: z.string(), totalCents: z.number().int(), currency: z.string() }),
  },
  upcast: { 1: (v1) => ({ orderId: v1.orderId, customerId: v1.customerId, totalCents: Math.round(v1.total * 100), currency: 'EUR' }) },
});
const OrderPaid = defineEvent({ type: 'order.paid', versions: { 1: z.object({ orderId: z.string(), customerId: z.string() }) } });
const Unrelated = defineEvent({ type: 'unrelated', versions: { 1: z.object({ id: z.string() }) } });
const orders = defineTopic({ name: 'orders', partitions: 6, events: [OrderCreated, OrderPaid], key: (e) => e.customerId });

async function highWatermarks(annals: ReturnType<typeof freshAnnals>, topic: string): Promise<string[]> {
  return (await annals.admin().fetchTopicOffsets(topic)).map((o) => o.high);
}

describe('admin', () => {
  it('creates, lists, describes, alters and deletes topics with Kafka keys', async () => {
    const annals = freshAnnals();
    const admin = annals.admin();
    expect(
      await admin.createTopics({
        topics: [{ topic: 'payments', numPartitions: 3, configEntries: [{ name: 'retention.ms', value: '1000' }] }, orders],
      }),
    ).toBe(true);
    expect(await admin.listTopics()).toEqual(['orders', 'payments']);
    const { topics } = await admin.fetchTopicMetadata({ topics: ['payments'] });
    expect(topics[0]!.partitions.map((p) => p.partitionId)).toEqual([0, 1, 2]);

    const described = await admin.describeConfigs({ resources: [{ type: ConfigResourceTypes.TOPIC, name: 'payments' }] });
    const retention = described.resources[0]!.configEntries.find((e) => e.configName === 'retention.ms')!;
    expect(retention.configValue).toBe('1000');
    expect(retention.isDefault).toBe(false);

    await admin.alterConfigs({
      resources: [{ type: ConfigResourceTypes.TOPIC, name: 'payments', configEntries: [{ name: 'cleanup.policy', value: 'compact' }] }],
    });
    const after = await admin.describeConfigs({
      resources: [{ type: ConfigResourceTypes.TOPIC, name: 'payments', configNames: ['cleanup.policy', 'retention.ms'] }],
    });
    expect(after.resources[0]!.configEntries.map((e) => [e.configName, e.configValue])).toEqual([
      ['retention.ms', '1000'],
      ['cleanup.policy', 'compact'],
    ]);
    await expect(
      admin.alterConfigs({ resources: [{ type: ConfigResourceTypes.TOPIC, name: 'payments', configEntries: [{ name: 'retention.ms', value: 'soon' }] }] }),
    ).rejects.toBeInstanceOf(InvalidConfigError);

    await admin.createPartitions({ topicPartitions: [{ topic: 'payments', count: 5 }] });
    expect((await admin.fetchTopicOffsets('payments')).length).toBe(5);
    await expect(admin.createPartitions({ topicPartitions: [{ topic: 'payments', count: 2 }] })).rejects.toBeInstanceOf(InvalidPartitionsError);

    await admin.deleteTopics({ topics: ['payments'] });
    expect(await admin.listTopics()).toEqual(['orders']);
    await expect(admin.deleteTopics({ topics: ['orders', 'nope'] })).rejects.toBeInstanceOf(UnknownTopicOrPartitionError);
    expect(await admin.listTopics()).toEqual(['orders']);
  });

  it('creates nothing when one topic of a request already exists, and says which', async () => {
    const annals = freshAnnals();
    const admin = annals.admin();
    await admin.createTopics({ topics: [{ topic: 'existing' }] });
    const error = await admin.createTopics({ topics: [{ topic: 'fresh' }, { topic: 'existing' }] }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TopicAlreadyExistsError);
    expect((error as TopicAlreadyExistsError).topic).toBe('existing');
    expect(await admin.listTopics()).toEqual(['existing']);
    expect(await admin.createTopics({ topics: [{ topic: 'existing' }], ignoreExisting: true })).toBe(false);
  });

  it('validateOnly answers as creating would, existing topics included, and creates nothing', async () => {
    const admin = freshAnnals().admin();
    await admin.createTopics({ topics: [{ topic: 'existing' }] });
    expect(await admin.createTopics({ topics: [{ topic: 'fresh', numPartitions: 3 }], validateOnly: true })).toBe(true);
    const error = await admin.createTopics({ topics: [{ topic: 'fresh' }, { topic: 'existing' }], validateOnly: true }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TopicAlreadyExistsError);
    expect((error as TopicAlreadyExistsError).topic).toBe('existing');
    expect(await admin.createTopics({ topics: [{ topic: 'existing' }], validateOnly: true, ignoreExisting: true })).toBe(false);
    await expect(admin.createTopics({ topics: [{ topic: 'a b' }], validateOnly: true })).rejects.toBeInstanceOf(InvalidTopicError);
    expect(await admin.listTopics()).toEqual(['existing']);
  });

  it('refuses odd topic names and bad partition counts before touching the database', async () => {
    const admin = freshAnnals().admin();
    for (const topic of ['', 'a b', 'x'.repeat(250), '..', 'orders;DROP TABLE records', '"quoted"']) {
      await expect(admin.createTopics({ topics: [{ topic }] }), topic).rejects.toBeInstanceOf(InvalidTopicError);
    }
    await expect(admin.createTopics({ topics: [{ topic: 'zero', numPartitions: 0 }] })).rejects.toBeInstanceOf(InvalidPartitionsError);
    expect(await admin.listTopics()).toEqual([]);
  });

  it('finds offsets by timestamp and reports watermarks', async () => {
    const annals = freshAnnals();
    await annals.admin().createTopics({ topics: [{ topic: 'times', numPartitions: 2 }] });
    const producer = annals.producer();
    await producer.send({
      topic: 'times',
      messages: [
        { partition: 0, value: 'a', timestamp: 1_000 },
        { partition: 0, value: 'b', timestamp: 2_000 },
        { partition: 0, value: 'c', timestamp: 3_000 },
        { partition: 1, value: 'd', timestamp: 1_500 },
      ],
    });
    expect(await annals.admin().fetchTopicOffsetsByTimestamp('times', 2_000)).toEqual([
      { partition: 0, offset: '1' },
      { partition: 1, offset: '1' },
    ]);
    expect(await annals.admin().fetchTopicOffsets('times')).toEqual([
      { partition: 0, offset: '3', high: '3', low: '0' },
      { partition: 1, offset: '1', high: '1', low: '0' },
    ]);
  });
});

describe('producer', () => {
  it('sends KafkaJS messages: keys pick partitions, headers and tombstones round-trip, base offsets per partition', async () => {
    const annals = freshAnnals();
    await annals.admin().createTopics({ topics: [{ topic: 'raw', numPartitions: 4 }] });
    const producer = annals.producer();
    await producer.connect();
    const first = await producer.send({
      topic: 'raw',
      messages: [
        { key: 'customer-42', value: JSON.stringify({ n: 1 }), headers: { 'event-type': 'order.created', 'schema-version': '1' } },
        { key: 'customer-42', value: null },
        { key: Buffer.from([0, 255]), value: Buffer.from([1, 2, 3]), partition: 3 },
      ],
    });
    const again = await producer.send({ topic: 'raw', messages: [{ key: 'customer-42', value: 'x' }] });
    const p42 = first.find((m) => m.partition !== 3)!;
    expect(again[0]!.partition).toBe(p42.partition);
    expect(again[0]!.baseOffset).toBe('2');
    const { messages } = await annals.fetch('raw', p42.partition, 0n);
    expect(messages.map((m: KafkaMessage) => [m.offset, m.key?.toString(), m.value?.toString() ?? null])).toEqual([
      ['0', 'customer-42', '{"n":1}'],
      ['1', 'customer-42', null],
      ['2', 'customer-42', 'x'],
    ]);
    expect(messages[0]!.headers['event-type']!.toString()).toBe('order.created');
    const binary = await annals.fetch('raw', 3, 0n);
    expect([...binary.messages[0]!.key!]).toEqual([0, 255]);
    expect([...binary.messages[0]!.value!]).toEqual([1, 2, 3]);
  });

  it('spreads null keys stickily: one partition per send, moving between sends', async () => {
    const annals = freshAnnals();
    await annals.admin().createTopics({ topics: [{ topic: 'sticky', numPartitions: 6 }] });
    const producer = annals.producer();
    const used = new Set<number>();
    for (let i = 0; i < 12; i++) {
      const metadata = await producer.send({ topic: 'sticky', messages: Array.from({ length: 5 }, (_, j) => ({ value: `${i}-${j}` })) });
      expect(metadata.length).toBe(1);
      used.add(metadata[0]!.partition);
    }
    expect(used.size).toBeGreaterThan(1);
  });

  it('appends a send larger than one statement can carry atomically, in chunks, with dense offsets', async () => {
    const annals = freshAnnals();
    await annals.admin().createTopics({ topics: [{ topic: 'huge', numPartitions: 2 }] });
    const producer = annals.producer();
    await producer.send({ topic: 'huge', messages: [{ partition: 1, value: 'first' }] });
    const messages = Array.from({ length: 20_000 }, (_, i) => ({ partition: i % 2, value: `m${i}` }));
    const metadata = await producer.send({ topic: 'huge', messages });
    expect(metadata.map((m) => [m.partition, m.baseOffset]).sort()).toEqual([
      [0, '0'],
      [1, '1'],
    ]);
    const marks = await annals.admin().fetchTopicOffsets('huge');
    expect(marks.map((m) => m.high)).toEqual(['10000', '10001']);
    const tail = await annals.fetch('huge', 1, 10_000n);
    expect(tail.messages.map((m) => m.value!.toString())).toEqual(['m19999']);
  });

  it('coalesces concurrent sends and returns each its own offsets', async () => {
    const annals = freshAnnals();
    await annals.admin().createTopics({ topics: [{ topic: 'many', numPartitions: 1 }] });
    const producer = annals.producer();
    const results = await Promise.all(Array.from({ length: 200 }, (_, i) => producer.send({ topic: 'many', messages: [{ value: `m${i}` }] })));
    const offsets = results.map((r) => Number(r[0]!.baseOffset));
    expect(new Set(offsets).size).toBe(200);
    const { messages } = await annals.fetch('many', 0, 0n, { maxRecords: 1000 });
    for (const [i, r] of results.entries()) expect(messages[Number(r[0]!.baseOffset)]!.value!.toString()).toBe(`m${i}`);
  });

  it('one bad send does not fail the sends it was coalesced with', async () => {
    const annals = freshAnnals();
    await annals.admin().createTopics({ topics: [{ topic: 'mixed', numPartitions: 2 }, { topic: 'doomed', numPartitions: 1 }] });
    const producer = annals.producer();
    await producer.send({ topic: 'doomed', messages: [{ value: 'warm the metadata cache' }] });
    // The topic disappears behind the producer's cached metadata: its send fails at append time.
    await annals.storage.deleteTopics(['doomed']);
    const sends = [
      producer.send({ topic: 'mixed', messages: [{ value: 'a', partition: 0 }] }),
      producer.send({ topic: 'doomed', messages: [{ value: 'lost' }] }),
      producer.send({ topic: 'mixed', messages: [{ value: 'b', partition: 1 }] }),
    ];
    const settled = await Promise.allSettled(sends);
    expect(settled.map((s) => s.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect((settled[1] as PromiseRejectedResult).reason).toBeInstanceOf(UnknownTopicOrPartitionError);
  });

  it('publishes typed events with headers, and decodes them to the latest version', async () => {
    const annals = freshAnnals();
    await annals.admin().createTopics({ topics: [orders] });
    const producer = annals.producer();
    const metadata = await producer.publish(orders, OrderCreated, { orderId: 'o1', customerId: 'c42', totalCents: 100, currency: 'EUR' });
    // A version-1 record, as an older service would have written it.
    await producer.send({
      topic: 'orders',
      messages: [
        {
          key: 'c42',
          value: Buffer.from(JSON.stringify({ orderId: 'o0', customerId: 'c42', total: 9.99 })),
          headers: { 'event-type': 'order.created', 'schema-version': '1', 'content-type': 'application/json' },
        },
      ],
    });
    const { messages } = await annals.fetch('orders', metadata.partition, 0n);
    expect(messages[0]!.headers['event-type']!.toString()).toBe('order.created');
    expect(messages[0]!.headers['schema-version']!.toString()).toBe('2');
    const decoded = messages.map((m) => annals.decode(orders, metadata.partition, m));
    expect(decoded.map((d) => [d.type, d.storedVersion, d.payload])).toEqual([
      ['order.created', 2, { orderId: 'o1', customerId: 'c42', totalCents: 100, currency: 'EUR' }],
      ['order.created', 1, { orderId: 'o0', customerId: 'c42', totalCents: 999, currency: 'EUR' }],
    ]);
  });
});

describe('bad input is refused with a typed error and nothing written', () => {
  it('schema-invalid payload, unknown event type, oversized message, partition out of range, unknown topic', async () => {
    const annals = freshAnnals();
    const admin = annals.admin();
    await admin.createTopics({ topics: [orders, { topic: 'small', numPartitions: 2, configEntries: [{ name: 'max.message.bytes', value: '100' }] }] });
    const producer = annals.producer();
    const before = await highWatermarks(annals, 'orders');

    const invalid = await producer
      .publish(orders, OrderCreated, { orderId: 'o1', customerId: 'c42', totalCents: 1.5, currency: 'EUR' })
      .catch((e: unknown) => e);
    expect(invalid).toBeInstanceOf(SchemaValidationError);
    expect((invalid as SchemaValidationError).issues[0]!.path).toEqual(['totalCents']);
    expect((invalid as SchemaValidationError).topic).toBe('orders');

    await expect(producer.publish(orders, Unrelated as never, { id: 'x' } as never)).rejects.toBeInstanceOf(UnknownEventTypeError);
    await expect(
      producer.send({ topic: 'small', messages: [{ value: 'fine' }, { value: 'x'.repeat(101) }] }),
    ).rejects.toBeInstanceOf(MessageTooLargeError);
    await expect(producer.send({ topic: 'small', messages: [{ value: 'a', partition: 2 }] })).rejects.toBeInstanceOf(UnknownTopicOrPartitionError);
    await expect(producer.send({ topic: 'small', messages: [{ value: 'a', partition: -1 }] })).rejects.toBeInstanceOf(UnknownTopicOrPartitionError);
    await expect(producer.send({ topic: 'missing', messages: [{ value: 'a' }] })).rejects.toThrow(/does not exist. Create it first/);
    await expect(
      annals.transaction(async (tx) => {
        await tx.send({ topic: 'small', messages: [{ value: 'ok' }] });
        await tx.publish(orders, OrderCreated, { orderId: 'o', customerId: 'c', totalCents: 1, currency: 1 as never });
      }),
    ).rejects.toBeInstanceOf(SchemaValidationError);

    expect(await highWatermarks(annals, 'orders')).toEqual(before);
    expect(await highWatermarks(annals, 'small')).toEqual(['0', '0']);
  });

  it('refuses stored records that cannot be decoded, with the reason and the record named', async () => {
    const annals = freshAnnals();
    await annals.admin().createTopics({ topics: [orders] });
    const producer = annals.producer();
    const headers = (type: string, version: string) => ({ 'event-type': type, 'schema-version': version, 'content-type': 'application/msgpack' });
    await producer.send({
      topic: 'orders',
      messages: [
        { key: 'k', value: Buffer.from([0xdb, 0xff, 0xff, 0xff, 0xff]), headers: headers('order.created', '2') }, // str32 claiming 4 GiB
        { key: 'k', value: Buffer.from([0x80]), headers: headers('order.shipped', '1') },
        { key: 'k', value: Buffer.from([0x80]), headers: headers('order.created', '7') },
      ],
    });
    const partition = (await producer.publish(orders, OrderPaid, { orderId: 'o', customerId: 'k' })).partition;
    const { messages } = await annals.fetch('orders', partition, 0n);
    const codes = messages.slice(0, 3).map((m) => {
      try {
        annals.decode(orders, partition, m);
        return 'decoded';
      } catch (e) {
        return `${(e as { code: string }).code}@${(e as { offset: string }).offset}`;
      }
    });
    expect(codes).toEqual(['CORRUPT_MESSAGE@0', 'UNKNOWN_EVENT_TYPE@1', 'UPCAST_FAILED@2']);
  });
});

describe('transactions and the reader', () => {
  it("commits the application's write and its publishes together", async () => {
    const annals = freshAnnals<{ notes: { id: number; text: string } }>();
    await annals.admin().createTopics({ topics: [orders, { topic: 'audit' }] });
    const { sql } = await import('kysely');
    await annals.transaction(async (tx) => {
      await sql`CREATE TABLE notes (id int PRIMARY KEY, text text NOT NULL)`.execute(tx.db);
    });
    const result = await annals.transaction(async (tx) => {
      await tx.db.insertInto('notes').values({ id: 1, text: 'hello' }).execute();
      await tx.publish(orders, OrderPaid, { orderId: 'o1', customerId: 'c1' });
      await tx.send({ topic: 'audit', messages: [{ value: 'note 1 written' }] });
      return 'done';
    });
    expect(result).toBe('done');
    expect((await annals.fetch('audit', 0, 0n)).messages.map((m) => m.value!.toString())).toEqual(['note 1 written']);
    const notes = await annals.transaction((tx) => tx.db.selectFrom('notes').selectAll().execute());
    expect(notes).toEqual([{ id: 1, text: 'hello' }]);
  });

  it('tails partitions assigned by hand, woken by notifications, and can seek back', async () => {
    const annals = freshAnnals();
    await annals.admin().createTopics({ topics: [{ topic: 'tail', numPartitions: 2 }] });
    const producer = annals.producer();
    await producer.send({ topic: 'tail', messages: [{ partition: 0, value: 'old' }] });
    // pollIntervalMs is long, so only a NOTIFY wake-up can deliver in time.
    const reader = annals.reader({ pollIntervalMs: 60_000 });
    await reader.assign([
      { topic: 'tail', partition: 0, offset: 'latest' },
      { topic: 'tail', partition: 1 },
    ]);
    const received: string[] = [];
    let sought = false;
    const running = reader.run({
      eachMessage: async ({ partition, message }) => {
        received.push(`${partition}:${message.value!.toString()}`);
        if (message.value!.toString() === 'seek' && !sought) {
          sought = true;
          await reader.seek({ topic: 'tail', partition: 0, offset: 'earliest' });
        }
      },
    });
    await sleep(100);
    await producer.send({ topic: 'tail', messages: [{ partition: 1, value: 'new' }] });
    await producer.send({ topic: 'tail', messages: [{ partition: 0, value: 'seek' }] });
    const deadline = Date.now() + 10_000;
    while (received.length < 4 && Date.now() < deadline) await sleep(10);
    await reader.stop();
    await running;
    expect(received).toEqual(expect.arrayContaining(['1:new', '0:seek', '0:old']));
    expect(received.filter((r) => r === '0:seek').length).toBe(2);
    expect(reader.position('tail', 0)).toBe('2');
  });
});
