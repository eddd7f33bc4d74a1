/**
 * The cleaner on a real PostgreSQL (issue 7, invariant 6): retention by time and by size judged
 * by the database clock, compaction that keeps the latest record of every key, tombstone timing,
 * segments reclaimed without VACUUM FULL, compaction racing readers, and one elected cleaner
 * among several processes.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Annals } from '@annals/core';
import type { Kysely } from 'kysely';
import { describe, expect, it } from 'vitest';
import { adminClient, database, freshAnnals, sleep } from './support.js';

const CLEANER_PROCESS = fileURLToPath(new URL('./fixtures/cleaner-process.mjs', import.meta.url));
const HOUR = 3_600_000;

type Client = Annals<Kysely<unknown>>;

async function createTopic(annals: Client, topic: string, config: Record<string, string>, numPartitions = 1): Promise<void> {
  await annals.admin().createTopics({
    topics: [{ topic, numPartitions, configEntries: Object.entries(config).map(([name, value]) => ({ name, value })) }],
  });
}

/** Appends `count` records to partition 0, keys from `keyOf` (null: keyless), in sends of up to 500. */
async function produce(annals: Client, topic: string, count: number, keyOf: (i: number) => string | null = () => null, valueOf: (i: number) => string | null = (i) => `v${i}`): Promise<void> {
  const producer = annals.producer();
  await producer.connect();
  for (let from = 0; from < count; from += 500) {
    const messages = [];
    for (let i = from; i < Math.min(count, from + 500); i++) messages.push({ key: keyOf(i), value: valueOf(i), partition: 0 });
    await producer.send({ topic, messages });
  }
}

/** Every record of partition 0 from the log start: offset, key and value as strings. */
async function readAll(annals: Client, topic: string): Promise<Array<{ offset: bigint; key: string | null; value: string | null }>> {
  const out: Array<{ offset: bigint; key: string | null; value: string | null }> = [];
  let offset = 0n;
  for (let guard = 0; guard < 10_000; guard++) {
    const result = await annals.storage.fetch(topic, 0, offset, { maxRecords: 1000, maxBytes: 1 << 24 });
    for (const r of result.records) {
      out.push({ offset: r.offset, key: r.key && Buffer.from(r.key).toString(), value: r.value && Buffer.from(r.value).toString() });
    }
    if (result.records.length === 0) return out;
    offset = result.records.at(-1)!.offset + 1n;
  }
  throw new Error('readAll did not reach the end');
}

async function watermarks(annals: Client, topic: string): Promise<{ low: string; high: string }> {
  const [p] = await annals.admin().fetchTopicOffsets(topic);
  return { low: p!.low, high: p!.high };
}

async function segmentTables(schema: string, topic: string): Promise<string[]> {
  const client = await adminClient();
  const { rows } = await client.query(`SELECT table_name FROM "${schema}".segments WHERE topic = $1 ORDER BY base_offset`, [topic]);
  return rows.map((r) => r.table_name);
}

async function tableExists(schema: string, name: string): Promise<boolean> {
  const client = await adminClient();
  const { rows } = await client.query(`SELECT to_regclass(format('%I.%I', $1::text, $2::text)) IS NOT NULL AS e`, [schema, name]);
  return rows[0].e;
}

function schemaOf(annals: Client): string {
  return (annals.storage as unknown as { schema: string }).schema;
}

async function cleanOnce(annals: Client, now?: number) {
  const result = await annals.cleaner.runOnce(now === undefined ? {} : { now });
  if (!result.ran) throw new Error(`cleaner did not run: ${result.reason}`);
  return result.report;
}

