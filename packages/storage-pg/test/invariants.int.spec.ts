/**
 * The log's invariants on a real PostgreSQL:
 *  1. ordered visibility — dense offsets, visible in offset order, no rolled-back record ever seen;
 *  2. key ordering — keys land where Kafka's default partitioner puts them;
 *  5. atomic publishes — a multi-topic transaction is visible all at once or not at all.
 */
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { AppendRecord } from '@annals/core';
import { Partitioners } from 'kafkajs';
import { sql } from 'kysely';
import { describe, expect, it } from 'vitest';
import { adminClient, database, freshAnnals, freshStorage, sleep } from './support.js';

const rec = (value: string, key: string | null = null): AppendRecord => ({
  key: key === null ? null : Buffer.from(key),
  value: Buffer.from(value),
  headers: null,
  timestamp: null,
});

describe('invariant 1: ordered visibility', () => {
  it('16 concurrent producers, rollbacks and a long transaction: a tailing reader sees every committed record once, in dense order', async () => {
    const annals = freshAnnals();
    await annals.admin().createTopics({ topics: [{ topic: 'inv1', numPartitions: 1 }] });
    const storage = annals.storage;
    const producer = annals.producer();
    const acknowledged = new Set<string>();
    const seen: string[] = [];
    const violations: string[] = [];
    let writersDone = false;

    const reader = (async () => {
      let next = 0n;
      const deadline = Date.now() + 90_000;
      while (Date.now() < deadline) {
        // Read before the fetch: a fetch in flight when the last writer is acknowledged may have
        // taken its snapshot before that commit, so only a fetch begun after it proves the end.
        const afterWriters = writersDone;
        const r = await storage.fetch('inv1', 0, next, { maxRecords: 100, maxBytes: 1 << 20 });
        for (const record of r.records) {
          if (record.offset !== next) violations.push(`expected offset ${next}, saw ${record.offset}`);
          const value = Buffer.from(record.value!).toString();
          if (value.startsWith('rollback')) violations.push(`rolled-back record visible: ${value}`);
          seen.push(value);
          next = record.offset + 1n;
        }
        if (afterWriters && r.records.length === 0 && next === r.highWatermark) return next;
        if (r.records.length === 0) await sleep(1);
      }
      throw new Error('reader did not catch up within 90 s');
    })();

    // A transaction that takes the partition's head lock early and holds it open for 2 s.
    const long = storage.transaction(async (stx) => {
      await stx.append([{ topic: 'inv1', partition: 0, records: [rec('long-1'), rec('long-2')] }]);
      await sleep(2_000);
    });

    const writers = Array.from({ length: 16 }, (_, w) =>
      (async () => {
        for (let i = 0; i < 30; i++) {
          const value = `w${w}-${i}`;
          const mode = (w + i) % 6;
          if (mode === 0) {
            // Rolled back after appending: its offsets must be reused, its records never seen.
            await expect(
              storage.transaction(async (stx) => {
                await stx.append([{ topic: 'inv1', partition: 0, records: [rec(`rollback-${value}`), rec(`rollback-${value}b`)] }]);
                await sleep(i % 3);
                throw new Error('roll back');
              }),
            ).rejects.toThrow('roll back');
          } else if (mode === 1) {
            await annals.transaction(async (tx) => {
              await tx.send({ topic: 'inv1', messages: [{ value }] });
            });
            acknowledged.add(value);
          } else if (mode === 2) {
            await producer.send({ topic: 'inv1', messages: [{ value }, { value: `${value}b` }] });
            acknowledged.add(value).add(`${value}b`);
          } else {
            await storage.append([{ topic: 'inv1', partition: 0, records: [rec(value)] }]);
            acknowledged.add(value);
          }
        }
      })(),
    );
    await Promise.all([...writers, long]);
    acknowledged.add('long-1').add('long-2');
    writersDone = true;
    const end = await reader;

    expect(violations).toEqual([]);
    expect(end).toBe(BigInt(acknowledged.size));
    expect(seen.length).toBe(acknowledged.size);
    expect(new Set(seen)).toEqual(acknowledged);
  }, 120_000);
});

describe('invariant 2: key ordering', () => {
  it("puts every key on the partition Kafka's default partitioner chooses, and keeps per-key order", async () => {
    const annals = freshAnnals();
    const counts = [1, 3, 6, 50];
    await annals.admin().createTopics({ topics: counts.map((n) => ({ topic: `keys-${n}`, numPartitions: n })) });
    const kafka = Partitioners.DefaultPartitioner();
    const producer = annals.producer();
    const keys = Array.from({ length: 300 }, (_, i) => (i % 7 === 0 ? `ü-ключ-${i}` : `customer-${i * 7919}`));
    for (const n of counts) {
      const messages = keys.flatMap((key) => [{ key, value: `${key}#1` }, { key, value: `${key}#2` }]);
      const metadata = await producer.send({ topic: `keys-${n}`, messages });
      expect(metadata.length).toBeLessThanOrEqual(n);
      const partitionMetadata = { topic: `keys-${n}`, partitionMetadata: Array.from({ length: n }, (_, partitionId) => ({ partitionId, leader: 0 })) };
      for (let p = 0; p < n; p++) {
        const { messages: read } = await annals.fetch(`keys-${n}`, p, 0n, { maxRecords: 10_000 });
        const order = new Map<string, number>();
        for (const m of read) {
          const key = m.key!.toString();
          const expected = kafka({ topic: `keys-${n}`, partitionMetadata: partitionMetadata.partitionMetadata, message: { key, value: null } } as never);
          expect(p, `key ${key} on ${n} partitions`).toBe(expected);
          const sequence = Number(m.value!.toString().split('#')[1]);
          expect(sequence).toBe((order.get(key) ?? 0) + 1);
          order.set(key, sequence);
        }
      }
    }
  });
});

