/**
 * The append hot path on PostgreSQL (issue 3): what an append sends, when watchers are woken, and
 * the client-side segment marks that keep `segments` off the hot path.
 *
 * - No append NOTIFYs inside its own transaction (a NOTIFY holds the database-wide notify lock
 *   through the commit flush and serialises concurrent commits); watchers are woken by a NOTIFY
 *   sent after the commit — so a woken reader always finds the records — and never before it.
 * - A single-message send is one prepared statement; a batch is one prepared statement whatever
 *   its shape; neither reads `segments` or `topics`.
 * - Segment marks are cached per process: appends from a process that did not create the topic,
 *   appends that outrun the segments kept ahead, and a topic re-created behind a stale mark all
 *   still land, dense.
 */
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { sql } from 'kysely';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { DEFAULT_TOPIC_CONFIG, type AppendRecord, type TopicConfig } from '@annals/core';
import { PgLogStorage } from '../src/index.js';
import { tables } from '../src/plans.js';
import { adminClient, database, freshStorage, sleep } from './support.js';

const rec = (value: string, key: string | null = 'k'): AppendRecord => ({
  key: key === null ? null : Buffer.from(key),
  value: Buffer.from(value),
  headers: null,
  timestamp: null,
});

/** Records every statement `pg` clients send while `fn` runs. */
async function capture<T>(fn: () => Promise<T>): Promise<{ result: T; seen: Array<{ name: string | undefined; text: string }> }> {
  const original = pg.Client.prototype.query;
  const seen: Array<{ name: string | undefined; text: string }> = [];
  pg.Client.prototype.query = function (this: pg.Client, ...args: any[]) {
    const config = args[0];
    seen.push(typeof config === 'string' ? { name: undefined, text: config } : { name: config?.name, text: String(config?.text) });
    return (original as any).apply(this, args);
  } as typeof original;
  try {
    return { result: await fn(), seen };
  } finally {
    pg.Client.prototype.query = original;
  }
}

/** A raw LISTEN session on the storage's channel that notes, for every notification, the partition's log end seen right then from another session. */
async function listenWithWatermarks(storage: PgLogStorage, topics: readonly string[]) {
  const channel = tables(storage.schema).channel;
  // A watcher's lease makes appends to these topics send wake-ups (nobody watching: none).
  const unwatch = await storage.watch(topics, () => {});
  const listener = new pg.Client({ connectionString: database.connectionString });
  await listener.connect();
  const reader = await adminClient();
  const seen: Array<{ payload: string; at: number; high: bigint }> = [];
  let pending: Promise<void> = Promise.resolve();
  listener.on('notification', (m) => {
    if (m.channel !== channel || !m.payload) return;
    const at = Date.now();
    const [topic, partition] = [m.payload.slice(0, m.payload.lastIndexOf('/')), Number(m.payload.slice(m.payload.lastIndexOf('/') + 1))];
    // One query at a time on the reader, in arrival order; each runs as soon as the previous ends.
    pending = pending.then(() =>
      reader
        .query<{ high: string }>(`SELECT next_offset::text AS high FROM "${storage.schema}".partitions WHERE topic = $1 AND partition = $2`, [topic, partition])
        .then(({ rows }) => void seen.push({ payload: m.payload!, at, high: BigInt(rows[0]?.high ?? '-1') })),
    );
  });
  await listener.query(`LISTEN "${channel}"`);
  return {
    seen,
    settle: async () => {
      await sleep(150);
      await pending;
    },
    close: async () => {
      await unwatch();
      await listener.end();
    },
  };
}