describe('retention by time (retention.ms), by the database clock', () => {
  it('keeps everything until retention.ms has passed, then moves the log start and drops whole segments', async () => {
    const annals = freshAnnals();
    await createTopic(annals, 'events', { 'retention.ms': String(HOUR), 'segment.records': '1000' });
    await produce(annals, 'events', 2500);
    const t0 = Date.now();
    await cleanOnce(annals); // notes: everything below 2500 was appended by now

    // 59 minutes later: nothing is older than retention.ms yet.
    const early = await cleanOnce(annals, t0 + HOUR - 60_000);
    expect(early.partitions[0]!.logStartMovedBy).toBeNull();
    expect(await watermarks(annals, 'events')).toEqual({ low: '0', high: '2500' });
    expect((await readAll(annals, 'events')).length).toBe(2500);
    await produce(annals, 'events', 500); // appended "two hours after t0", as the next pass sees it

    const schema = schemaOf(annals);
    const before = await segmentTables(schema, 'events');
    // Two hours later: the first 2500 records are past retention; the 500 noted later are not.
    const late = await cleanOnce(annals, t0 + 2 * HOUR);
    const p0 = late.partitions[0]!;
    expect(p0.logStartMovedBy).toBe('retention.ms');
    expect(p0.logStartOffset).toBe(2500n);
    expect(p0.segmentsDropped).toBe(2);
    expect(p0.recordsExpired).toBe(500); // 2000..2499 of the segment that holds the log start
    expect(await watermarks(annals, 'events')).toEqual({ low: '2500', high: '3000' });
    const left = await readAll(annals, 'events');
    expect(left[0]!.offset).toBe(2500n);
    expect(left.length).toBe(500);
    // The first two segment tables are gone: space is back without VACUUM FULL.
    expect(await tableExists(schema, before[0]!)).toBe(false);
    expect(await tableExists(schema, before[1]!)).toBe(false);
    expect(await tableExists(schema, before[2]!)).toBe(true);
    expect(await segmentTables(schema, 'events')).toEqual(before.slice(2));
    const client = await adminClient();
    const reason = await client.query(`SELECT log_start_reason FROM "${schema}".partitions WHERE topic = 'events'`);
    expect(reason.rows[0].log_start_reason).toBe('retention.ms');

    // A second pass finds nothing left under the log start and deletes nothing.
    const again = await cleanOnce(annals, t0 + 2 * HOUR);
    expect(again.partitions[0]!.recordsExpired).toBe(0);
    expect(again.partitions[0]!.segmentsDropped).toBe(0);
    expect((await readAll(annals, 'events')).length).toBe(500);
  });

  it('ignores producer timestamps: a record stamped in the past is kept until the database says it is old', async () => {
    const annals = freshAnnals();
    await createTopic(annals, 'stamped', { 'retention.ms': '1000' });
    const producer = annals.producer();
    await producer.connect();
    await producer.send({ topic: 'stamped', messages: [{ value: 'old', timestamp: String(Date.now() - 10 * HOUR), partition: 0 }] });
    await cleanOnce(annals);
    expect(await watermarks(annals, 'stamped')).toEqual({ low: '0', high: '1' });
  });

  it('keeps records forever with retention.ms = -1, and writes no time notes for them', async () => {
    const annals = freshAnnals();
    await createTopic(annals, 'forever', { 'retention.ms': '-1' });
    await produce(annals, 'forever', 100);
    await cleanOnce(annals);
    await cleanOnce(annals, Date.now() + 1000 * 24 * HOUR);
    expect(await watermarks(annals, 'forever')).toEqual({ low: '0', high: '100' });
    const client = await adminClient();
    const notes = await client.query(`SELECT count(*)::int AS n FROM "${schemaOf(annals)}".time_index WHERE topic = 'forever'`);
    expect(notes.rows[0].n).toBe(0);
  });

  it('resets a consumer whose committed offset fell below the log start, by its policy, and says so', async () => {
    const annals = freshAnnals();
    await createTopic(annals, 'expiring', { 'retention.ms': String(HOUR) });
    await produce(annals, 'expiring', 20);
    await annals.admin().setOffsets({ groupId: 'slow', topic: 'expiring', partitions: [{ partition: 0, offset: '5' }] });
    const t0 = Date.now();
    await cleanOnce(annals);
    await produce(annals, 'expiring', 10, () => null, (i) => `new${i}`);
    await cleanOnce(annals, t0 + 2 * HOUR);
    expect((await watermarks(annals, 'expiring')).low).toBe('20');

    const consumer = annals.consumer({ groupId: 'slow', maxWaitTimeInMs: 100 });
    const resets: unknown[] = [];
    consumer.on(consumer.events.OFFSETS_RESET, (e) => resets.push(e.payload));
    const seen: string[] = [];
    await consumer.subscribe({ topic: 'expiring' });
    await consumer.run({ eachMessage: async ({ message }) => void seen.push(message.offset) });
    for (let i = 0; i < 100 && seen.length < 10; i++) await sleep(50);
    await consumer.disconnect();
    expect(seen[0]).toBe('20');
    expect(seen.length).toBe(10);
    expect(resets.length).toBeGreaterThan(0);
  });
});

