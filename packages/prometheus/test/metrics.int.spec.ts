/**
 * Lag metrics on a real PostgreSQL: true counts after real consumers (produce N, consume M, lag
 * N − M per partition), lag in seconds growing while a consumer is paused and back to 0 once it
 * caught up (the database clock), the HTTP endpoint's exposition text on loopback, and a broken
 * connection failing the scrape visibly.
 */
import { Annals, type Consumer } from '@annals/core';
import { PgLogStorage } from '@annals/storage-pg';
import { FaultProxy, useTestDatabase } from '@annals/testing';
import { randomBytes } from 'node:crypto';
import { Registry } from 'prom-client';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { registerAnnalsMetrics, serveMetrics } from '../src/index.js';
import { parseExposition, series } from './exposition.js';

const database = useTestDatabase();
const G = ['consumergroup', 'topic', 'partition'] as const;
const fast = { heartbeatInterval: 100, sessionTimeout: 2_000, maxWaitTimeInMs: 200 } as const;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => {});
});
afterAll(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => {});
});

function freshAnnals(connectionString = database.connectionString, schema = `m_${randomBytes(5).toString('hex')}`) {
  const annals = new Annals({
    clientId: 'metrics-int',
    storage: new PgLogStorage({ connectionString, schema }),
    retry: { retries: 3, initialRetryTime: 20, maxRetryTime: 100 },
  });
  cleanups.push(() => annals.disconnect());
  return { annals, schema };
}

function consumer(annals: Annals<any>, groupId: string): Consumer<any> {
  const c = annals.consumer({ groupId, ...fast });
  cleanups.push(() => c.disconnect());
  return c;
}

async function waitFor(what: string, condition: () => boolean | Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
    await sleep(20);
  }
}

const scrape = async (registry: Registry) => parseExposition(await registry.metrics());