describe('wake-ups after the commit', () => {
  it('an autocommitted append sends no NOTIFY of its own; the wake-up that follows finds the records committed', async () => {
    const storage = freshStorage();
    await storage.connect();
    await storage.createTopics([{ name: 'w', partitions: 2, config: DEFAULT_TOPIC_CONFIG }]);
    const listening = await listenWithWatermarks(storage, ['w']);
    const woken: string[] = [];
    const unwatch = await storage.watch(['w'], (topic, partition) => woken.push(`${topic}/${partition}`));
    const { seen } = await capture(async () => {
      for (let i = 0; i < 20; i++) {
        const [r] = await storage.append([{ topic: 'w', partition: i % 2, records: [rec(`v${i}`)] }]);
        expect(r!.baseOffset).toBe(BigInt(Math.floor(i / 2)));
      }
      await storage.append([
        { topic: 'w', partition: 0, records: [rec('a'), rec('b')] },
        { topic: 'w', partition: 1, records: [rec('c')] },
      ]);
    });
    await listening.settle();
    // Nothing that appends carries a NOTIFY; the wake-ups are separate statements.
    const appends = seen.filter((q) => /INSERT INTO/.test(q.text));
    expect(appends).toHaveLength(21);
    expect(appends.every((q) => !/pg_notify|NOTIFY/i.test(q.text))).toBe(true);
    expect(seen.filter((q) => /notify/i.test(q.text)).every((q) => q.text.startsWith('SELECT count(pg_notify'))).toBe(true);
    // Every wake-up was sent after a commit: the reader woken by it sees a log end past 0.
    expect(listening.seen.length).toBeGreaterThan(0);
    expect(listening.seen.every((n) => n.high > 0n)).toBe(true);
    // The last wake-up of each partition came after its last commit.
    for (const [p, end] of [[0, 12n], [1, 11n]] as const) {
      const last = listening.seen.filter((n) => n.payload === `w/${p}`).at(-1);
      expect(last?.high).toBe(end);
    }
    expect(woken).toContain('w/0');
    expect(woken).toContain('w/1');
    await unwatch();
    await listening.close();
  });

  it('a transaction that appended wakes watchers only after COMMIT, and a rolled-back one never', async () => {
    const storage = freshStorage();
    await storage.connect();
    await storage.createTopics([{ name: 'tx', partitions: 1, config: DEFAULT_TOPIC_CONFIG }]);
    const listening = await listenWithWatermarks(storage, ['tx']);
    const tx = storage.deferredTransaction();
    await tx.append([{ topic: 'tx', partition: 0, records: [rec('held')] }]);
    await sleep(300);
    await listening.settle();
    expect(listening.seen).toEqual([]); // appended, not committed: nobody woken
    const committedAt = Date.now();
    await tx.commit();
    const deadline = Date.now() + 2_000;
    while (listening.seen.length === 0 && Date.now() < deadline) await sleep(10);
    await listening.settle();
    expect(listening.seen.map((n) => n.payload)).toEqual(['tx/0']);
    expect(listening.seen[0]!.at).toBeGreaterThanOrEqual(committedAt);
    expect(listening.seen[0]!.at - committedAt).toBeLessThan(1_000); // promptly, not at a poll
    expect(listening.seen[0]!.high).toBe(1n);

    const lost = storage.deferredTransaction();
    await lost.append([{ topic: 'tx', partition: 0, records: [rec('lost')] }]);
    await lost.rollback();
    await listening.settle();
    expect(listening.seen).toHaveLength(1);

    // Idempotent appends run in a transaction of their own: woken after it, too.
    const { producerId } = await storage.initProducer();
    await storage.append([{ topic: 'tx', partition: 0, records: [rec('idem')], baseSequence: 0 }], { producerId });
    const until = Date.now() + 2_000;
    while (listening.seen.length < 2 && Date.now() < until) await sleep(10);
    await listening.settle();
    expect(listening.seen.at(-1)).toMatchObject({ payload: 'tx/0', high: 2n });
    await listening.close();
  });

  it('many concurrent appends: the wake-ups are coalesced, and the last one of every partition follows its last commit', async () => {
    const storage = freshStorage();
    await storage.connect();
    await storage.createTopics([{ name: 'c', partitions: 4, config: DEFAULT_TOPIC_CONFIG }]);
    const listening = await listenWithWatermarks(storage, ['c']);
    const { seen } = await capture(() =>
      Promise.all(Array.from({ length: 200 }, (_, i) => storage.append([{ topic: 'c', partition: i % 4, records: [rec(`v${i}`)] }]))),
    );
    await sleep(300);
    await listening.settle();
    const wakeups = seen.filter((q) => q.text.startsWith('SELECT count(pg_notify'));
    expect(wakeups.length).toBeGreaterThan(0);
    expect(wakeups.length).toBeLessThan(200);
    for (let p = 0; p < 4; p++) expect(listening.seen.filter((n) => n.payload === `c/${p}`).at(-1)?.high).toBe(50n);
    await listening.close();
  });
});

