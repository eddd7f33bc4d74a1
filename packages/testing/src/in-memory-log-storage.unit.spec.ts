/**
 * `InMemoryLogStorage`: the shared conformance suite (the same one `PgLogStorage` passes), then
 * what only the in-memory store has — the injected clock, `tx.db` staging and rollback, the
 * deadlock and timeout behaviour of its partition locks, and its input validation.
 */
import { DEFAULT_TOPIC_CONFIG, type AppendRecord, type TopicSpec } from '@annals/core';
import { describe, expect, it } from 'vitest';
import { describeLogStorageConformance } from './conformance.js';
import { InMemoryDatabase, InMemoryLogStorage, type TableSchema, type UntypedTables } from './in-memory-log-storage.js';

describeLogStorageConformance('InMemoryLogStorage', async () => ({ storage: new InMemoryLogStorage() }), { propertyRuns: 200 });

const rec = (value: string | null, timestamp: number | null = null): AppendRecord => ({
  key: null,
  value: value === null ? null : Buffer.from(value),
  headers: null,
  timestamp,
});
const spec = (name: string, partitions = 1): TopicSpec => ({ name, partitions, config: DEFAULT_TOPIC_CONFIG });

async function connected<DB extends TableSchema = UntypedTables>(
  input: ConstructorParameters<typeof InMemoryLogStorage<DB>>[0] = {},
): Promise<InMemoryLogStorage<DB>> {
  const storage = new InMemoryLogStorage<DB>(input);
  await storage.connect();
  await storage.createTopics([spec('orders', 2)]);
  return storage;
}

describe('InMemoryLogStorage: injected clock', () => {
  it('stamps records appended with a null timestamp with the injected clock, and keeps given ones', async () => {
    let clock = 1_000;
    await using storage = await connected({ now: () => clock });
    await storage.append([{ topic: 'orders', partition: 0, records: [rec('a'), rec('b', 42)] }]);
    clock = 5_000.7;
    await storage.transaction(async (tx) => {
      await tx.append([{ topic: 'orders', partition: 0, records: [rec('c')] }]);
      clock = 9_000; // stamped at append, not at commit
    });
    const { records } = await storage.fetch('orders', 0, 0n, { maxRecords: 10, maxBytes: 1 << 20 });
    expect(records.map((r) => r.timestamp)).toEqual([1_000, 42, 5_000]);
    expect(await storage.fetchOffsetsByTimestamp('orders', 2_000)).toEqual([
      { partition: 0, offset: 2n },
      { partition: 1, offset: 0n },
    ]);
    expect(storage.now()).toBe(9_000);
  });

  it('measures transaction timeouts with the injected clock', async () => {
    let clock = 0;
    await using storage = await connected({ now: () => clock });
    await expect(
      storage.transaction(
        async (tx) => {
          await tx.append([{ topic: 'orders', partition: 0, records: [rec('late')] }]);
          clock += 1_001;
        },
        { timeoutMs: 1_000 },
      ),
    ).rejects.toMatchObject({ name: 'TransactionTimeoutError' });
    expect((await storage.fetchWatermarks('orders'))[0]!.high).toBe(0n);
    await storage.transaction(
      async () => {
        clock += 1_000;
      },
      { timeoutMs: 1_000 },
    );
  });

  it('rejects a clock that is not a function', () => {
    expect(() => new InMemoryLogStorage({ now: 5 as never })).toThrow(expect.objectContaining({ name: 'InvalidOptionsError' }));
  });
});

interface Tables {
  orders: { id: string; totalCents: number; tags?: string[] };
  counters: number;
}