describe('invariant 5: atomic publishes', () => {
  it('a transaction that throws leaves neither its publishes nor its own writes, and consumes no offsets', async () => {
    const annals = freshAnnals<{ app_orders: { id: string } }>();
    const admin = annals.admin();
    await admin.createTopics({ topics: [{ topic: 'a5', numPartitions: 2 }, { topic: 'b5', numPartitions: 3 }] });
    await annals.transaction(async (tx) => {
      await sql`CREATE TABLE app_orders (id text PRIMARY KEY)`.execute(tx.db);
    });
    await expect(
      annals.transaction(async (tx) => {
        await tx.db.insertInto('app_orders').values({ id: 'o1' }).execute();
        await tx.send({ topic: 'a5', messages: [{ key: 'k', value: 'a' }] });
        await tx.sendBatch({ topicMessages: [{ topic: 'b5', messages: [{ key: 'k', value: 'b' }, { key: 'j', value: 'c' }] }] });
        throw new Error('changed my mind');
      }),
    ).rejects.toThrow('changed my mind');
    const producer = annals.producer();
    const tx = await producer.transaction();
    await tx.send({ topic: 'a5', messages: [{ key: 'k', value: 'aborted' }] });
    await tx.abort();
    for (const t of ['a5', 'b5']) {
      for (const o of await admin.fetchTopicOffsets(t)) expect(o.high, `${t}[${o.partition}]`).toBe('0');
    }
    await annals.transaction(async (tx) => {
      expect(await tx.db.selectFrom('app_orders').selectAll().execute()).toEqual([]);
    });
  });

  it('a process killed before COMMIT (after appending) leaves nothing visible and no gap', async () => {
    const storage = freshStorage();
    await storage.connect();
    await storage.createTopics([
      { name: 'k5a', partitions: 1, config: (await import('@annals/core')).DEFAULT_TOPIC_CONFIG },
      { name: 'k5b', partitions: 1, config: (await import('@annals/core')).DEFAULT_TOPIC_CONFIG },
    ]);
    const child = fork(fileURLToPath(new URL('./fixtures/append-and-hang.mjs', import.meta.url)), [database.connectionString, storage.schema], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      // Plain node on the built packages: not vitest's loader flags and source conditions.
      execArgv: [],
    });
    const message = await new Promise<unknown>((resolve, reject) => {
      child.once('message', resolve);
      child.once('exit', (code) => reject(new Error(`child exited early with ${code}`)));
    });
    expect(message).toBe('appended-not-committed');
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    await exited;
    // The dead session's locks free once Postgres sees the socket close; the next append gets offset 0.
    const [result] = await storage.append([{ topic: 'k5a', partition: 0, records: [rec('after')] }]);
    expect(result!.baseOffset).toBe(0n);
    const a = await storage.fetch('k5a', 0, 0n, { maxRecords: 10, maxBytes: 1 << 20 });
    const b = await storage.fetch('k5b', 0, 0n, { maxRecords: 10, maxBytes: 1 << 20 });
    expect(a.records.map((r) => Buffer.from(r.value!).toString())).toEqual(['after']);
    expect(b.records).toEqual([]);
  });

  it('a committed multi-topic transaction becomes visible all at once', async () => {
    const annals = freshAnnals();
    await annals.admin().createTopics({ topics: [{ topic: 'x5', numPartitions: 2 }, { topic: 'y5', numPartitions: 3 }] });
    const storage = annals.storage as import('../src/index.js').PgLogStorage;
    const client = await adminClient();
    const torn: string[] = [];
    let done = false;
    const sampler = (async () => {
      let samples = 0;
      while (!done && samples < 100_000) {
        samples++;
        await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
        const { rows } = await client.query(
          `SELECT topic, count(*)::int AS n FROM "${storage.schema}".records WHERE topic IN ('x5', 'y5') GROUP BY topic`,
        );
        await client.query('COMMIT');
        const x = rows.find((r) => r.topic === 'x5')?.n ?? 0;
        const y = rows.find((r) => r.topic === 'y5')?.n ?? 0;
        // Each transaction writes 2 records to x5 and 3 to y5.
        if (x * 3 !== y * 2) torn.push(`x5=${x} y5=${y}`);
      }
      return samples;
    })();
    for (let i = 0; i < 60; i++) {
      await annals.transaction(async (tx) => {
        await tx.send({ topic: 'x5', messages: [{ key: `k${i}`, value: 'x' }, { key: `j${i}`, value: 'x' }] });
        await tx.send({ topic: 'y5', messages: [0, 1, 2].map((p) => ({ partition: p, value: 'y' })) });
      });
    }
    done = true;
    expect(await sampler).toBeGreaterThan(0);
    expect(torn).toEqual([]);
    const totals = await Promise.all(['x5', 'y5'].map(async (t) => (await annals.admin().fetchTopicOffsets(t)).reduce((s, o) => s + Number(o.high), 0)));
    expect(totals).toEqual([120, 180]);
  });
});