describe('wake-ups only where a watcher waits (watch leases)', () => {
  const isNotify = (q: { text: string }) => q.text.startsWith('SELECT count(pg_notify');
  const stream = (key: string, expectedVersion: number) => [{ topic: 'es', partition: 0, key: Buffer.from(key), expectedVersion }];

  it('with no watcher, appends send no wake-up; a watcher in another process gets them from its first append on', async () => {
    const producer = freshStorage();
    await producer.connect();
    await producer.createTopics([
      { name: 'lw', partitions: 2, config: DEFAULT_TOPIC_CONFIG },
      { name: 'es', partitions: 1, config: { ...DEFAULT_TOPIC_CONFIG, 'retention.ms': -1 } as TopicConfig },
    ]);
    // Plain sends, a batch, a transaction and stream appends, while nobody watches: no NOTIFY at all.
    const quiet = await capture(async () => {
      await producer.append([{ topic: 'lw', partition: 0, records: [rec('a')] }]);
      await producer.append([{ topic: 'lw', partition: 0, records: [rec('b')] }, { topic: 'lw', partition: 1, records: [rec('c'), rec('d')] }]);
      const tx = producer.deferredTransaction();
      await tx.append([{ topic: 'lw', partition: 1, records: [rec('e')] }]);
      await tx.commit();
      await producer.appendToStreams([{ topic: 'es', partition: 0, records: [rec('s1', 's')] }], stream('s', 0));
      await Promise.all([1, 2, 3].map((i) => producer.appendToStreams([{ topic: 'es', partition: 0, records: [rec('x', `k${i}`)] }], stream(`k${i}`, 0))));
      await sleep(100);
    });
    expect(quiet.seen.filter(isNotify)).toEqual([]);

    // Another process (its own storage, same schema) starts watching: the producer's very next
    // appends wake it, promptly.
    const watcher = new PgLogStorage({ connectionString: database.connectionString, schema: producer.schema, migrate: false });
    await watcher.connect();
    try {
      const woken: string[] = [];
      const unwatch = await watcher.watch(['lw', 'es'], (topic, partition) => woken.push(`${topic}/${partition}`));
      const loud = await capture(async () => {
        await producer.append([{ topic: 'lw', partition: 1, records: [rec('f')] }]);
        await producer.appendToStreams([{ topic: 'es', partition: 0, records: [rec('s2', 's')] }], stream('s', 1));
        const deadline = Date.now() + 2_000;
        while (!(woken.includes('lw/1') && woken.includes('es/0')) && Date.now() < deadline) await sleep(5);
      });
      expect(loud.seen.filter(isNotify).length).toBeGreaterThan(0);
      expect(woken).toEqual(expect.arrayContaining(['lw/1', 'es/0']));
      // Watching one topic does not make appends to the others notify.
      woken.length = 0;
      await unwatch();
      const other = await watcher.watch(['es'], (topic, partition) => woken.push(`${topic}/${partition}`));
      await other();
    } finally {
      await watcher.disconnect();
    }
  });

  it('a watcher that registers while an open transaction holds the head lock is woken when it commits, not at its next poll', async () => {
    const storage = freshStorage();
    await storage.connect();
    await storage.createTopics([{ name: 'held', partitions: 1, config: DEFAULT_TOPIC_CONFIG }]);
    // The append moves the head (reading no lease: nobody watches yet) and stays uncommitted.
    const tx = storage.deferredTransaction();
    await tx.append([{ topic: 'held', partition: 0, records: [rec('late')] }]);
    const watcher = freshStorage({ schema: storage.schema, migrate: false });
    await watcher.connect();
    const woken: Array<{ at: number; partition: number }> = [];
    const t0 = Date.now();
    const unwatch = await watcher.watch(['held'], (_topic, partition) => woken.push({ at: Date.now(), partition }));
    // watch() does not wait for the lock for long: registration goes on in the background.
    expect(Date.now() - t0).toBeLessThan(2_000);
    // The watcher's first fetch (now) cannot see the record: it is not committed.
    expect((await watcher.fetch('held', 0, 0n, { maxRecords: 10, maxBytes: 1 << 20 })).records).toEqual([]);
    await sleep(300);
    expect(woken).toEqual([]);
    const committedAt = Date.now();
    await tx.commit();
    const deadline = Date.now() + 3_000;
    while (woken.length === 0 && Date.now() < deadline) await sleep(5);
    expect(woken.length).toBeGreaterThan(0);
    expect(woken[0]!.at - committedAt).toBeLessThan(1_000);
    expect((await watcher.fetch('held', 0, 0n, { maxRecords: 10, maxBytes: 1 << 20 })).records.map((r) => r.value!.toString())).toEqual(['late']);
    await unwatch();
  });

  it('leases are renewed while watching, lapse after the watcher stops, and new partitions inherit them', async () => {
    const storage = freshStorage({ watchLeaseMs: 1_000 });
    await storage.connect();
    await storage.createTopics([{ name: 'lease', partitions: 1, config: DEFAULT_TOPIC_CONFIG }]);
    const admin = await adminClient();
    const leases = async () =>
      (await admin.query<{ live: boolean | null }>(`SELECT watched_until > now() AS live FROM "${storage.schema}".partitions WHERE topic = 'lease' ORDER BY partition`)).rows.map(
        (r) => r.live === true,
      );
    expect(await leases()).toEqual([false]);
    const unwatch = await storage.watch(['lease'], () => {});
    expect(await leases()).toEqual([true]);
    await storage.createPartitions('lease', 2);
    expect(await leases()).toEqual([true, true]);
    // Three lease lengths later, still live: renewed every quarter of it.
    await sleep(3_000);
    expect(await leases()).toEqual([true, true]);
    const watched = await capture(() => storage.append([{ topic: 'lease', partition: 1, records: [rec('w')] }]).then(() => sleep(50)));
    expect(watched.seen.filter(isNotify).length).toBe(1);
    await unwatch();
    await sleep(1_300);
    expect(await leases()).toEqual([false, false]);
    const unwatched = await capture(() => storage.append([{ topic: 'lease', partition: 1, records: [rec('u')] }]).then(() => sleep(50)));
    expect(unwatched.seen.filter(isNotify)).toEqual([]);
  }, 20_000);

  it('a topic created after its watcher started is leased at the next renewal, which wakes the watcher', async () => {
    const storage = freshStorage({ watchLeaseMs: 1_000 });
    await storage.connect();
    const woken: string[] = [];
    const unwatch = await storage.watch(['later'], (topic, partition) => woken.push(`${topic}/${partition}`));
    await storage.createTopics([{ name: 'later', partitions: 1, config: DEFAULT_TOPIC_CONFIG }]);
    await storage.append([{ topic: 'later', partition: 0, records: [rec('first')] }]);
    const deadline = Date.now() + 2_000;
    while (woken.length === 0 && Date.now() < deadline) await sleep(10);
    // Woken by the renewal (a quarter of the lease later), not left to a poll.
    expect(woken).toContain('later/-1');
    await storage.append([{ topic: 'later', partition: 0, records: [rec('second')] }]);
    const until = Date.now() + 1_000;
    while (!woken.includes('later/0') && Date.now() < until) await sleep(5);
    expect(woken).toContain('later/0');
    await unwatch();
  });

  it('watchLeaseMs is checked', () => {
    for (const bad of [0, 999, 1.5, 3_600_001, Number.NaN]) {
      expect(() => new PgLogStorage({ connectionString: database.connectionString, watchLeaseMs: bad })).toThrow(/watchLeaseMs must be an integer/);
    }
  });
});