describe('retention by size (retention.bytes)', () => {
  it('drops the oldest whole segments while the partition holds more than retention.bytes, never below it', async () => {
    const annals = freshAnnals();
    await createTopic(annals, 'sized', { 'segment.records': '1000', 'retention.ms': '-1' });
    await produce(annals, 'sized', 4500, () => null, (i) => `${i}`.padEnd(200, 'x'));
    const schema = schemaOf(annals);
    const client = await adminClient();
    const sizes = await client.query<{ base: string; bytes: string }>(
      `SELECT base_offset::text AS base, pg_table_size(format('%I.%I', $1::text, table_name)::regclass)::text AS bytes
       FROM "${schema}".segments WHERE topic = 'sized' AND base_offset < 5000 ORDER BY base_offset`,
      [schema],
    );
    const bytes = sizes.rows.map((r) => Number(r.bytes));
    // Keep the last two full segments and the one being written: the limit is one byte over them.
    const limit = bytes[2]! + bytes[3]! + bytes[4]!;
    await annals.admin().alterConfigs({
      resources: [{ type: 2, name: 'sized', configEntries: [{ name: 'retention.bytes', value: String(limit) }] }],
    });
    const report = await cleanOnce(annals);
    expect(report.partitions[0]!.logStartMovedBy).toBe('retention.bytes');
    expect(report.partitions[0]!.logStartOffset).toBe(2000n);
    expect(report.partitions[0]!.segmentsDropped).toBe(2);
    expect(await watermarks(annals, 'sized')).toEqual({ low: '2000', high: '4500' });
    // A second pass takes nothing more: what is left is not more than the limit by a whole segment.
    const again = await cleanOnce(annals);
    expect(again.partitions[0]!.logStartMovedBy).toBeNull();
    expect((await readAll(annals, 'sized')).length).toBe(2500);
  });
});

