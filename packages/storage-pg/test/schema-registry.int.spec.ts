/**
 * The schema registry on PostgreSQL: registration on first publish (cached per client, measured),
 * refusal of a changed schema under a registered version with nothing written, and two services
 * on different versions of one contract — separate OS processes — publishing and consuming
 * through one topic, each consumer following its `onUnknownVersion` policy.
 *
 * The child processes import the built packages (`npm test` builds first; with a bare
 * `npx vitest run`, run `npx tsc -b` before).
 */
import { Annals, defineEvent, defineTopic, SchemaVersionConflictError, type LogStorage } from '@annals/core';
import { fork, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { adminClient, database, freshAnnals, freshStorage, sleep } from './support.js';

const SERVICE = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures/contract-service.mjs');

const v1 = z.object({ orderId: z.string(), total: z.number() });
const Created = defineEvent({ type: 'order.created', versions: { 1: v1 } });
const orders = defineTopic({ name: 'orders', events: [Created], key: (e) => e.orderId });

describe('registration on publish (PgLogStorage)', () => {
  it('registers the version on the first publish only, and refuses a changed schema under it, writing nothing', async () => {
    const annals = freshAnnals();
    const storage = annals.storage as LogStorage<any> & { schema: string };
    await annals.admin().createTopics({ topics: [orders] });
    let calls = 0;
    const registry = storage.schemaRegistry;
    const register = registry.register.bind(registry);
    registry.register = (entries, options) => {
      calls++;
      return register(entries, options);
    };
    const producer = annals.producer();
    for (let i = 0; i < 20; i++) await producer.publish(orders, Created, { orderId: `o-${i}`, total: i });
    expect(calls).toBe(1);
    const [row] = await registry.list();
    expect(row).toMatchObject({ eventType: 'order.created', version: 1, registeredBy: 'test' });
    expect(row!.schema).toMatchObject({ type: 'object', required: ['orderId', 'total'] });

    // Another service edits version 1 in place.
    const Edited = defineEvent({ type: 'order.created', versions: { 1: z.object({ orderId: z.string(), total: z.string() }) } });
    const edited = defineTopic({ name: 'orders', events: [Edited], key: (e) => e.orderId });
    const other = new Annals({ clientId: 'edited-service', storage: freshStorage({ schema: storage.schema, migrate: false }) });
    try {
      const before = await storage.fetchWatermarks('orders');
      const error = await other.producer().publish(edited, Edited, { orderId: 'o-x', total: '1' }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(SchemaVersionConflictError);
      expect((error as SchemaVersionConflictError).diff).toEqual(['~ properties.total.type: "number" → "string"']);
      // In a transaction too: refused before COMMIT, the application's write rolls back with it.
      const inTx = await other
        .transaction(async (tx) => {
          await tx.publish(edited, Edited, { orderId: 'o-y', total: '2' });
        })
        .catch((e: unknown) => e);
      expect(inTx).toBeInstanceOf(SchemaVersionConflictError);
      expect(await storage.fetchWatermarks('orders')).toEqual(before);
      const client = await adminClient();
      const { rows } = await client.query(`SELECT event_type, version, fingerprint, registered_by FROM "${storage.schema}".schema_registry`);
      expect(rows).toEqual([{ event_type: 'order.created', version: 1, fingerprint: row!.fingerprint, registered_by: 'test' }]);
    } finally {
      await other.disconnect();
    }
  });

  it('publish cost: registration cached per client vs registration off vs a registry round trip per publish', async () => {
    const annals = freshAnnals();
    const off = new Annals({ clientId: 'off', storage: annals.storage, registerSchemas: false });
    await annals.admin().createTopics({ topics: [orders] });
    const n = 100;
    const on = annals.producer();
    const plain = off.producer();
    const registry = annals.storage.schemaRegistry;
    await on.publish(orders, Created, { orderId: 'warm', total: 0 });
    await plain.publish(orders, Created, { orderId: 'warm', total: 0 });
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    const rounds = { cached: [] as number[], off: [] as number[], uncached: [] as number[] };
    for (let round = 0; round < 5; round++) {
      let t = performance.now();
      for (let i = 0; i < n; i++) await plain.publish(orders, Created, { orderId: `a-${i}`, total: i });
      rounds.off.push((performance.now() - t) / n);
      t = performance.now();
      for (let i = 0; i < n; i++) await on.publish(orders, Created, { orderId: `b-${i}`, total: i });
      rounds.cached.push((performance.now() - t) / n);
      // What an uncached client would pay: the registry check before every publish.
      const entry = (await registry.list())[0]!;
      t = performance.now();
      for (let i = 0; i < n; i++) {
        await registry.register([entry]);
        await plain.publish(orders, Created, { orderId: `c-${i}`, total: i });
      }
      rounds.uncached.push((performance.now() - t) / n);
    }
    const result = { off: median(rounds.off), cached: median(rounds.cached), uncached: median(rounds.uncached) };
    console.log(`[publish cost, ms per sequential publish, median of 5 rounds × ${n}] registration off ${result.off.toFixed(3)} · cached ${result.cached.toFixed(3)} · registry round trip per publish ${result.uncached.toFixed(3)}`);
    expect(result.cached).toBeLessThan(result.uncached);
  }, 180_000);
});

interface Service {
  readonly child: ChildProcess;
  readonly messages: any[];
}

const services: Service[] = [];
afterEach(() => {
  for (const s of services.splice(0)) if (s.child.exitCode === null) s.child.kill('SIGKILL');
});

function spawnService(schema: string, contractVersion: 'v1' | 'v2'): Service {
  const child = fork(SERVICE, [database.connectionString, schema, contractVersion], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv: [] });
  const service: Service = { child, messages: [] };
  child.on('message', (m) => service.messages.push(m));
  services.push(service);
  return service;
}

async function waitFor(what: string, condition: () => boolean, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
    await sleep(25);
  }
}

