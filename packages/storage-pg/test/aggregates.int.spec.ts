/**
 * Event-sourced aggregates on PostgreSQL (issue 6): expected-version appends under real
 * concurrency, the one-statement append and its stale-snapshot path, the stream index, and
 * streams in transactions and consumer handlers. The port-level behaviour (both stores) is in
 * `@annals/testing`'s conformance suite; this file is about what only a real database shows.
 */
import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import pg from 'pg';
import { sql } from 'kysely';
import { describe, expect, it } from 'vitest';
import { Annals, DEFAULT_TOPIC_CONFIG, WrongExpectedVersionError, partitionFor, type AppendRecord, type TopicConfig } from '@annals/core';
import { PgLogStorage } from '../src/index.js';
import { Order, OrderPaid, orders } from '../../core/test/fixtures/order-aggregate.js';
import { adminClient, database, freshAnnals, freshStorage, sleep } from './support.js';
import { readStreamStatement, streamTables } from '../src/plans-aggregates.js';
import { tables } from '../src/plans.js';

const fcSeed = process.env['FC_SEED'] === undefined ? {} : { seed: Number(process.env['FC_SEED']) };
const streamConfig = { ...DEFAULT_TOPIC_CONFIG, 'retention.ms': -1 } as TopicConfig;
const rec = (key: string, value: string): AppendRecord => ({ key: Buffer.from(key), value: Buffer.from(value), headers: null, timestamp: null });
const paid = (orderId: string, amountCents: number) => ({ type: 'order.paid' as const, payload: { orderId, amountCents } });

