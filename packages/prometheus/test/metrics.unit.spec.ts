/**
 * The collector on the in-memory log, with an injected store clock: exact figures, names, labels
 * and units; one read per scrape shared by concurrent scrapes; deadlines that do not pile reads
 * up; failures that fail the scrape (or, with `onError: 'omit'`, report `annals_up 0`) and never
 * report zeros; options.
 */
import { Annals, ConnectionError, InvalidOptionsError, type LagQuery, type LagSnapshot } from '@annals/core';
import { InMemoryLogStorage } from '@annals/testing';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { MetricsCollectionTimeoutError, registerAnnalsMetrics } from '../src/index.js';
import { parseExposition, series } from './exposition.js';

const G = ['consumergroup', 'topic', 'partition'] as const;
const T = ['topic', 'partition'] as const;

/** A client on an in-memory log whose clock is `clock.now`, far from the machine's clock. */
async function setup() {
  const clock = { now: Date.UTC(2030, 0, 1) };
  const storage = new InMemoryLogStorage({ now: () => clock.now });
  const annals = new Annals({ clientId: 'metrics-unit', storage, retry: { retries: 0 } });
  await annals.connect();
  // Count the reads, and let a test hold or fail them.
  const reads = { count: 0, gate: undefined as Promise<void> | undefined, fail: undefined as Error | undefined };
  const describeLag = storage.describeLag.bind(storage);
  storage.describeLag = async (query?: LagQuery): Promise<LagSnapshot> => {
    reads.count++;
    if (reads.gate) await reads.gate;
    if (reads.fail) throw reads.fail;
    return describeLag(query);
  };
  return { clock, storage, annals, reads };
}

async function scrape(registry: Registry) {
  return parseExposition(await registry.metrics());
}

function gate() {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => (open = resolve));
  return { promise, open };
}