describe('wake-up spacing (wakeupIntervalMs)', () => {
  it('a writer in a tight loop sends at most one wake-up per interval, and the last one follows its last commit', async () => {
    const storage = freshStorage({ wakeupIntervalMs: 25 });
    await storage.connect();
    await storage.createTopics([{ name: 'w', partitions: 2, config: DEFAULT_TOPIC_CONFIG }]);
    const listening = await listenWithWatermarks(storage, ['w']);
    const started = performance.now();
    const { seen } = await capture(async () => {
      for (let i = 0; i < 60; i++) await storage.append([{ topic: 'w', partition: i % 2, records: [rec(`v${i}`)] }]);
      await sleep(100);
    });
    const elapsed = performance.now() - started;
    await listening.settle();
    const wakeups = seen.filter((q) => q.text.startsWith('SELECT count(pg_notify'));
    expect(wakeups.length).toBeGreaterThan(0);
    // One at once, then at most one per 25 ms (the loop took `elapsed`, the 100 ms sleep included).
    expect(wakeups.length).toBeLessThanOrEqual(Math.floor(elapsed / 25) + 2);
    expect(wakeups.length).toBeLessThan(60);
    for (let p = 0; p < 2; p++) expect(listening.seen.filter((n) => n.payload === `w/${p}`).at(-1)?.high).toBe(30n);
    await listening.close();
  });

  it('refuses a wakeupIntervalMs that is not 0 to 1000 milliseconds', () => {
    for (const bad of [-1, 1001, Number.NaN, '5' as unknown as number]) {
      expect(() => freshStorage({ wakeupIntervalMs: bad })).toThrow(/wakeupIntervalMs must be a number of milliseconds from 0 to 1000/);
    }
  });
});