describe('expected-version appends under concurrency', () => {
  it('20 concurrent writers on one stream: versions dense, no lost update, every loser got WrongExpectedVersionError', async () => {
    const annals = freshAnnals();
    await annals.admin().createTopics({ topics: [orders] });
    await annals.aggregates.handle(Order, orders, 'o-1', { type: 'place', orderId: 'o-1', totalCents: 1_000_000 });
    const wins: Array<{ writer: number; round: number; previous: number; version: number }> = [];
    const losses: WrongExpectedVersionError[] = [];
    await Promise.all(
      Array.from({ length: 20 }, async (_, writer) => {
        for (let round = 0; round < 8; round++) {
          const { version } = await annals.aggregates.load(orders, 'o-1');
          try {
            const r = await annals.aggregates.append(orders, 'o-1', [paid('o-1', 1 + writer * 100 + round)], { expectedVersion: version });
            wins.push({ writer, round, previous: r.previousVersion, version: r.version });
          } catch (error) {
            if (!(error instanceof WrongExpectedVersionError)) throw error;
            expect(error.expectedVersion).toBe(version);
            expect(error.actualVersion).toBeGreaterThan(version);
            losses.push(error);
          }
        }
      }),
    );
    expect(wins.length + losses.length).toBe(160);
    expect(losses.length).toBeGreaterThan(0);
    // One winner per version: the winners' previous versions are 1, 2, 3, … without a gap or a repeat.
    expect(wins.map((w) => w.previous).sort((a, b) => a - b)).toEqual(wins.map((_, i) => i + 1));
    const stream = await annals.aggregates.load(orders, 'o-1');
    expect(stream.version).toBe(1 + wins.length);
    expect(stream.events.map((e) => e.version)).toEqual(stream.events.map((_, i) => i + 1));
    expect(stream.events.map((e) => e.offset)).toEqual(stream.events.map((_, i) => BigInt(i)));
    // No lost update: exactly the winners' payments are in the stream, each once, in version order.
    const byVersion = [...wins].sort((a, b) => a.version - b.version).map((w) => 1 + w.writer * 100 + w.round);
    expect(stream.events.slice(1).map((e) => (e.payload as { amountCents: number }).amountCents)).toEqual(byVersion);
  });

  it('20 concurrent handles with retries all land: the fold sees every payment once', async () => {
    const annals = freshAnnals();
    await annals.admin().createTopics({ topics: [orders] });
    await annals.aggregates.handle(Order, orders, 'o-1', { type: 'place', orderId: 'o-1', totalCents: 1_000_000 });
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) => annals.aggregates.handle(Order, orders, 'o-1', { type: 'pay', orderId: 'o-1', amountCents: i + 1 }, { maxRetries: 100 })),
    );
    expect(results.map((r) => r.version).sort((a, b) => a - b)).toEqual(Array.from({ length: 20 }, (_, i) => i + 2));
    expect(results.some((r) => r.retries > 0)).toBe(true);
    const { state, version } = await annals.aggregates.aggregate(Order, orders, 'o-1');
    expect([version, state.paidCents]).toEqual([21, (20 * 21) / 2]);
  });

  it('property: random interleavings of handles, stale appends and plain publishes of the key keep the fold equal to the winners', async () => {
    const annals = freshAnnals();
    let run = 0;
    const op = fc.oneof(
      { weight: 4, arbitrary: fc.record({ kind: fc.constant('handle' as const), cents: fc.integer({ min: 1, max: 99 }), delay: fc.integer({ min: 0, max: 4 }) }) },
      { weight: 2, arbitrary: fc.record({ kind: fc.constant('stale' as const), cents: fc.integer({ min: 1, max: 99 }), delay: fc.integer({ min: 0, max: 4 }) }) },
      { weight: 1, arbitrary: fc.record({ kind: fc.constant('publish' as const), cents: fc.integer({ min: 1, max: 99 }), delay: fc.integer({ min: 0, max: 4 }) }) },
    );
    await fc.assert(
      fc.asyncProperty(fc.array(fc.array(op, { minLength: 1, maxLength: 5 }), { minLength: 2, maxLength: 8 }), async (writers) => {
        const id = `o-${++run}`;
        if (run === 1) await annals.admin().createTopics({ topics: [orders] });
        await annals.aggregates.handle(Order, orders, id, { type: 'place', orderId: id, totalCents: 1_000_000 });
        let landed = 0;
        let conflicts = 0;
        await Promise.all(
          writers.map(async (ops) => {
            for (const o of ops) {
              await sleep(o.delay);
              if (o.kind === 'handle') {
                await annals.aggregates.handle(Order, orders, id, { type: 'pay', orderId: id, amountCents: o.cents }, { maxRetries: 100 });
                landed += o.cents;
              } else if (o.kind === 'publish') {
                await annals.producer().publish(orders, OrderPaid, { orderId: id, amountCents: o.cents });
                landed += o.cents;
              } else {
                const { version } = await annals.aggregates.load(orders, id);
                await sleep(o.delay);
                try {
                  await annals.aggregates.append(orders, id, [paid(id, o.cents)], { expectedVersion: version });
                  landed += o.cents;
                } catch (error) {
                  expect(error).toBeInstanceOf(WrongExpectedVersionError);
                  conflicts++;
                }
              }
            }
          }),
        );
        const { state, version } = await annals.aggregates.aggregate(Order, orders, id);
        const stream = await annals.aggregates.load(orders, id);
        expect(state.paidCents).toBe(landed);
        expect(version).toBe(stream.events.length);
        expect(stream.events.map((e) => e.version)).toEqual(stream.events.map((_, i) => i + 1));
        expect(conflicts).toBeGreaterThanOrEqual(0);
      }),
      { numRuns: 12, ...fcSeed },
    );
  });

  it('an append whose snapshot went stale while it waited for the head lock sees the record that got in first', async () => {
    const storage = freshStorage();
    await storage.connect();
    await storage.createTopics([{ name: 's', partitions: 1, config: streamConfig }]);
    const stream = (expectedVersion: number) => [{ topic: 's', partition: 0, key: Buffer.from('k'), expectedVersion }];
    // A plain append of the stream's key holds the head lock; an expected-version append starts meanwhile.
    const holder = storage.deferredTransaction();
    await holder.append([{ topic: 's', partition: 0, records: [rec('k', 'first')] }]);
    const waiting = storage.appendToStreams([{ topic: 's', partition: 0, records: [rec('k', 'second')] }], stream(0));
    await sleep(300);
    await holder.commit();
    await expect(waiting).rejects.toMatchObject({ name: 'WrongExpectedVersionError', expectedVersion: 0, actualVersion: 1 });
    // Same race, another key: the waiting append goes through after the holder, at the next offset.
    const other = storage.deferredTransaction();
    await other.append([{ topic: 's', partition: 0, records: [rec('other', 'x')] }]);
    const goes = storage.appendToStreams([{ topic: 's', partition: 0, records: [rec('k', 'second')] }], stream(1));
    await sleep(300);
    await other.commit();
    const r = await goes;
    expect([r.appends[0]!.baseOffset, r.streams[0]!.version]).toEqual([2n, 2]);
    expect((await storage.readStream('s', 0, Buffer.from('k'))).records.map((x) => x.value!.toString())).toEqual(['first', 'second']);
  });

  it("appends to other streams of the partition only delay one: it proceeds on what they left, in its one statement, without a transaction", async () => {
    const storage = freshStorage();
    await storage.connect();
    await storage.createTopics([{ name: 'busy', partitions: 1, config: streamConfig }]);
    const stream = (key: string, expectedVersion: number) => [{ topic: 'busy', partition: 0, key: Buffer.from(key), expectedVersion }];
    await storage.appendToStreams([{ topic: 'busy', partition: 0, records: [rec('b', 'b0')] }], stream('b', 0));
    const recorder = recordStatements();
    const seen = recorder.texts;
    try {
      // Another stream's append holds the head lock in a transaction while b's append waits.
      const holder = storage.deferredTransaction();
      await holder.appendToStreams([{ topic: 'busy', partition: 0, records: [rec('a', 'a0')] }], stream('a', 0));
      const mark = seen.length;
      const waiting = storage.appendToStreams([{ topic: 'busy', partition: 0, records: [rec('b', 'b1')] }], stream('b', 1));
      await sleep(300);
      await holder.commit();
      const r = await waiting;
      expect([r.appends[0]!.baseOffset, r.streams[0]!.previousVersion, r.streams[0]!.version]).toEqual([2n, 1, 2]);
      expect(seen.slice(mark).filter((q) => /^(BEGIN|SAVEPOINT)/.test(q))).toEqual([]);
      // 12 streams of one partition at once: each is one statement, all land, offsets dense.
      const from = seen.length;
      const all = await Promise.all(
        Array.from({ length: 12 }, (_, i) => storage.appendToStreams([{ topic: 'busy', partition: 0, records: [rec(`s${i}`, 'x')] }], stream(`s${i}`, 0))),
      );
      expect(all.map((x) => x.appends[0]!.baseOffset).sort((x, y) => Number(x - y))).toEqual(Array.from({ length: 12 }, (_, i) => BigInt(3 + i)));
      expect(seen.slice(from).filter((q) => /^(BEGIN|SAVEPOINT)/.test(q))).toEqual([]);
    } finally {
      recorder.stop();
    }
  });

  it('uncontended, an expected-version append is one prepared statement; watchers are woken after its commit', async () => {
    const storage = freshStorage();
    await storage.connect();
    await storage.createTopics([{ name: 'one', partitions: 1, config: streamConfig }]);
    const woken: string[] = [];
    const unwatch = await storage.watch(['one'], (topic, partition) => woken.push(`${topic}/${partition}`));
    const append = (records: AppendRecord[], expectedVersion: number) =>
      storage.appendToStreams([{ topic: 'one', partition: 0, records }], [{ topic: 'one', partition: 0, key: Buffer.from('k'), expectedVersion }]);
    await append([rec('k', 'warm')], 0);
    const original = pg.Client.prototype.query;
    const seen: Array<{ name: string | undefined; text: string }> = [];
    pg.Client.prototype.query = function (this: pg.Client, ...args: any[]) {
      const config = args[0];
      seen.push(typeof config === 'string' ? { name: undefined, text: config } : { name: config?.name, text: String(config?.text) });
      return (original as any).apply(this, args);
    } as typeof original;
    try {
      await append([rec('k', 'a'), rec('k', 'b')], 1);
      await append([rec('k', 'c'), rec('k', 'd')], 3);
      await sleep(200);
    } finally {
      pg.Client.prototype.query = original;
    }
    const isStreamAppend = (q: { text: string }) => q.text.startsWith('WITH locked AS MATERIALIZED') && q.text.includes('stream_versions');
    const appends = seen.filter(isStreamAppend);
    expect(appends).toHaveLength(2);
    // The same prepared statement both times: versions are parameters, not part of the text.
    expect(appends[0]!.name).toMatch(/^annals_/);
    expect(appends[1]!.name).toBe(appends[0]!.name);
    const rest = seen.filter((q) => !isStreamAppend(q));
    expect(rest.every((q) => q.text.startsWith('SELECT count(pg_notify'))).toBe(true);
    await unwatch();
    expect(woken.filter((w) => w === 'one/0').length).toBeGreaterThanOrEqual(1);
    expect((await storage.readStream('one', 0, Buffer.from('k'))).version).toBe(5);
  });
});