describe('registerAnnalsMetrics', () => {
  it('reports lag, lag in seconds by the store clock, offsets, partitions and members with exact figures', async () => {
    const { clock, storage, annals } = await setup();
    const admin = annals.admin();
    await admin.createTopics({ topics: [{ topic: 'orders', numPartitions: 3 }, { topic: 'audit', numPartitions: 1 }] });
    const producer = annals.producer();
    const t0 = clock.now;
    // orders[0]: 10 records, one a second; orders[1]: 4; orders[2]: none.
    for (let i = 0; i < 10; i++) {
      await producer.send({ topic: 'orders', messages: [{ partition: 0, value: `a${i}` }, ...(i < 4 ? [{ partition: 1, value: `b${i}` }] : [])] });
      clock.now += 1000;
    }
    await admin.setOffsets({ groupId: 'billing', topic: 'orders', partitions: [{ partition: 0, offset: '6' }, { partition: 1, offset: '4' }] });
    const member = await storage.joinGroup('shipping', { clientId: 'ship', clientHost: 'h', topics: ['orders'], sessionTimeoutMs: 120_000 }, { onGroupChange() {}, onAppend() {}, onLost() {} });
    await admin.deleteRecords({ topic: 'orders', partitions: [{ partition: 0, offset: '2' }] });
    clock.now = t0 + 60_000;

    const registry = new Registry();
    registerAnnalsMetrics(annals, { registry });
    const m = await scrape(registry);

    expect(series(m, 'annals_consumergroup_lag', G)).toEqual({
      'consumergroup=billing,topic=orders,partition=0': 4,
      'consumergroup=billing,topic=orders,partition=1': 0,
      'consumergroup=billing,topic=orders,partition=2': 0,
      // nothing committed: lag counts from the log start
      'consumergroup=shipping,topic=orders,partition=0': 8,
      'consumergroup=shipping,topic=orders,partition=1': 4,
      'consumergroup=shipping,topic=orders,partition=2': 0,
    });
    expect(series(m, 'annals_consumergroup_lag_sum', ['consumergroup', 'topic'])).toEqual({
      'consumergroup=billing,topic=orders': 4,
      'consumergroup=shipping,topic=orders': 12,
    });
    // billing's first unconsumed record of orders[0] is offset 6, appended at t0 + 6 s; now is t0 + 60 s.
    expect(series(m, 'annals_consumergroup_lag_seconds', G)).toEqual({
      'consumergroup=billing,topic=orders,partition=0': 54,
      'consumergroup=billing,topic=orders,partition=1': 0,
      'consumergroup=billing,topic=orders,partition=2': 0,
      'consumergroup=shipping,topic=orders,partition=0': 58,
      'consumergroup=shipping,topic=orders,partition=1': 60,
      'consumergroup=shipping,topic=orders,partition=2': 0,
    });
    expect(series(m, 'annals_consumergroup_current_offset', G)).toEqual({
      'consumergroup=billing,topic=orders,partition=0': 6,
      'consumergroup=billing,topic=orders,partition=1': 4,
    });
    expect(series(m, 'annals_consumergroup_members', ['consumergroup'])).toEqual({ 'consumergroup=billing': 0, 'consumergroup=shipping': 1 });
    expect(series(m, 'annals_topic_partitions', ['topic'])).toEqual({ 'topic=audit': 1, 'topic=orders': 3 });
    expect(series(m, 'annals_topic_partition_current_offset', T)).toEqual({
      'topic=audit,partition=0': 0,
      'topic=orders,partition=0': 10,
      'topic=orders,partition=1': 4,
      'topic=orders,partition=2': 0,
    });
    expect(series(m, 'annals_topic_partition_oldest_offset', T)).toEqual({
      'topic=audit,partition=0': 0,
      'topic=orders,partition=0': 2,
      'topic=orders,partition=1': 0,
      'topic=orders,partition=2': 0,
    });
    expect(series(m, 'annals_up')).toEqual({ '': 1 });
    expect(series(m, 'annals_scrape_errors_total')).toEqual({ '': 0 });
    expect(m.types.get('annals_scrape_errors_total')).toBe('counter');
    expect(m.types.get('annals_consumergroup_lag_seconds')).toBe('gauge');

    // No label carries a member or client id, or anything but group, topic and partition.
    const labelNames = new Set(m.samples.flatMap((s) => Object.keys(s.labels)));
    expect([...labelNames].sort()).toEqual(['consumergroup', 'partition', 'topic']);
    expect(m.samples.some((s) => Object.values(s.labels).some((v) => v.includes(member.memberId) || v === 'ship'))).toBe(false);

    // The member's heartbeat goes stale by the store clock: no longer live.
    clock.now += 120_001;
    expect(series(await scrape(registry), 'annals_consumergroup_members', ['consumergroup'])['consumergroup=shipping']).toBe(0);
    await member.leave();
    await annals.disconnect();
  });

  it('filters groups and topics, and takes a prefix', async () => {
    const { annals } = await setup();
    const admin = annals.admin();
    await admin.createTopics({ topics: [{ topic: 'a' }, { topic: 'b' }] });
    await admin.setOffsets({ groupId: 'g1', topic: 'a', partitions: [{ partition: 0, offset: '0' }] });
    await admin.setOffsets({ groupId: 'g1', topic: 'b', partitions: [{ partition: 0, offset: '0' }] });
    await admin.setOffsets({ groupId: 'g2', topic: 'a', partitions: [{ partition: 0, offset: '0' }] });
    const registry = new Registry();
    const metrics = registerAnnalsMetrics(annals, { registry, groups: ['g1', 'gone'], topics: ['b'], prefix: 'shop_annals_' });
    expect(metrics.metricNames).toContain('shop_annals_consumergroup_lag');
    const m = await scrape(registry);
    expect(series(m, 'shop_annals_consumergroup_lag', G)).toEqual({ 'consumergroup=g1,topic=b,partition=0': 0 });
    expect(series(m, 'shop_annals_topic_partitions', ['topic'])).toEqual({ 'topic=b': 1 });
    expect(series(m, 'shop_annals_consumergroup_members', ['consumergroup'])).toEqual({ 'consumergroup=g1': 0 });
    expect(m.samples.every((s) => s.name.startsWith('shop_annals_'))).toBe(true);
    metrics.unregister();
    metrics.unregister();
    expect(await registry.metrics()).toBe('\n');
    await annals.disconnect();
  });

  it('reads once per scrape, and concurrent scrapes share the read in flight', async () => {
    const { annals, reads } = await setup();
    await annals.admin().createTopics({ topics: [{ topic: 'a', numPartitions: 4 }] });
    const registry = new Registry();
    registerAnnalsMetrics(annals, { registry });
    await registry.metrics();
    expect(reads.count).toBe(1);

    const held = gate();
    reads.gate = held.promise;
    const scrapes = [registry.metrics(), registry.metrics(), registry.getMetricsAsJSON(), registry.metrics()];
    await new Promise((r) => setTimeout(r, 20));
    expect(reads.count).toBe(2);
    reads.gate = undefined;
    held.open();
    const [first, ...rest] = await Promise.all(scrapes);
    for (const r of rest.filter((x): x is string => typeof x === 'string')) expect(r).toBe(first);
    expect(reads.count).toBe(2);
    await registry.metrics();
    expect(reads.count).toBe(3);
    await annals.disconnect();
  });

  it('a read past the deadline fails the scrape, and later scrapes wait on it instead of piling up reads', async () => {
    const { annals, reads } = await setup();
    const registry = new Registry();
    const metrics = registerAnnalsMetrics(annals, { registry, timeoutMs: 50 });
    const held = gate();
    reads.gate = held.promise;
    await expect(registry.metrics()).rejects.toBeInstanceOf(MetricsCollectionTimeoutError);
    await expect(registry.metrics()).rejects.toBeInstanceOf(MetricsCollectionTimeoutError);
    await expect(metrics.collect()).rejects.toMatchObject({ code: 'REQUEST_TIMED_OUT', retriable: true });
    expect(reads.count).toBe(1);
    reads.gate = undefined;
    held.open();
    await new Promise((r) => setTimeout(r, 10));
    const m = await scrape(registry);
    expect(series(m, 'annals_up')).toEqual({ '': 1 });
    expect(series(m, 'annals_scrape_errors_total')).toEqual({ '': 3 });
    expect(reads.count).toBe(2);
    await annals.disconnect();
  });

  it('a failing read fails the scrape; the lag series are emptied, never zeroed; it recovers', async () => {
    const { annals, reads } = await setup();
    await annals.admin().createTopics({ topics: [{ topic: 'a' }] });
    await annals.producer().send({ topic: 'a', messages: [{ value: 'x' }] });
    await annals.admin().setOffsets({ groupId: 'g', topic: 'a', partitions: [{ partition: 0, offset: '0' }] });
    const registry = new Registry();
    registerAnnalsMetrics(annals, { registry });
    expect(series(await scrape(registry), 'annals_consumergroup_lag', G)).toEqual({ 'consumergroup=g,topic=a,partition=0': 1 });

    reads.fail = new ConnectionError('database unreachable');
    await expect(registry.metrics()).rejects.toThrow('database unreachable');
    const lag = await registry.getSingleMetric('annals_consumergroup_lag')!.get().catch((e: unknown) => e);
    expect(lag).toBeInstanceOf(ConnectionError);
    expect((await registry.getSingleMetric('annals_up')!.get()).values.map((v) => v.value)).toEqual([0]);

    reads.fail = undefined;
    const m = await scrape(registry);
    expect(series(m, 'annals_up')).toEqual({ '': 1 });
    // Three failed collections: the scrape, then each single-metric get() above collected on its own.
    expect(series(m, 'annals_scrape_errors_total')).toEqual({ '': 3 });
    expect(series(m, 'annals_consumergroup_lag', G)).toEqual({ 'consumergroup=g,topic=a,partition=0': 1 });
    await annals.disconnect();
  });

  it("onError: 'omit' answers with annals_up 0 and the error count, and no lag series at all", async () => {
    const { annals, reads } = await setup();
    await annals.admin().createTopics({ topics: [{ topic: 'a' }] });
    await annals.admin().setOffsets({ groupId: 'g', topic: 'a', partitions: [{ partition: 0, offset: '0' }] });
    const registry = new Registry();
    registerAnnalsMetrics(annals, { registry, onError: 'omit' });
    await registry.metrics();
    reads.fail = new ConnectionError('database unreachable');
    const m = await scrape(registry);
    expect(series(m, 'annals_up')).toEqual({ '': 0 });
    expect(series(m, 'annals_scrape_errors_total')).toEqual({ '': 1 });
    expect(m.samples.filter((s) => s.name.startsWith('annals_consumergroup') || s.name.startsWith('annals_topic'))).toEqual([]);
    await annals.disconnect();
  });

  it('validates its options and refuses to register twice in one registry', async () => {
    const { annals } = await setup();
    const registry = new Registry();
    expect(() => registerAnnalsMetrics(annals, { registry, prefix: 'bad-prefix_' })).toThrow(InvalidOptionsError);
    expect(() => registerAnnalsMetrics(annals, { registry, prefix: 'annals' })).toThrow(InvalidOptionsError);
    expect(() => registerAnnalsMetrics(annals, { registry, timeoutMs: 0 })).toThrow(InvalidOptionsError);
    expect(() => registerAnnalsMetrics(annals, { registry, groups: [''] })).toThrow(InvalidOptionsError);
    expect(() => registerAnnalsMetrics(annals, { registry, onError: 'ignore' as 'omit' })).toThrow(InvalidOptionsError);
    const metrics = registerAnnalsMetrics(annals, { registry });
    expect(Object.isFrozen(metrics.options)).toBe(true);
    expect(metrics.options).toMatchObject({ groups: 'all', topics: 'all', prefix: 'annals_', timeoutMs: 5000, onError: 'throw' });
    expect(() => registerAnnalsMetrics(annals, { registry })).toThrow(/already has a metric named annals_consumergroup_lag/);
    registerAnnalsMetrics(annals, { registry, prefix: 'other_' });
    await annals.disconnect();
  });
});