describe('the append statement', () => {
  it('a single-message send is one prepared statement, a batch of any shape one other; neither reads segments or topics', async () => {
    const storage = freshStorage();
    await storage.connect();
    await storage.createTopics([
      { name: 'p', partitions: 6, config: DEFAULT_TOPIC_CONFIG },
      { name: 'q', partitions: 2, config: DEFAULT_TOPIC_CONFIG },
    ]);
    await storage.append([{ topic: 'p', partition: 0, records: [rec('warm')] }]);
    const { seen } = await capture(async () => {
      for (let i = 0; i < 5; i++) await storage.append([{ topic: 'p', partition: i % 6, records: [rec(`s${i}`)] }]);
      for (let i = 0; i < 3; i++) {
        await storage.append(
          Array.from({ length: 2 + i }, (_, p) => ({ topic: 'p', partition: p, records: Array.from({ length: 10 + p * i }, (_, j) => rec(`b${j}`, j % 3 ? `k${j}` : null)) })),
        );
      }
      await storage.append([
        { topic: 'p', partition: 5, records: [rec('x')] },
        { topic: 'q', partition: 1, records: [rec('y'), { ...rec('z'), timestamp: 1_700_000_000_000, headers: { h: Buffer.from('1') } }] },
      ]);
      await sleep(100);
    });
    const appends = seen.filter((q) => /INSERT INTO/.test(q.text));
    expect(appends).toHaveLength(9);
    expect(appends.every((q) => q.name?.startsWith('annals_'))).toBe(true);
    expect(new Set(appends.slice(0, 5).map((q) => q.name)).size).toBe(1); // one text for every single-record send
    expect(new Set(appends.slice(5).map((q) => q.name)).size).toBe(1); // one text for every batch shape
    expect(seen.some((q) => /segments|"topics"/.test(q.text))).toBe(false);
    // …and what they wrote reads back as sent.
    const q1 = await storage.fetch('q', 1, 0n, { maxRecords: 10, maxBytes: 1 << 20 });
    expect(q1.records.map((r) => [r.value!.toString(), r.timestamp, Object.keys(r.headers)])).toEqual([
      ['y', expect.any(Number), []],
      ['z', 1_700_000_000_000, ['h']],
    ]);
    const p1 = await storage.fetch('p', 1, 0n, { maxRecords: 100, maxBytes: 1 << 20 });
    expect(p1.records.map((r) => r.offset)).toEqual(Array.from({ length: p1.records.length }, (_, i) => BigInt(i)));
    expect(p1.records.filter((r) => r.key === null).length).toBeGreaterThan(0);
  });

  it('a batch naming a partition that does not exist writes nothing, in any of its partitions', async () => {
    const storage = freshStorage();
    await storage.connect();
    await storage.createTopics([{ name: 'a', partitions: 2, config: DEFAULT_TOPIC_CONFIG }]);
    await expect(
      storage.append([
        { topic: 'a', partition: 0, records: [rec('x')] },
        { topic: 'a', partition: 7, records: [rec('y')] },
      ]),
    ).rejects.toThrow(/does not exist/);
    await expect(storage.append([{ topic: 'a', partition: 9, records: [rec('y')] }])).rejects.toThrow(/does not exist/);
    expect((await storage.fetchWatermarks('a')).map((w) => w.high)).toEqual([0n, 0n]);
  });
});