const of = (s: Service, type: string, groupId?: string) => s.messages.filter((m) => m.type === type && (groupId === undefined || m.groupId === groupId));

describe('two services on different versions of one contract (separate processes)', () => {
  it('each consumer follows its onUnknownVersion policy; the newer one upcasts the older records', async () => {
    const storage = freshStorage();
    await storage.connect();
    const admin = new Annals({ clientId: 'admin', storage });
    await admin.admin().createTopics({
      topics: [
        { topic: 'shipments', numPartitions: 1 },
        { topic: 'dlq-old-read', numPartitions: 1 },
        { topic: 'dlq-old-dlq', numPartitions: 1 },
      ],
    });
    const older = spawnService(storage.schema, 'v1');
    const newer = spawnService(storage.schema, 'v2');
    await waitFor('both services ready', () => of(older, 'ready').length === 1 && of(newer, 'ready').length === 1);

    // The newer service publishes v2 records; then the older one a v1 record.
    newer.child.send({
      type: 'publish',
      events: [
        { type: 'shipment.booked', payload: { shipmentId: 's-1', weightKg: 2, carrier: 'DHL' } },
        { type: 'shipment.booked', payload: { shipmentId: 's-2', weightKg: 3 } },
        { type: 'shipment.cancelled', payload: { shipmentId: 's-1', reason: 'customer' } },
      ],
    });
    await waitFor('newer published', () => of(newer, 'published').length === 1 || of(newer, 'error').length > 0);
    older.child.send({ type: 'publish', events: [{ type: 'shipment.booked', payload: { shipmentId: 's-3', weightKg: 1 } }] });
    await waitFor('older published', () => of(older, 'published').length === 1 || of(older, 'error').length > 0);
    expect([...of(older, 'error'), ...of(newer, 'error')]).toEqual([]);

    older.child.send({
      type: 'consume',
      groups: [
        { groupId: 'old-read', onUnknownVersion: 'read-as-latest-known', onFailure: 'dead-letter', deadLetterTopic: 'dlq-old-read' },
        { groupId: 'old-dlq', onUnknownVersion: 'dead-letter', onFailure: 'stop', deadLetterTopic: 'dlq-old-dlq' },
        { groupId: 'old-fail', onUnknownVersion: 'fail', onFailure: 'pause' },
      ],
    });
    newer.child.send({ type: 'consume', groups: [{ groupId: 'new', onFailure: 'stop' }] });
    await waitFor('every consumer done', () =>
      of(older, 'event', 'old-read').length === 3 &&
      of(older, 'dead-letter', 'old-read').length === 1 &&
      of(older, 'event', 'old-dlq').length === 1 &&
      of(older, 'dead-letter', 'old-dlq').length === 3 &&
      of(older, 'paused', 'old-fail').length === 1 &&
      of(newer, 'event', 'new').length === 4,
    );
    await sleep(300); // nothing more may arrive
    const events = (s: Service, g: string) => of(s, 'event', g).map((m) => [m.offset, m.eventType, m.storedVersion, m.readAsVersion, m.payload]);

    // Older consumer, read-as-latest-known: forward-compatible booked v2 read as v1 (carrier
    // stripped); cancelled is backward-only, so its v2 record fails and goes by onFailure (dead-letter).
    expect(events(older, 'old-read')).toEqual([
      ['0', 'shipment.booked', 2, 1, { shipmentId: 's-1', weightKg: 2 }],
      ['1', 'shipment.booked', 2, 1, { shipmentId: 's-2', weightKg: 3 }],
      ['3', 'shipment.booked', 1, null, { shipmentId: 's-3', weightKg: 1 }],
    ]);
    expect(of(older, 'dead-letter', 'old-read').map((m) => [m.offset, m.code])).toEqual([['2', 'UPCAST_FAILED']]);
    // Older consumer, dead-letter: every v2 record to its DLQ, whatever onFailure ('stop') says.
    expect(events(older, 'old-dlq')).toEqual([['3', 'shipment.booked', 1, null, { shipmentId: 's-3', weightKg: 1 }]]);
    expect(of(older, 'dead-letter', 'old-dlq').map((m) => m.offset)).toEqual(['0', '1', '2']);
    // Older consumer, fail + onFailure pause: stops at the first unknown version, handles nothing.
    expect(events(older, 'old-fail')).toEqual([]);
    expect(of(older, 'paused', 'old-fail').map((m) => m.offset)).toEqual(['0']);
    // Newer consumer: everything, the older service's v1 record upcast to v2.
    expect(events(newer, 'new')).toEqual([
      ['0', 'shipment.booked', 2, null, { shipmentId: 's-1', weightKg: 2, carrier: 'DHL' }],
      ['1', 'shipment.booked', 2, null, { shipmentId: 's-2', weightKg: 3, carrier: 'unknown' }],
      ['2', 'shipment.cancelled', 2, null, { shipmentId: 's-1', reason: 'customer' }],
      ['3', 'shipment.booked', 1, null, { shipmentId: 's-3', weightKg: 1, carrier: 'legacy' }],
    ]);
    expect([...of(older, 'crash'), ...of(newer, 'crash')]).toEqual([]);

    // The dead-letter topics hold the records with their reason.
    const dlq = await admin.fetch('dlq-old-dlq', 0, 0n);
    expect(dlq.messages.map((m) => [m.headers['annals-dlq-offset']!.toString(), m.headers['annals-dlq-error-code']!.toString(), m.headers['schema-version']!.toString()])).toEqual([
      ['0', 'UPCAST_FAILED', '2'],
      ['1', 'UPCAST_FAILED', '2'],
      ['2', 'UPCAST_FAILED', '2'],
    ]);
    expect(dlq.messages[0]!.headers['annals-dlq-error-message']!.toString()).toMatch(/newer than this contract knows \(v1–v1\)/);
    const readDlq = await admin.fetch('dlq-old-read', 0, 0n);
    expect(readDlq.messages[0]!.headers['annals-dlq-error-message']!.toString()).toMatch(/only forward or full compatibility promises/);

    // Each service registered the version it published.
    expect((await storage.schemaRegistry.list()).map((r) => [r.eventType, r.version])).toEqual([
      ['shipment.booked', 1],
      ['shipment.booked', 2],
      ['shipment.cancelled', 2],
    ]);
    for (const s of [older, newer]) s.child.send({ type: 'stop' });
    await waitFor('services stopped', () => older.child.exitCode !== null && newer.child.exitCode !== null, 10_000);
    await admin.disconnect();
  }, 90_000);
});