describe('lag metrics on PostgreSQL', () => {
  it('lag equals the true count per partition after real consumers (produce N, consume M: N − M), and the sums add up', async () => {
    const { annals } = freshAnnals();
    const admin = annals.admin();
    await admin.createTopics({ topics: [{ topic: 'orders', numPartitions: 3 }] });
    const producer = annals.producer();
    const send = (partition: number, count: number, tag: string) =>
      producer.send({ topic: 'orders', messages: Array.from({ length: count }, (_, i) => ({ partition, value: `${tag}${partition}-${i}` })) });
    const consumed = [5, 3, 1];
    const produced = [12, 3, 8];
    for (const [p, m] of consumed.entries()) await send(p, m, 'first');

    // billing consumes everything there is (M per partition), then stops; more arrives (N in all).
    const billing = consumer(annals, 'billing');
    let seen = 0;
    await billing.subscribe({ topic: 'orders', fromBeginning: true });
    await billing.run({ eachMessage: async () => void seen++ });
    await waitFor('billing committed M per partition', async () =>
      (await admin.describeGroupLag('billing')).every((l) => l.lag === '0' && l.currentOffset !== null),
    );
    expect(seen).toBe(9);
    await billing.disconnect();
    for (const [p, n] of produced.entries()) await send(p, n - consumed[p]!, 'later');

    // audit keeps up with everything and stays a live member.
    const audit = consumer(annals, 'audit');
    await audit.subscribe({ topic: 'orders', fromBeginning: true });
    await audit.run({ eachMessage: async () => {} });
    await waitFor('audit caught up', async () => (await admin.describeGroupLag('audit')).every((l) => l.lag === '0' && l.currentOffset !== null));
    await admin.deleteRecords({ topic: 'orders', partitions: [{ partition: 0, offset: '2' }] });

    const registry = new Registry();
    registerAnnalsMetrics(annals, { registry });
    const m = await scrape(registry);
    const expected = produced.map((n, p) => n - consumed[p]!);
    expect(series(m, 'annals_consumergroup_lag', G)).toEqual({
      ...Object.fromEntries(expected.map((lag, p) => [`consumergroup=billing,topic=orders,partition=${p}`, lag])),
      ...Object.fromEntries(produced.map((_, p) => [`consumergroup=audit,topic=orders,partition=${p}`, 0])),
    });
    expect(series(m, 'annals_consumergroup_lag_sum', ['consumergroup', 'topic'])).toEqual({
      'consumergroup=audit,topic=orders': 0,
      'consumergroup=billing,topic=orders': expected.reduce((a, b) => a + b, 0),
    });
    expect(series(m, 'annals_consumergroup_current_offset', G)).toEqual({
      ...Object.fromEntries(consumed.map((c, p) => [`consumergroup=billing,topic=orders,partition=${p}`, c])),
      ...Object.fromEntries(produced.map((n, p) => [`consumergroup=audit,topic=orders,partition=${p}`, n])),
    });
    expect(series(m, 'annals_topic_partition_current_offset', ['topic', 'partition'])).toEqual({
      'topic=orders,partition=0': 12,
      'topic=orders,partition=1': 3,
      'topic=orders,partition=2': 8,
    });
    expect(series(m, 'annals_topic_partition_oldest_offset', ['topic', 'partition'])).toEqual({
      'topic=orders,partition=0': 2,
      'topic=orders,partition=1': 0,
      'topic=orders,partition=2': 0,
    });
    expect(series(m, 'annals_topic_partitions', ['topic'])).toEqual({ 'topic=orders': 3 });
    expect(series(m, 'annals_consumergroup_members', ['consumergroup'])).toEqual({ 'consumergroup=audit': 1, 'consumergroup=billing': 0 });
    const lagSeconds = series(m, 'annals_consumergroup_lag_seconds', G);
    expect(lagSeconds['consumergroup=billing,topic=orders,partition=1']).toBe(0);
    expect(lagSeconds['consumergroup=billing,topic=orders,partition=0']).toBeGreaterThan(0);
    expect(lagSeconds['consumergroup=billing,topic=orders,partition=0']).toBeLessThan(60);
    expect(series(m, 'annals_up')).toEqual({ '': 1 });
  });

  it('lag in seconds grows while a consumer is paused, by the database clock, and returns to 0 once it caught up', async () => {
    const { annals } = freshAnnals();
    await annals.admin().createTopics({ topics: [{ topic: 'ticks' }] });
    const producer = annals.producer();
    const ticker = consumer(annals, 'ticker');
    let handled = 0;
    await ticker.subscribe({ topic: 'ticks', fromBeginning: true });
    await ticker.run({ eachMessage: async () => void handled++ });
    await producer.send({ topic: 'ticks', messages: [{ value: 'warm-up' }] });
    await waitFor('the warm-up record', async () => (await annals.admin().describeGroupLag('ticker')).some((l) => l.currentOffset === '1'));

    ticker.pause([{ topic: 'ticks' }]);
    await producer.send({ topic: 'ticks', messages: [{ value: 'a' }, { value: 'b' }, { value: 'c' }] });
    const registry = new Registry();
    registerAnnalsMetrics(annals, { registry, groups: ['ticker'] });
    const key = 'consumergroup=ticker,topic=ticks,partition=0';
    const observed: number[] = [];
    for (let i = 0; i < 4; i++) {
      const m = await scrape(registry);
      expect(series(m, 'annals_consumergroup_lag', G)[key]).toBe(3);
      observed.push(series(m, 'annals_consumergroup_lag_seconds', G)[key]!);
      await sleep(120);
    }
    expect(observed[0]).toBeGreaterThan(0);
    for (let i = 1; i < observed.length; i++) expect(observed[i]).toBeGreaterThan(observed[i - 1]!);
    // 3 × 120 ms apart, by the same (database) clock that stamped the records.
    expect(observed.at(-1)! - observed[0]!).toBeGreaterThanOrEqual(0.3);
    expect(observed.at(-1)!).toBeLessThan(30);
    expect(handled).toBe(1);

    ticker.resume([{ topic: 'ticks' }]);
    await waitFor('the consumer caught up', async () => series(await scrape(registry), 'annals_consumergroup_lag', G)[key] === 0);
    const m = await scrape(registry);
    expect(series(m, 'annals_consumergroup_lag_seconds', G)[key]).toBe(0);
    expect(series(m, 'annals_consumergroup_current_offset', G)[key]).toBe(4);
    expect(handled).toBe(4);
  });

  it('serves valid exposition text on loopback; concurrent scrapes share one read; other paths and methods are refused', async () => {
    const { annals } = freshAnnals();
    await annals.admin().createTopics({ topics: [{ topic: 'served', numPartitions: 2 }] });
    await annals.producer().send({ topic: 'served', messages: [{ partition: 1, value: 'x' }] });
    await annals.admin().setOffsets({ groupId: 'readers', topic: 'served', partitions: [{ partition: 0, offset: '0' }, { partition: 1, offset: '0' }] });
    const registry = new Registry();
    registerAnnalsMetrics(annals, { registry });
    const server = await serveMetrics({ registry, port: 0 });
    cleanups.push(() => server.close());
    expect(server.url).toBe(`http://127.0.0.1:${server.port}/metrics`);

    const response = await fetch(server.url);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8');
    const m = parseExposition(await response.text());
    expect(series(m, 'annals_consumergroup_lag', G)).toEqual({
      'consumergroup=readers,topic=served,partition=0': 0,
      'consumergroup=readers,topic=served,partition=1': 1,
    });
    expect([...m.types.keys()].sort()).toEqual([
      'annals_consumergroup_current_offset',
      'annals_consumergroup_lag',
      'annals_consumergroup_lag_seconds',
      'annals_consumergroup_lag_sum',
      'annals_consumergroup_members',
      'annals_scrape_duration_seconds',
      'annals_scrape_errors_total',
      'annals_topic_partition_current_offset',
      'annals_topic_partition_oldest_offset',
      'annals_topic_partitions',
      'annals_up',
    ]);
    for (const name of m.types.keys()) expect(m.help.get(name)?.length).toBeGreaterThan(10);

    // Five scrapes while a read is in flight (held until all five have arrived): one read of the database.
    const storage = annals.storage as PgLogStorage;
    let reads = 0;
    let open!: () => void;
    const held = new Promise<void>((resolve) => (open = resolve));
    const describeLag = storage.describeLag.bind(storage);
    storage.describeLag = async (query) => {
      reads++;
      await held;
      return describeLag(query);
    };
    const pending = Promise.all(Array.from({ length: 5 }, () => fetch(server.url).then((r) => r.text())));
    await waitFor('the first read', () => reads === 1);
    await sleep(300);
    open();
    const bodies = await pending;
    expect(reads).toBe(1);
    for (const body of bodies) parseExposition(body);

    expect((await fetch(`http://127.0.0.1:${server.port}/other`)).status).toBe(404);
    expect((await fetch(server.url, { method: 'POST' })).status).toBe(405);
    const head = await fetch(server.url, { method: 'HEAD' });
    expect([head.status, await head.text()]).toEqual([200, '']);
    await server.close();
    await server.close();
    await expect(fetch(server.url)).rejects.toThrow();
  });

  it('a broken database connection fails the scrape visibly: HTTP 500, annals_up 0, errors counted, no zeros', async () => {
    const setup = freshAnnals();
    await setup.annals.admin().createTopics({ topics: [{ topic: 'cut' }] });
    await setup.annals.admin().setOffsets({ groupId: 'g', topic: 'cut', partitions: [{ partition: 0, offset: '0' }] });
    const direct = new URL(database.connectionString);
    const proxy = new FaultProxy({ target: { host: '127.0.0.1', port: Number(direct.port || 5432) } });
    await proxy.start();
    cleanups.push(() => proxy.stop());
    const { annals } = freshAnnals(proxy.connectionString(database.connectionString), setup.schema);

    const registry = new Registry();
    registerAnnalsMetrics(annals, { registry, timeoutMs: 3_000 });
    const omitting = new Registry();
    registerAnnalsMetrics(annals, { registry: omitting, timeoutMs: 3_000, onError: 'omit' });
    const server = await serveMetrics({ registry, port: 0 });
    cleanups.push(() => server.close());
    expect((await fetch(server.url)).status).toBe(200);
    expect(series(await scrape(omitting), 'annals_up')).toEqual({ '': 1 });

    await proxy.stop(); // every connection cut, and no new one accepted
    const started = Date.now();
    const response = await fetch(server.url);
    expect(response.status).toBe(500);
    expect(await response.text()).toMatch(/metrics collection failed\n# \w+Error: /);
    expect(Date.now() - started).toBeLessThan(10_000);
    await expect(registry.metrics()).rejects.toThrow();
    expect((await registry.getSingleMetric('annals_scrape_errors_total')!.get()).values[0]!.value).toBeGreaterThanOrEqual(2);

    const m = await scrape(omitting);
    expect(series(m, 'annals_up')).toEqual({ '': 0 });
    expect(series(m, 'annals_scrape_errors_total')).toEqual({ '': 1 });
    expect(m.samples.filter((s) => s.name.startsWith('annals_consumergroup') || s.name.startsWith('annals_topic'))).toEqual([]);
  });
});