describe('segment marks cached per process', () => {
  const small = (n: number) => ({ ...DEFAULT_TOPIC_CONFIG, 'segment.records': n }) as TopicConfig;

  it('appends that outrun the segments kept ahead, from a process that did not create the topic, stay dense; segments stay ahead', async () => {
    const schema = `t_${randomBytes(5).toString('hex')}`;
    const creator = freshStorage({ schema });
    await creator.connect();
    await creator.createTopics([{ name: 's', partitions: 2, config: small(20) }]);
    const other = freshStorage({ schema, migrate: false });
    await other.connect();
    let expected = [0n, 0n];
    for (let i = 0; i < 30; i++) {
      const storage = i % 2 ? creator : other;
      const p = i % 3 === 0 ? 1 : 0;
      const n = (i * 7) % 45 + 1; // up to 45 records: more than two segments at once
      const [r] = await storage.append([{ topic: 's', partition: p, records: Array.from({ length: n }, (_, j) => rec(`${i}.${j}`)) }]);
      expect(r!.baseOffset).toBe(expected[p]);
      expected[p] = expected[p]! + BigInt(n);
      if (i % 5 === 0) {
        // A batch over both partitions, too.
        const rs = await storage.append([
          { topic: 's', partition: 0, records: [rec('b0'), rec('b1')] },
          { topic: 's', partition: 1, records: [rec('b2')] },
        ]);
        expect(rs.map((x) => x.baseOffset)).toEqual(expected);
        expected = [expected[0]! + 2n, expected[1]! + 1n];
      }
    }
    await sleep(300); // background segment creation settles
    const admin = await adminClient();
    const { rows } = await admin.query<{ partition: number; ahead: string }>(
      `SELECT s.partition, (max(s.end_offset) - p.next_offset)::text AS ahead FROM "${schema}".segments s
       JOIN "${schema}".partitions p ON p.topic = s.topic AND p.partition = s.partition WHERE s.topic = 's' GROUP BY s.partition, p.next_offset ORDER BY 1`,
    );
    expect(rows).toHaveLength(2);
    for (const r of rows) expect(BigInt(r.ahead)).toBeGreaterThan(0n);
    for (const p of [0, 1]) {
      const fetched = await other.fetch('s', p, 0n, { maxRecords: 10_000, maxBytes: 1 << 24 });
      expect(fetched.records.map((r) => r.offset)).toEqual(Array.from({ length: Number(expected[p]!) }, (_, i) => BigInt(i)));
    }
  });

  it('expected-version appends that outrun the segments kept ahead (lean and general statements) create them and land, versions dense', async () => {
    const schema = `t_${randomBytes(5).toString('hex')}`;
    const creator = freshStorage({ schema });
    await creator.connect();
    await creator.createTopics([{ name: 'es', partitions: 1, config: { ...small(20), 'retention.ms': -1 } as TopicConfig }]);
    const other = freshStorage({ schema, migrate: false });
    await other.connect();
    const versions = new Map<string, number>();
    let end = 0n;
    for (let i = 0; i < 24; i++) {
      const storage = i % 2 ? creator : other;
      const key = `s${i % 3}`;
      const n = (i * 5) % 27 + 1; // up to 27 records: past the next segment at once
      const expectedVersion = versions.get(key) ?? 0;
      const records = Array.from({ length: n }, (_, j) => rec(`${i}.${j}`, key));
      // Every fourth call also checks a second stream, which takes the general statement.
      const streams = [{ topic: 'es', partition: 0, key: Buffer.from(key), expectedVersion }];
      if (i % 4 === 3) streams.push({ topic: 'es', partition: 0, key: Buffer.from('other'), expectedVersion: versions.get('other') ?? 0 });
      const r = await storage.appendToStreams([{ topic: 'es', partition: 0, records }], streams);
      expect(r.appends[0]!.baseOffset).toBe(end);
      expect(r.streams[0]).toMatchObject({ previousVersion: expectedVersion, version: expectedVersion + n });
      versions.set(key, expectedVersion + n);
      end += BigInt(n);
    }
    const fetched = await other.fetch('es', 0, 0n, { maxRecords: 10_000, maxBytes: 1 << 24 });
    expect(fetched.records.map((r) => r.offset)).toEqual(Array.from({ length: Number(end) }, (_, i) => BigInt(i)));
    for (const [key, version] of versions) expect((await creator.readStream('es', 0, Buffer.from(key))).version).toBe(version);
  });

  it('a topic deleted and re-created elsewhere behind a stale mark: appends still land from offset 0', async () => {
    const schema = `t_${randomBytes(5).toString('hex')}`;
    const a = freshStorage({ schema });
    await a.connect();
    await a.createTopics([{ name: 'r', partitions: 1, config: small(10) }]);
    for (let i = 0; i < 5; i++) await a.append([{ topic: 'r', partition: 0, records: Array.from({ length: 9 }, () => rec('x')) }]);
    await sleep(200);
    const b = freshStorage({ schema, migrate: false });
    await b.connect();
    await b.deleteTopics(['r']);
    await b.createTopics([{ name: 'r', partitions: 1, config: small(10) }]);
    // `a` still holds marks from the old topic (its log end was 45).
    const [first] = await a.append([{ topic: 'r', partition: 0, records: Array.from({ length: 25 }, () => rec('y')) }]);
    expect(first!.baseOffset).toBe(0n);
    const [second] = await a.append([{ topic: 'r', partition: 0, records: [rec('z')] }]);
    expect(second!.baseOffset).toBe(25n);
    expect((await b.fetchWatermarks('r'))[0]!.high).toBe(26n);
  });
});