/** Records the text of every statement any pg client sends until the returned function is called. */
function recordStatements(): { texts: string[]; stop: () => void } {
  const original = pg.Client.prototype.query;
  const texts: string[] = [];
  pg.Client.prototype.query = function (this: pg.Client, ...args: any[]) {
    const config = args[0];
    texts.push(typeof config === 'string' ? config : String(config?.text));
    return (original as any).apply(this, args);
  } as typeof original;
  return { texts, stop: () => void (pg.Client.prototype.query = original) };
}

/** One key per partition of a topic with `partitions` partitions, for the given prefix. */
function keysPerPartition(prefix: string, partitions: number): string[] {
  const keys = new Map<number, string>();
  for (let i = 0; keys.size < partitions; i++) {
    const key = `${prefix}${i}`;
    const p = partitionFor(key, partitions);
    if (!keys.has(p)) keys.set(p, key);
  }
  return [...keys.entries()].sort((a, b) => a[0] - b[0]).map(([, key]) => key);
}

const isBatch = (text: string) => text.startsWith('WITH input AS MATERIALIZED') && text.includes('unnest($1::text[], $2::int[], $3::bytea[]');
const isLean = (text: string) => text.startsWith('WITH locked AS MATERIALIZED') && text.includes('stream_versions');

describe('a client that has not connected yet', () => {
  it('regression: aggregates connect it on first use, like every other call (load, append and handle threw NotConnectedError)', async () => {
    const setup = freshAnnals();
    await setup.admin().createTopics({ topics: [orders] });
    const schema = (setup.storage as PgLogStorage).schema;
    for (const call of [
      (a: Annals<any>) => a.aggregates.load(orders, 'o-fresh'),
      (a: Annals<any>) => a.aggregates.handle(Order, orders, 'o-fresh', { type: 'place', orderId: 'o-fresh', totalCents: 100 }),
      (a: Annals<any>) => a.aggregates.append(orders, 'o-fresh', [paid('o-fresh', 1)], { expectedVersion: 1 }),
    ]) {
      const fresh = new Annals({ clientId: 'fresh', storage: new PgLogStorage({ connectionString: database.connectionString, schema }) });
      try {
        await call(fresh);
      } finally {
        await fresh.disconnect();
      }
    }
    expect((await setup.aggregates.load(orders, 'o-fresh')).version).toBe(2);
  });
});