describe('InMemoryLogStorage: tx.db (InMemoryDatabase)', () => {
  it('stages writes in the transaction and applies them with its appends on commit', async () => {
    await using storage = await connected<Tables>();
    storage.db.tables.get('counters').set('seen', 1);
    await storage.transaction(async (tx) => {
      const orders = tx.db.tables.get('orders');
      orders.set('o-1', { id: 'o-1', totalCents: 1250 });
      tx.db.tables.get('counters').set('seen', tx.db.tables.get('counters').get('seen')! + 1);
      // The transaction reads its own writes; the committed state does not show them yet.
      expect(orders.get('o-1')).toEqual({ id: 'o-1', totalCents: 1250 });
      expect(orders.size).toBe(1);
      expect(tx.db.inTransaction).toBe(true);
      expect(storage.db.tables.get('orders').get('o-1')).toBeUndefined();
      expect(storage.db.tables.get('counters').get('seen')).toBe(1);
      await tx.append([{ topic: 'orders', partition: 0, records: [rec('o-1')] }]);
    });
    expect(storage.db.snapshot()).toEqual({ counters: { seen: 2 }, orders: { 'o-1': { id: 'o-1', totalCents: 1250 } } });
    expect((await storage.fetchWatermarks('orders'))[0]!.high).toBe(1n);
  });

  it('drops the staged writes, with the appends, when the transaction throws', async () => {
    await using storage = await connected<Tables>();
    storage.db.tables.get('orders').set('o-1', { id: 'o-1', totalCents: 100 });
    await expect(
      storage.transaction(async (tx) => {
        tx.db.tables.get('orders').set('o-1', { id: 'o-1', totalCents: 999 });
        tx.db.tables.get('orders').set('o-2', { id: 'o-2', totalCents: 200 });
        expect(tx.db.tables.get('orders').delete('o-1')).toBe(true);
        expect(tx.db.tables.get('orders').has('o-1')).toBe(false);
        expect(tx.db.tables.get('orders').keys()).toEqual(['o-2']);
        await tx.append([{ topic: 'orders', partition: 0, records: [rec('lost')] }]);
        throw new Error('handler failed');
      }),
    ).rejects.toThrow('handler failed');
    expect(storage.db.snapshot()).toEqual({ orders: { 'o-1': { id: 'o-1', totalCents: 100 } } });
    expect((await storage.fetchWatermarks('orders'))[0]!.high).toBe(0n);
  });

  it('copies rows in and out: mutating a row read or written changes nothing until it is set', async () => {
    await using storage = await connected<Tables>();
    const row = { id: 'o-1', totalCents: 100, tags: ['a'] };
    storage.db.tables.get('orders').set('o-1', row);
    row.tags.push('mutated');
    const read = storage.db.tables.get('orders').get('o-1')!;
    read.totalCents = 0;
    await expect(
      storage.transaction(async (tx) => {
        const inTx = tx.db.tables.get('orders').get('o-1')!;
        inTx.totalCents = 5; // not written back
        throw new Error('abort');
      }),
    ).rejects.toThrow('abort');
    expect(storage.db.tables.get('orders').get('o-1')).toEqual({ id: 'o-1', totalCents: 100, tags: ['a'] });
  });

  it('entries keep insertion order, with a transaction overlaying its writes; deletes commit', async () => {
    await using storage = await connected<Tables>();
    const counters = storage.db.tables.get('counters');
    counters.set('a', 1);
    counters.set('b', 2);
    counters.set('c', 3);
    await storage.transaction(async (tx) => {
      const t = tx.db.tables.get('counters');
      t.set('d', 4);
      t.set('b', 20);
      t.delete('a');
      expect(t.entries()).toEqual([
        ['b', 20],
        ['c', 3],
        ['d', 4],
      ]);
      expect(t.values()).toEqual([20, 3, 4]);
      expect(tx.db.tables.names()).toEqual(['counters']);
    });
    expect(counters.entries()).toEqual([
      ['b', 20],
      ['c', 3],
      ['d', 4],
    ]);
    expect(counters.delete('zzz')).toBe(false);
  });

  it('a tx.db or tx used after its transaction ended throws InvalidTransactionStateError', async () => {
    await using storage = await connected();
    let leaked: any;
    let leakedDb!: InMemoryDatabase;
    await storage.transaction(async (tx) => {
      leaked = tx;
      leakedDb = tx.db;
      tx.db.tables.get('t').set('k', 1);
    });
    expect(() => leakedDb.tables.get('t').get('k')).toThrow(expect.objectContaining({ name: 'InvalidTransactionStateError' }));
    expect(() => leaked.db).toThrow(expect.objectContaining({ name: 'InvalidTransactionStateError' }));
    await expect(leaked.append([{ topic: 'orders', partition: 0, records: [rec('late')] }])).rejects.toMatchObject({
      name: 'InvalidTransactionStateError',
    });
    expect(storage.db.tables.get('t').get('k')).toBe(1);
  });

  it('is shared when passed in, and a standalone InMemoryDatabase writes at once', async () => {
    const database = new InMemoryDatabase<Tables>();
    database.tables.get('counters').set('x', 1);
    expect(database.inTransaction).toBe(false);
    await using storage = await connected<Tables>({ database });
    expect(storage.db).toBe(database);
    await storage.transaction(async (tx) => {
      tx.db.tables.get('counters').set('x', 2);
    });
    expect(database.tables.get('counters').get('x')).toBe(2);
  });

  it('refuses empty table names and non-string keys', () => {
    const db = new InMemoryDatabase();
    expect(() => db.tables.get('')).toThrow(expect.objectContaining({ name: 'InvalidOptionsError' }));
    expect(() => db.tables.get('t').set(1 as never, 'x')).toThrow(expect.objectContaining({ name: 'InvalidOptionsError' }));
  });
});