describe('compaction (cleanup.policy=compact)', () => {
  it('keeps the latest record of every key, never changes offsets, and keeps tombstones for delete.retention.ms', async () => {
    const annals = freshAnnals();
    await createTopic(annals, 'users', { 'cleanup.policy': 'compact', 'segment.records': '1000' });
    // 10 keys written 300 times each; k3's last record is a tombstone.
    await produce(annals, 'users', 3000, (i) => `k${i % 10}`, (i) => (i === 2993 ? null : `v${i}`));
    const t0 = Date.now();
    const first = await cleanOnce(annals);
    expect(first.partitions[0]!.recordsCompacted).toBe(2990);
    expect(first.partitions[0]!.cleanedOffset).toBe(3000n);
    const left = await readAll(annals, 'users');
    expect(left.map((r) => r.offset)).toEqual([2990n, 2991n, 2992n, 2993n, 2994n, 2995n, 2996n, 2997n, 2998n, 2999n]);
    expect(left.find((r) => r.key === 'k3')!.value).toBeNull(); // the tombstone is kept, so consumers see the delete
    expect(left.find((r) => r.key === 'k7')!.value).toBe('v2997');
    // Offsets did not move; the log start did not either (compaction leaves gaps).
    expect(await watermarks(annals, 'users')).toEqual({ low: '0', high: '3000' });
    // Segments emptied by compaction are dropped.
    expect(first.partitions[0]!.segmentsDropped).toBe(2);

    // 23 hours later the tombstone is still there; 25 hours later it is gone.
    await cleanOnce(annals, t0 + 23 * HOUR);
    expect((await readAll(annals, 'users')).length).toBe(10);
    const later = await cleanOnce(annals, t0 + 25 * HOUR);
    expect(later.partitions[0]!.tombstonesRemoved).toBe(1);
    expect((await readAll(annals, 'users')).map((r) => r.key)).not.toContain('k3');
  });

  it('is incremental: a second pass only examines what was appended since', async () => {
    const annals = freshAnnals();
    await createTopic(annals, 'incr', { 'cleanup.policy': 'compact' });
    await produce(annals, 'incr', 100, (i) => `k${i % 5}`);
    expect((await cleanOnce(annals)).partitions[0]!.recordsCompacted).toBe(95);
    await produce(annals, 'incr', 10, (i) => `k${i % 5}`, (i) => `w${i}`);
    const second = await cleanOnce(annals);
    // Each key's survivor of the first pass, and the first of its two new records.
    expect(second.partitions[0]!.recordsCompacted).toBe(10);
    expect(second.partitions[0]!.cleanedOffset).toBe(110n);
    const left = await readAll(annals, 'incr');
    expect(left.map((r) => r.value)).toEqual(['w5', 'w6', 'w7', 'w8', 'w9']);
  });

  it('leaves the head newer than min.compaction.lag.ms alone', async () => {
    const annals = freshAnnals();
    await createTopic(annals, 'lagged', { 'cleanup.policy': 'compact', 'min.compaction.lag.ms': String(HOUR) });
    await produce(annals, 'lagged', 50, (i) => `k${i % 5}`);
    const t0 = Date.now();
    const now = await cleanOnce(annals);
    expect(now.partitions[0]!.recordsCompacted).toBe(0);
    expect((await cleanOnce(annals, t0 + HOUR / 2)).partitions[0]!.recordsCompacted).toBe(0);
    expect((await readAll(annals, 'lagged')).length).toBe(50);
    expect((await cleanOnce(annals, t0 + 2 * HOUR)).partitions[0]!.recordsCompacted).toBe(45);
  });

  it('keeps the time notes bounded: a note older than the one the longest rule picks is pruned', async () => {
    const annals = freshAnnals();
    await createTopic(annals, 'noted', { 'cleanup.policy': 'compact', 'delete.retention.ms': String(HOUR), 'retention.ms': '-1' });
    const t0 = Date.now();
    for (let i = 0; i < 5; i++) {
      await produce(annals, 'noted', 3, (j) => `k${j}`);
      await cleanOnce(annals, t0 + i * 2 * HOUR);
    }
    const client = await adminClient();
    const notes = await client.query(`SELECT (extract(epoch FROM at) * 1000)::float8 AS at FROM "${schemaOf(annals)}".time_index WHERE topic = 'noted' ORDER BY at`);
    // At t0+8h the 1-hour rule picks the t0+6h note; the t0+8h note is the newest. Older ones go.
    expect(notes.rows.map((r) => Math.round((r.at - t0) / HOUR))).toEqual([6, 8]);
  });

  it('compact,delete applies both', async () => {
    const annals = freshAnnals();
    await createTopic(annals, 'both', { 'cleanup.policy': 'compact,delete', 'retention.ms': String(HOUR) });
    await produce(annals, 'both', 40, (i) => `k${i % 4}`);
    const t0 = Date.now();
    const report = await cleanOnce(annals);
    expect(report.partitions[0]!.recordsCompacted).toBe(36);
    await produce(annals, 'both', 4, (i) => `k${i}`, (i) => `late${i}`);
    const later = await cleanOnce(annals, t0 + 2 * HOUR);
    expect(later.partitions[0]!.logStartMovedBy).toBe('retention.ms');
    expect((await readAll(annals, 'both')).map((r) => r.value)).toEqual(['late0', 'late1', 'late2', 'late3']);
  });

  it('races a reader from the start and a reader at the head: the head reader sees every record, the full reader ends with the latest value of every key', async () => {
    const annals = freshAnnals();
    await createTopic(annals, 'race', { 'cleanup.policy': 'compact', 'segment.records': '1000', 'min.compaction.lag.ms': '1500' });
    const KEYS = 50;
    const TOTAL = 6000;
    const producer = annals.producer();
    await producer.connect();
    const written: Array<{ key: string; value: string }> = [];
    let producing = true;
    const writer = (async () => {
      for (let i = 0; i < TOTAL; i += 100) {
        const messages = [];
        for (let j = i; j < i + 100; j++) {
          const m = { key: `k${(j * 7) % KEYS}`, value: `v${j}` };
          written.push(m);
          messages.push({ ...m, partition: 0 });
        }
        await producer.send({ topic: 'race', messages });
        await sleep(5);
      }
      producing = false;
    })();
    const cleaner = (async () => {
      let passes = 0;
      while (producing && passes < 500) {
        await cleanOnce(annals);
        passes++;
        await sleep(20);
      }
      await cleanOnce(annals);
      return passes;
    })();
    const tail: bigint[] = [];
    const full: Array<{ offset: bigint; key: string; value: string }> = [];
    const reader = async (out: (r: { offset: bigint; key: string; value: string }) => void, batch: number, pause: number) => {
      let offset = 0n;
      for (let guard = 0; guard < 20_000; guard++) {
        const result = await annals.storage.fetch('race', 0, offset, { maxRecords: batch, maxBytes: 1 << 20 });
        for (const r of result.records) out({ offset: r.offset, key: Buffer.from(r.key!).toString(), value: Buffer.from(r.value!).toString() });
        if (result.records.length > 0) offset = result.records.at(-1)!.offset + 1n;
        if (!producing && offset >= result.highWatermark) return;
        await sleep(pause);
      }
      throw new Error('reader did not finish');
    };
    const tailing = reader((r) => tail.push(r.offset), 1000, 2);
    await sleep(300);
    const fullReading = reader((r) => full.push(r), 40, 10);
    await Promise.all([writer, tailing, fullReading]);
    const passes = await cleaner;
    expect(passes).toBeGreaterThan(2);

    // The head reader saw every record, in order.
    expect(tail).toEqual(Array.from({ length: TOTAL }, (_, i) => BigInt(i)));
    // Offsets only go up for the full reader.
    for (let i = 1; i < full.length; i++) expect(full[i]!.offset > full[i - 1]!.offset).toBe(true);
    // Its last value per key is the latest written.
    const latest = new Map(written.map((w) => [w.key, w.value]));
    const lastSeen = new Map(full.map((r) => [r.key, r.value]));
    expect(lastSeen).toEqual(latest);
    // Every offset it missed was removed by compaction: a later record of the same key exists.
    const seen = new Set(full.map((r) => r.offset));
    const lastOffsetOfKey = new Map(written.map((w, i) => [w.key, i]));
    for (let i = 0; i < TOTAL; i++) {
      if (!seen.has(BigInt(i))) expect(lastOffsetOfKey.get(written[i]!.key)!).toBeGreaterThan(i);
    }
    // And once the head is older than min.compaction.lag.ms, the log holds one record per key.
    await cleanOnce(annals, Date.now() + 10_000);
    const final = await readAll(annals, 'race');
    expect(final.length).toBe(KEYS);
    expect(new Map(final.map((r) => [r.key!, r.value!]))).toEqual(latest);
  });
});