describe('concurrent stream appends of one process (group commit)', () => {
  it('appends to streams of distinct partitions commit together in batch statements, and each is decided alone', async () => {
    const storage = freshStorage();
    await storage.connect();
    await storage.createTopics([{ name: 'g', partitions: 12, config: streamConfig }]);
    const keys = keysPerPartition('g-', 12);
    const append = (key: string, value: string, expectedVersion: number | 'any' | 'no-stream') => {
      const partition = partitionFor(key, 12);
      return storage.appendToStreams([{ topic: 'g', partition, records: [rec(key, value)] }], [{ topic: 'g', partition, key: Buffer.from(key), expectedVersion }]);
    };
    for (const key of keys) await append(key, 'v1', 0);
    const recorder = recordStatements();
    let settled: PromiseSettledResult<Awaited<ReturnType<typeof append>>>[];
    try {
      // Every fourth append expects a version its stream is not at; one goes to a stream that does
      // not exist yet ('no-stream'), one takes any version.
      settled = await Promise.allSettled(
        keys.map((key, i) => (i % 4 === 3 ? append(key, 'stale', 5) : i === 0 ? append(key, 'v2', 'any') : append(key, 'v2', 1))),
      );
      settled.push(await Promise.allSettled([append('fresh-stream', 'f1', 'no-stream')]).then((r) => r[0]!));
    } finally {
      recorder.stop();
    }
    settled.slice(0, 12).forEach((r, i) => {
      if (i % 4 === 3) {
        expect(r.status).toBe('rejected');
        expect((r as PromiseRejectedResult).reason).toMatchObject({ name: 'WrongExpectedVersionError', expectedVersion: 5, actualVersion: 1 });
      } else {
        expect(r.status).toBe('fulfilled');
        const ok = (r as PromiseFulfilledResult<Awaited<ReturnType<typeof append>>>).value;
        expect([ok.appends[0]!.baseOffset, ok.streams[0]!.previousVersion, ok.streams[0]!.version]).toEqual([1n, 1, 2]);
      }
    });
    expect(settled[12]!.status).toBe('fulfilled');
    // The first append went alone; the others queued meanwhile and left together.
    const batches = recorder.texts.filter(isBatch);
    expect(batches.length).toBeGreaterThanOrEqual(1);
    expect(batches.length + recorder.texts.filter(isLean).length).toBeLessThan(12);
    // Nothing of a loser was written; every winner's record is in its stream, once, offsets dense.
    for (const [i, key] of keys.entries()) {
      const slice = await storage.readStream('g', partitionFor(key, 12), Buffer.from(key));
      expect(slice.records.map((r) => r.value!.toString())).toEqual(i % 4 === 3 ? ['v1'] : ['v1', 'v2']);
      expect(slice.records.map((r) => r.offset)).toEqual(slice.records.map((_, j) => BigInt(j)));
      expect(slice.version).toBe(slice.records.length);
    }
  });

  it('appends of one partition never share a batch: they follow one another, and all land with dense offsets', async () => {
    const storage = freshStorage();
    await storage.connect();
    await storage.createTopics([{ name: 'pp', partitions: 2, config: streamConfig }]);
    const keys = Array.from({ length: 16 }, (_, i) => `pp-${i}`);
    const recorder = recordStatements();
    let results: Array<Awaited<ReturnType<typeof storage.appendToStreams>>>;
    try {
      results = await Promise.all(
        keys.map((key) => {
          const partition = partitionFor(key, 2);
          return storage.appendToStreams(
            [{ topic: 'pp', partition, records: [rec(key, 'a'), rec(key, 'b')] }],
            [{ topic: 'pp', partition, key: Buffer.from(key), expectedVersion: 'no-stream' }],
          );
        }),
      );
    } finally {
      recorder.stop();
    }
    expect(recorder.texts.filter(isBatch).length).toBeGreaterThanOrEqual(1);
    expect(recorder.texts.filter((t) => /^(BEGIN|SAVEPOINT)/.test(t))).toEqual([]);
    for (const partition of [0, 1]) {
      const mine = results.filter((r) => r.appends[0]!.partition === partition).map((r) => r.appends[0]!.baseOffset);
      const count = keys.filter((k) => partitionFor(k, 2) === partition).length;
      expect(mine.sort((a, b) => Number(a - b))).toEqual(Array.from({ length: count }, (_, i) => BigInt(2 * i)));
      const { records } = await storage.fetch('pp', partition, 0n, { maxRecords: 100, maxBytes: 1 << 20 });
      expect(records.map((r) => r.offset)).toEqual(Array.from({ length: 2 * count }, (_, i) => BigInt(i)));
    }
    expect(results.every((r) => r.streams[0]!.previousVersion === 0 && r.streams[0]!.version === 2)).toBe(true);
  });

  it('a batch the database refuses as a whole is replayed one append at a time: only the bad append fails', async () => {
    const storage = freshStorage();
    await storage.connect();
    await storage.createTopics([{ name: 'bad', partitions: 6, config: streamConfig }]);
    const schema = storage.schema;
    const admin = await adminClient();
    // A rule of the application's own (a trigger) refuses one value: the batch holding it fails.
    await admin.query(`CREATE FUNCTION "${schema}".refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN IF NEW.value = convert_to('poison', 'UTF8') THEN RAISE EXCEPTION 'poison refused'; END IF; RETURN NEW; END $$`);
    await admin.query(`CREATE TRIGGER refuse_poison BEFORE INSERT ON "${schema}".records FOR EACH ROW EXECUTE FUNCTION "${schema}".refuse_poison()`);
    const keys = keysPerPartition('bad-', 6);
    const recorder = recordStatements();
    let settled: PromiseSettledResult<unknown>[];
    try {
      settled = await Promise.allSettled(
        keys.map((key, i) => {
          const partition = partitionFor(key, 6);
          return storage.appendToStreams(
            [{ topic: 'bad', partition, records: [rec(key, i === 3 ? 'poison' : 'fine')] }],
            [{ topic: 'bad', partition, key: Buffer.from(key), expectedVersion: 0 }],
          );
        }),
      );
    } finally {
      recorder.stop();
    }
    expect(recorder.texts.filter(isBatch).length).toBeGreaterThanOrEqual(1);
    expect(settled.map((r) => r.status)).toEqual(keys.map((_, i) => (i === 3 ? 'rejected' : 'fulfilled')));
    expect(String((settled[3] as PromiseRejectedResult).reason?.message)).toMatch(/poison refused/);
    for (const [i, key] of keys.entries()) {
      const slice = await storage.readStream('bad', partitionFor(key, 6), Buffer.from(key));
      expect(slice.records.map((r) => r.value!.toString())).toEqual(i === 3 ? [] : ['fine']);
    }
  });
});