describe('InMemoryLogStorage: locks, timeouts and fencing', () => {
  it('refuses a deadlocking lock wait at once (no detector delay) and lets the other transaction commit', async () => {
    await using storage = await connected();
    let bAppended!: () => void;
    const bReady = new Promise<void>((r) => (bAppended = r));
    const a = storage.transaction(async (tx) => {
      await tx.append([{ topic: 'orders', partition: 0, records: [rec('a0')] }]);
      await bReady;
      await tx.append([{ topic: 'orders', partition: 1, records: [rec('a1')] }]);
    });
    const b = storage.transaction(async (tx) => {
      await tx.append([{ topic: 'orders', partition: 1, records: [rec('b1')] }]);
      bAppended();
      await new Promise((r) => setTimeout(r, 5));
      // The callback swallows the error: the transaction still rolls back, with that error.
      await tx.append([{ topic: 'orders', partition: 0, records: [rec('b0')] }]).catch(() => {});
      await expect(tx.append([{ topic: 'orders', partition: 1, records: [rec('b1')] }])).rejects.toMatchObject({
        name: 'ConcurrentTransactionsError',
      });
    });
    await a;
    await expect(b).rejects.toMatchObject({ name: 'ConcurrentTransactionsError', retriable: true });
    expect((await storage.fetchWatermarks('orders')).map((w) => w.high)).toEqual([1n, 1n]);
  });

  it('a timed-out transaction releases its partitions at its deadline, even while its callback still runs', async () => {
    await using storage = await connected();
    let release!: () => void;
    const stuck = storage.transaction(
      async (tx) => {
        await tx.append([{ topic: 'orders', partition: 0, records: [rec('stuck')] }]);
        await new Promise<void>((r) => (release = r));
      },
      { timeoutMs: 20 },
    );
    const [r] = await storage.append([{ topic: 'orders', partition: 0, records: [rec('next')] }]);
    expect(r!.baseOffset).toBe(0n);
    release();
    await expect(stuck).rejects.toMatchObject({ name: 'TransactionTimeoutError' });
  });

  it('a transaction fenced while open does not commit (the fence is checked again at commit)', async () => {
    await using storage = await connected();
    const old = await storage.initProducer('tx');
    const run = storage.transaction(async (tx) => {
      await tx.append([{ topic: 'orders', partition: 0, records: [rec('zombie')] }], {
        fence: { transactionalId: 'tx', producerId: old.producerId, epoch: old.epoch },
      });
      await storage.initProducer('tx');
    });
    await expect(run).rejects.toMatchObject({ name: 'ProducerFencedError' });
    expect((await storage.fetchWatermarks('orders'))[0]!.high).toBe(0n);
  });

  it('a transaction whose topic was deleted while it was open fails at commit and writes nothing', async () => {
    await using storage = await connected();
    const run = storage.transaction(async (tx) => {
      await tx.append([{ topic: 'orders', partition: 0, records: [rec('orphan')] }]);
      await storage.deleteTopics(['orders']);
      await storage.createTopics([spec('orders', 2)]);
    });
    await expect(run).rejects.toMatchObject({ name: 'UnknownTopicOrPartitionError' });
    expect((await storage.fetchWatermarks('orders'))[0]!.high).toBe(0n);
  });

  it('commits appends a callback started without awaiting them', async () => {
    await using storage = await connected();
    await storage.transaction(async (tx) => {
      void tx.append([{ topic: 'orders', partition: 0, records: [rec('fire-and-forget')] }]);
    });
    expect((await storage.fetchWatermarks('orders'))[0]!.high).toBe(1n);
  });
});