/** Every flush to a socket while `fn` runs, as latin1 text (one entry per write/writev call). */
async function captureFlushes<T>(fn: () => Promise<T>): Promise<{ result: T; flushes: string[] }> {
  const proto = net.Socket.prototype as unknown as { _writeGeneric: (writev: boolean, data: any, encoding: string, cb: unknown) => unknown };
  const original = proto._writeGeneric;
  const flushes: string[] = [];
  const text = (c: any) => (Buffer.isBuffer(c) ? c : Buffer.from(c.chunk ?? c)).toString('latin1');
  proto._writeGeneric = function (this: unknown, writev, data, encoding, cb) {
    flushes.push(writev ? (data as any[]).map(text).join('') : text(data));
    return original.call(this, writev, data, encoding, cb);
  };
  try {
    return { result: await fn(), flushes };
  } finally {
    proto._writeGeneric = original;
  }
}

describe('lazy savepoints on the wire', () => {
  it("a record's SAVEPOINT reaches the server in the same write as the statement behind it; one taken before a pause is still sent, and rolls back", async () => {
    const storage = freshStorage<{ notes: { v: string } }>();
    await storage.connect();
    const admin = await adminClient();
    await admin.query(`CREATE TABLE "${storage.schema}".notes (v text NOT NULL)`);
    const tx = storage.deferredTransaction();
    await tx.db.withSchema(storage.schema).insertInto('notes').values({ v: 'begin' }).execute();

    const { flushes } = await captureFlushes(() =>
      tx.savepoint(async () => {
        await tx.db.withSchema(storage.schema).insertInto('notes').values({ v: 'a' }).execute();
      }),
    );
    const withSavepoint = flushes.filter((f) => f.includes('SAVEPOINT annals_sp_'));
    expect(withSavepoint).toHaveLength(1);
    expect(withSavepoint[0]).toContain('insert into "');

    // The connection is taken (and the SAVEPOINT queued) before a pause: it must not wait for a
    // statement that comes late — and the savepoint it opened still undoes the record's write.
    await expect(
      tx.savepoint(async () => {
        await tx.db.connection().execute(async (db) => {
          await sleep(50);
          await db.withSchema(storage.schema).insertInto('notes').values({ v: 'dropped' }).execute();
        });
        throw new Error('the handler fails');
      }),
    ).rejects.toThrow('the handler fails');
    await tx.savepoint(async () => {
      await tx.db.withSchema(storage.schema).insertInto('notes').values({ v: 'b' }).execute();
    });
    await tx.commit();
    const { rows } = await admin.query<{ v: string }>(`SELECT v FROM "${storage.schema}".notes ORDER BY v`);
    expect(rows.map((r) => r.v)).toEqual(['a', 'b', 'begin']);
  });

  it("tx.db after a failed savepoint taken before the transaction began: its statements go to the transaction begun anew, not to the connection given back", async () => {
    const storage = freshStorage<{ notes: { v: string } }>();
    await storage.connect();
    const admin = await adminClient();
    await admin.query(`CREATE TABLE "${storage.schema}".notes (v text NOT NULL)`);
    const tx = storage.deferredTransaction();
    await expect(
      tx.savepoint(async () => {
        await tx.db.withSchema(storage.schema).insertInto('notes').values({ v: 'undone' }).execute();
        throw new Error('the handler fails');
      }),
    ).rejects.toThrow('the handler fails');
    expect(tx.begun).toBe(false);
    // The connection it gave back is taken by someone else now: the transaction begins on another.
    const other = await storage.acquireClient();
    await tx.savepoint(async () => {
      await tx.db.withSchema(storage.schema).insertInto('notes').values({ v: 'kept' }).execute();
    });
    await tx.db.withSchema(storage.schema).insertInto('notes').values({ v: 'kept too' }).execute();
    // Not visible to another session before COMMIT: both statements ran in the transaction.
    expect((await admin.query(`SELECT v FROM "${storage.schema}".notes`)).rows).toEqual([]);
    await tx.commit();
    other.release();
    const { rows } = await admin.query<{ v: string }>(`SELECT v FROM "${storage.schema}".notes ORDER BY v`);
    expect(rows.map((r) => r.v)).toEqual(['kept', 'kept too']);
  });
});