describe('stream appends while their backends are terminated', () => {
  it('every acknowledged expected-version append is in its stream exactly once, and versions stay dense', async () => {
    // Only this storage's sessions are terminated: its pool carries an application name of its own.
    const application = `agg-term-${randomBytes(4).toString('hex')}`;
    const pool = new pg.Pool({ connectionString: database.connectionString, application_name: application, max: 8 });
    pool.on('error', () => {});
    const storage = new PgLogStorage({ pool, schema: `t_${randomBytes(5).toString('hex')}` });
    const admin = await adminClient();
    let stop = false;
    let terminated = 0;
    try {
      await storage.connect();
      await storage.createTopics([{ name: 'st', partitions: 2, config: streamConfig }]);
      const killer = (async () => {
        while (!stop) {
          await sleep(25);
          const { rowCount } = await admin.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1', [application]);
          terminated += rowCount ?? 0;
        }
      })();
      const retriable = (e: any) => e?.name === 'CommitOutcomeUnknownError' || e?.retriable === true;
      const acknowledged = new Map<string, string[]>();
      try {
        // 6 writers, one stream each, over 2 partitions: streams share heads, and every call may
        // lose its connection before, during or after its commit.
        await Promise.all(
          Array.from({ length: 6 }, async (_, w) => {
            const key = `s${w}`;
            const partition = partitionFor(key, 2);
            const acked: string[] = [];
            acknowledged.set(key, acked);
            for (let i = 0; i < 20; i++) {
              const value = `${key}.${i}`;
              for (let attempt = 0; ; attempt++) {
                if (attempt > 200) throw new Error(`${value}: no attempt got through`);
                try {
                  const slice = await storage.readStream('st', partition, Buffer.from(key));
                  // An earlier attempt whose outcome was unknown may have landed: then it is done.
                  if (slice.records.at(-1)?.value?.toString() === value) break;
                  await storage.appendToStreams([{ topic: 'st', partition, records: [rec(key, value)] }], [{ topic: 'st', partition, key: Buffer.from(key), expectedVersion: slice.version }]);
                  break;
                } catch (error) {
                  if (!retriable(error)) throw error;
                  await sleep(5);
                }
              }
              acked.push(value);
            }
          }),
        );
      } finally {
        stop = true;
        await killer;
      }
      expect(terminated).toBeGreaterThan(0);
      for (const [key, acked] of acknowledged) {
        // The pool may still hold a session terminated while idle: its first use fails, retriably.
        const read = async (left: number): Promise<Awaited<ReturnType<typeof storage.readStream>>> =>
          storage.readStream('st', partitionFor(key, 2), Buffer.from(key)).catch((e) => (left > 0 && retriable(e) ? read(left - 1) : Promise.reject(e)));
        const slice = await read(10);
        expect(slice.records.map((r) => r.value!.toString())).toEqual(acked);
        expect(slice.version).toBe(acked.length);
      }
    } finally {
      await storage.disconnect();
      await pool.end();
    }
  }, 90_000);
});