describe('InMemoryLogStorage: validation and lifecycle', () => {
  it('validates topic names, partition counts and configs on create, creating nothing', async () => {
    await using storage = await connected();
    await expect(storage.createTopics([spec('ok'), spec('not ok')])).rejects.toMatchObject({ name: 'InvalidTopicError' });
    await expect(storage.createTopics([spec('ok'), spec('zero', 0)])).rejects.toMatchObject({ name: 'InvalidPartitionsError' });
    await expect(
      storage.createTopics([{ name: 'bad-config', partitions: 1, config: { ...DEFAULT_TOPIC_CONFIG, 'retention.ms': -7 } }]),
    ).rejects.toMatchObject({ name: 'InvalidConfigError' });
    await expect(storage.alterTopicConfig('orders', (c) => ({ ...c, 'cleanup.policy': 'sometimes' as never }))).rejects.toMatchObject({
      name: 'InvalidConfigError',
    });
    expect(await storage.listTopics()).toEqual(['orders']);
    expect((await storage.describeTopics(['orders']))[0]!.config).toEqual(DEFAULT_TOPIC_CONFIG);
  });

  it('refuses records whose bytes are not Uint8Arrays or whose timestamp is not a number, writing nothing', async () => {
    await using storage = await connected();
    await expect(
      storage.append([{ topic: 'orders', partition: 0, records: [rec('fine'), { ...rec(null), value: 'text' as never }] }]),
    ).rejects.toMatchObject({ name: 'InvalidOptionsError' });
    await expect(storage.append([{ topic: 'orders', partition: 0, records: [rec('x', Number.NaN)] }])).rejects.toMatchObject({
      name: 'InvalidOptionsError',
    });
    expect((await storage.fetchWatermarks('orders'))[0]!.high).toBe(0n);
  });

  it('calls every watcher; disconnect stops watches', async () => {
    const storage = await connected();
    const calls: string[] = [];
    await storage.watch(['orders'], () => calls.push('first'));
    await storage.watch(['orders'], () => calls.push('second'));
    await storage.append([{ topic: 'orders', partition: 0, records: [rec('a')] }]);
    await Promise.resolve();
    expect(calls).toEqual(['first', 'second']);
    await storage.disconnect();
    await storage.connect();
    await storage.append([{ topic: 'orders', partition: 0, records: [rec('b')] }]);
    await Promise.resolve();
    expect(calls).toEqual(['first', 'second']);
  });

  it('describes itself and disposes with await using', async () => {
    let storage: InMemoryLogStorage;
    {
      await using s = await connected({ description: 'unit' });
      storage = s;
      expect(s.description).toBe('unit');
    }
    await expect(storage.listTopics()).rejects.toMatchObject({ name: 'NotConnectedError' });
  });
});