describe("statements a handler repeats through tx.db", () => {
  it('a row-less write with parameters goes prepared from its second use; RETURNING, reads and parameterless statements never do', async () => {
    const storage = freshStorage<any>();
    await storage.connect();
    const admin = await adminClient();
    await admin.query(`CREATE TABLE "${storage.schema}".notes (v text NOT NULL)`);
    const tx = storage.deferredTransaction();
    const db = tx.db.withSchema(storage.schema);
    const { seen } = await capture(async () => {
      for (let i = 0; i < 8; i++) {
        await tx.savepoint(async () => {
          await db.insertInto('notes').values({ v: `n${i}` }).execute();
        });
      }
      // A long text (a many-row INSERT) is never named, however often it comes.
      for (let i = 0; i < 3; i++) await db.insertInto('notes').values(Array.from({ length: 800 }, (_, k) => ({ v: `m${i}-${k}` }))).execute();
      for (let i = 0; i < 3; i++) {
        await db.insertInto('notes').values({ v: `r${i}` }).returning('v').execute();
        await db.selectFrom('notes').select('v').where('v', '=', `n${i}`).execute();
        await sql`UPDATE ${sql.table(`${storage.schema}.notes`)} SET v = v WHERE false`.execute(tx.db);
      }
    });
    const long = seen.filter((q) => q.text.length > 4096);
    expect(long).toHaveLength(3);
    for (const q of long) expect(q.name).toBeUndefined();
    const inserts = seen.filter((q) => /^insert into/i.test(q.text) && !/returning/i.test(q.text) && q.text.length <= 4096);
    expect(inserts).toHaveLength(8);
    expect(inserts[0]!.name).toBeUndefined();
    expect(new Set(inserts.slice(1).map((q) => q.name)).size).toBe(1);
    expect(inserts[1]!.name).toMatch(/^annals_h_/);
    for (const q of seen.filter((q) => /returning|^select|^update/i.test(q.text))) expect(q.name).toBeUndefined();
    const { rows } = await sql<{ n: string }>`SELECT count(*)::text AS n FROM pg_prepared_statements WHERE name LIKE 'annals_h_%'`.execute(tx.db);
    expect(rows[0]!.n).toBe('1');
    await tx.commit();
    const all = await admin.query<{ v: string }>(`SELECT v FROM "${storage.schema}".notes WHERE v NOT LIKE 'm%' ORDER BY v`);
    expect(all.rows.map((r) => r.v)).toEqual(['n0', 'n1', 'n2', 'n3', 'n4', 'n5', 'n6', 'n7', 'r0', 'r1', 'r2']);
    expect((await admin.query(`SELECT count(*)::int AS n FROM "${storage.schema}".notes WHERE v LIKE 'm%'`)).rows[0].n).toBe(2400);
  });

  it('a prepared handler statement still follows search_path, and rolls back with its savepoint', async () => {
    const storage = freshStorage<any>();
    await storage.connect();
    const admin = await adminClient();
    const [a, b] = [`${storage.schema}_a`, `${storage.schema}_b`];
    for (const s of [a, b]) await admin.query(`CREATE SCHEMA "${s}"; CREATE TABLE "${s}".notes (v text NOT NULL)`);
    try {
      const tx = storage.deferredTransaction();
      await sql`SELECT set_config('search_path', ${`"${a}"`}, true)`.execute(tx.db);
      for (let i = 0; i < 3; i++) await tx.db.insertInto('notes').values({ v: `a${i}` }).execute();
      await sql`SELECT set_config('search_path', ${`"${b}"`}, true)`.execute(tx.db);
      await tx.db.insertInto('notes').values({ v: 'b0' }).execute();
      await expect(
        tx.savepoint(async () => {
          await tx.db.insertInto('notes').values({ v: 'b-dropped' }).execute();
          throw new Error('the handler fails');
        }),
      ).rejects.toThrow('the handler fails');
      await tx.commit();
      expect((await admin.query(`SELECT v FROM "${a}".notes ORDER BY v`)).rows.map((r) => r.v)).toEqual(['a0', 'a1', 'a2']);
      expect((await admin.query(`SELECT v FROM "${b}".notes ORDER BY v`)).rows.map((r) => r.v)).toEqual(['b0']);
    } finally {
      await admin.query(`DROP SCHEMA "${a}" CASCADE; DROP SCHEMA "${b}" CASCADE`);
    }
  });
});