describe('the stream index', () => {
  it('loading a stream among 60,000 records of other keys is an index scan on (topic, partition, key, offset) and stays fast', async () => {
    const storage = freshStorage();
    await storage.connect();
    await storage.createTopics([{ name: 'big', partitions: 1, config: { ...streamConfig, 'segment.records': 25_000 } as TopicConfig }]);
    for (let i = 0; i < 12; i++) {
      await storage.append([{ topic: 'big', partition: 0, records: Array.from({ length: 5_000 }, (_, j) => rec(`customer-${(i * 5_000 + j) % 7_919}`, 'x'.repeat(100))) }]);
      if (i === 5) {
        const events = Array.from({ length: 100 }, (_, j) => rec('the-stream', `e${j}`));
        await storage.appendToStreams([{ topic: 'big', partition: 0, records: events }], [{ topic: 'big', partition: 0, key: Buffer.from('the-stream'), expectedVersion: 0 }]);
      }
    }
    const client = await adminClient();
    await client.query(`ANALYZE "${storage.schema}".records`);
    const statement = readStreamStatement(tables(storage.schema), streamTables(storage.schema), 'big', 0, Buffer.from('the-stream'));
    const { rows } = await client.query(`EXPLAIN (FORMAT JSON) ${statement.text}`, statement.values);
    const nodes: Array<Record<string, unknown>> = [];
    const walk = (n: Record<string, unknown>) => {
      nodes.push(n);
      for (const c of (n['Plans'] as Array<Record<string, unknown>> | undefined) ?? []) walk(c);
    };
    walk(rows[0]['QUERY PLAN'][0].Plan);
    const onRecords = nodes.filter((n) => typeof n['Relation Name'] === 'string' && (n['Relation Name'] as string).startsWith('records_'));
    expect(onRecords.length).toBeGreaterThan(0);
    // The planner may seq-scan the empty segment kept ahead of the log end (cost 0); every segment
    // holding records must be read through the index.
    const seqScanned = onRecords.filter((n) => n['Node Type'] === 'Seq Scan').map((n) => n['Relation Name'] as string);
    for (const relation of seqScanned) {
      expect((await client.query(`SELECT count(*)::int AS n FROM "${storage.schema}"."${relation}"`)).rows[0].n, `Seq Scan on ${relation}`).toBe(0);
    }
    const streamIndexes = (
      await client.query(`SELECT indexname FROM pg_indexes WHERE schemaname = $1 AND indexdef LIKE '%(topic, partition, key, "offset")%'`, [storage.schema])
    ).rows.map((r) => r.indexname as string);
    expect(streamIndexes.length).toBeGreaterThanOrEqual(3); // the parent's, and one per segment
    const indexUsed = nodes.filter((n) => streamIndexes.includes(n['Index Name'] as string));
    expect(indexUsed.length).toBeGreaterThan(0);

    const latencies: number[] = [];
    for (let i = 0; i < 200; i++) {
      const t0 = performance.now();
      const slice = await storage.readStream('big', 0, Buffer.from('the-stream'));
      latencies.push(performance.now() - t0);
      expect(slice.version).toBe(100);
    }
    latencies.sort((a, b) => a - b);
    const p50 = latencies[99]!;
    const p99 = latencies[197]!;
    console.log(`[aggregates] load of a 100-event stream among 60,100 records: p50 ${p50.toFixed(2)} ms, p99 ${p99.toFixed(2)} ms`);
    expect(p99).toBeLessThan(50); // generous for a loaded CI machine; the benchmark holds the real target (≤ 10 ms)
  });

  it('the index is partial (keyless records stay out of it) and every segment has it', async () => {
    const storage = freshStorage();
    await storage.connect();
    await storage.createTopics([{ name: 'seg', partitions: 2, config: streamConfig }]);
    const client = await adminClient();
    const { rows } = await client.query(
      `SELECT tablename, indexdef FROM pg_indexes WHERE schemaname = $1 AND indexdef LIKE '%(topic, partition, key, "offset")%' ORDER BY tablename`,
      [storage.schema],
    );
    expect(rows.every((r) => /WHERE \(key IS NOT NULL\)/.test(r.indexdef))).toBe(true);
    const segments = (await client.query(`SELECT table_name FROM "${storage.schema}".segments WHERE topic = 'seg'`)).rows.map((r) => r.table_name);
    expect(segments.length).toBeGreaterThanOrEqual(2);
    for (const segment of segments) expect(rows.map((r) => r.tablename)).toContain(segment);
  });
});