describe('the cleaner lease', () => {
  it('elects exactly one cleaner among three processes, and another takes over when it is killed', async () => {
    const annals = freshAnnals();
    await annals.connect(); // applies migrations before the processes start
    const schema = schemaOf(annals);
    const passes = new Map<number, number>();
    const errors: string[] = [];
    const children: ChildProcess[] = [];
    let ready = 0;
    for (let i = 0; i < 3; i++) {
      const child = fork(CLEANER_PROCESS, [database.connectionString, schema, '100'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv: [] });
      child.on('message', (m: { type: string; pid: number; error?: string }) => {
        if (m.type === 'ready') ready++;
        if (m.type === 'pass') passes.set(m.pid, (passes.get(m.pid) ?? 0) + 1);
        if (m.type === 'error') errors.push(m.error!);
      });
      children.push(child);
    }
    const client = await adminClient();
    const holders = async () =>
      (
        await client.query(
          `SELECT l.pid FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2 AND l.objid = $1
             AND l.classid = (hashtext($2)::bigint & 4294967295)::oid
             AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())`,
          [0x616e6e, `annals/${schema}/cleaner`],
        )
      ).rows.map((r) => r.pid as number);
    try {
      for (let i = 0; i < 600 && ready < 3; i++) await sleep(50);
      expect(ready).toBe(3);
      const maxHolders = { n: 0 };
      for (let i = 0; i < 400 && [...passes.values()].reduce((a, b) => a + b, 0) < 10; i++) {
        maxHolders.n = Math.max(maxHolders.n, (await holders()).length);
        await sleep(50);
      }
      expect(errors).toEqual([]);
      expect(maxHolders.n).toBe(1);
      expect(passes.size).toBe(1); // only the leader ran passes
      const [leaderPid] = [...passes.keys()];
      const leader = children.find((c) => c.pid === leaderPid)!;
      leader.kill('SIGKILL');
      await new Promise((resolve) => leader.once('exit', resolve));
      const killedAt = Date.now();
      let successor: number | undefined;
      for (let i = 0; i < 200 && successor === undefined; i++) {
        successor = [...passes.keys()].find((pid) => pid !== leaderPid);
        expect((await holders()).length).toBeLessThanOrEqual(1);
        await sleep(50);
      }
      expect(successor).toBeDefined();
      expect(Date.now() - killedAt).toBeLessThan(10_000); // a standby tries every 100 ms here
    } finally {
      for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    }
  });

  it('runOnce reports ran: false while another client holds the lease', async () => {
    const a = freshAnnals();
    await a.connect();
    const schema = schemaOf(a);
    const lease = await a.storage.cleaner!.acquireCleaner();
    expect(lease).not.toBeNull();
    // A second client on the same schema.
    const { Annals } = await import('@annals/core');
    const { PgLogStorage } = await import('../src/index.js');
    const b = new Annals({ clientId: 'b', storage: new PgLogStorage({ connectionString: database.connectionString, schema }), cleaner: false });
    try {
      expect(await b.cleaner.runOnce()).toEqual({ ran: false, reason: 'another-cleaner-holds-the-lease' });
      await lease!.release();
      expect((await b.cleaner.runOnce()).ran).toBe(true);
      expect(b.cleaner.leading).toBe(false); // runOnce without the loop gives the lease back
    } finally {
      await b.disconnect();
    }
  });
});