describe('streams in transactions', () => {
  it('annals.transaction: the application’s writes, publishes and stream appends commit together, or a conflict at commit rolls all of them back', async () => {
    const annals = freshAnnals<{ [table: string]: { id: string } }>();
    await annals.admin().createTopics({ topics: [orders] });
    const table = `audit_${randomBytes(4).toString('hex')}`;
    const client = await adminClient();
    await client.query(`CREATE TABLE ${table} (id text PRIMARY KEY)`);
    await annals.aggregates.handle(Order, orders, 'o-1', { type: 'place', orderId: 'o-1', totalCents: 500 });
    await expect(
      annals.transaction(async (tx) => {
        await sql`INSERT INTO ${sql.raw(table)} VALUES ('lost')`.execute(tx.db);
        await tx.aggregates.handle(Order, orders, 'o-1', { type: 'pay', orderId: 'o-1', amountCents: 500 });
        await annals.aggregates.append(orders, 'o-1', [paid('o-1', 1)], { expectedVersion: 1 }); // another writer first
      }),
    ).rejects.toMatchObject({ name: 'WrongExpectedVersionError', expectedVersion: 1, actualVersion: 2 });
    expect((await client.query(`SELECT id FROM ${table}`)).rows).toEqual([]);
    await annals.transaction(async (tx) => {
      await sql`INSERT INTO ${sql.raw(table)} VALUES ('kept')`.execute(tx.db);
      const r = await tx.aggregates.handle(Order, orders, 'o-1', { type: 'pay', orderId: 'o-1', amountCents: 500 });
      expect(r.state).toMatchObject({ status: 'paid', paidCents: 500 });
    });
    expect((await client.query(`SELECT id FROM ${table}`)).rows).toEqual([{ id: 'kept' }]);
    expect((await annals.aggregates.aggregate(Order, orders, 'o-1')).state).toEqual({ status: 'paid', totalCents: 500, paidCents: 500 });
  });

  it('a consumer handler: a conflict fails the record, the retry decides again, and each command lands exactly once with its offset', async () => {
    const annals = freshAnnals();
    const commands = { ...orders, name: 'order-commands' } as typeof orders;
    await annals.admin().createTopics({ topics: [orders, { topic: 'order-commands', numPartitions: 1 }] });
    await annals.aggregates.handle(Order, orders, 'o-1', { type: 'place', orderId: 'o-1', totalCents: 100_000 });
    const producer = annals.producer();
    for (let i = 1; i <= 6; i++) await producer.publish(commands, OrderPaid, { orderId: 'o-1', amountCents: i });
    let attempts = 0;
    let handled = 0;
    const consumer = annals.consumer({ groupId: 'payments', heartbeatInterval: 200, sessionTimeout: 10_000, retry: { retries: 5, initialRetryTime: 20 } });
    await consumer.subscribe({ topic: commands, fromBeginning: true });
    const done = new Promise<void>((resolve) => {
      void consumer.run({
        eachEvent: async ({ event, tx }) => {
          attempts++;
          const { amountCents } = event.payload as { amountCents: number };
          if (attempts === 1) {
            // Before this batch appends anything, another writer slips in between load and append.
            const { version } = await tx.aggregates.load(orders, 'o-1');
            await annals.aggregates.append(orders, 'o-1', [paid('o-1', 1000)], { expectedVersion: version });
            await expect(tx.aggregates.append(orders, 'o-1', [paid('o-1', amountCents)], { expectedVersion: version })).rejects.toBeInstanceOf(WrongExpectedVersionError);
            throw new Error('retry me');
          }
          await tx.aggregates.handle(Order, orders, 'o-1', { type: 'pay', orderId: 'o-1', amountCents });
          if (++handled === 6) resolve();
        },
      });
    });
    await done;
    await consumer.disconnect();
    const stream = await annals.aggregates.load(orders, 'o-1');
    expect(stream.events.slice(1).map((e) => (e.payload as { amountCents: number }).amountCents)).toEqual([1000, 1, 2, 3, 4, 5, 6]);
    expect(attempts).toBe(7);
    const [committed] = await annals.admin().fetchOffsets({ groupId: 'payments', topics: ['order-commands'] });
    expect(committed!.partitions[0]!.offset).toBe('6');
  });
});
