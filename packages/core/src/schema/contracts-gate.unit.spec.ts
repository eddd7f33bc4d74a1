/**
 * The schema gate's library functions: snapshots, the check against a snapshot and a registry,
 * the report, the contract loader; and the registry on the publish path with the in-memory store.
 */
import { InMemoryLogStorage } from '@annals/testing';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { Annals } from '../client/annals.js';
import { defineEvent } from '../contracts/event.js';
import { defineTopic } from '../contracts/topic.js';
import { ContractLoadError, SchemaVersionConflictError } from '../errors.js';
import { checkContracts, parseContractSnapshot, snapshotContracts } from './contracts-gate.js';
import { versionSchemaOf } from './json-schema.js';
import { loadAnnalsConfig, loadContracts } from './load-contracts.js';
import { pushContracts } from './push-contracts.js';

const fixtures = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../test/fixtures/gate');

const v1 = z.object({ orderId: z.string(), total: z.number() });
const v2 = z.object({ orderId: z.string(), total: z.number(), currency: z.string().default('EUR') });
const Created = defineEvent({ type: 'order.created', versions: { 1: v1, 2: v2 }, upcast: { 1: (p) => p } });
const Paid = defineEvent({ type: 'order.paid', versions: { 1: z.object({ orderId: z.string() }) } });
const orders = defineTopic({ name: 'orders', events: [Created, Paid] });

describe('fingerprints', () => {
  it('ignore descriptions, field order and enum order, but not types, defaults or zod-only types', () => {
    const fp = (s: z.ZodType) => versionSchemaOf(s).fingerprint;
    expect(fp(z.object({ a: z.string(), b: z.number() }))).toBe(fp(z.object({ b: z.number(), a: z.string().describe('the a') })));
    expect(fp(z.object({ e: z.enum(['x', 'y']) }))).toBe(fp(z.object({ e: z.enum(['y', 'x']) })));
    expect(fp(z.object({ a: z.string() }))).not.toBe(fp(z.object({ a: z.number() })));
    expect(fp(z.object({ a: z.string().default('x') }))).not.toBe(fp(z.object({ a: z.string().default('y') })));
    expect(fp(z.object({ a: z.date() }))).not.toBe(fp(z.object({ a: z.bigint() })));
    expect(fp(z.object({ a: z.string() }))).toMatch(/^sha256:[0-9a-f]{64}$/);
  });
});

describe('snapshotContracts', () => {
  it('is deterministic JSON with every version, its fingerprint and the effective mode', () => {
    const a = snapshotContracts([orders]);
    const b = snapshotContracts([Paid, orders, Created]);
    expect(JSON.stringify(a)).toBe(JSON.stringify(b));
    expect(Object.keys(a.events)).toEqual(['order.created', 'order.paid']);
    expect(a.events['order.created']).toMatchObject({ compatibility: 'backward', topics: ['orders'] });
    expect(Object.keys(a.events['order.created']!.versions)).toEqual(['1', '2']);
    expect(parseContractSnapshot(JSON.parse(JSON.stringify(a)))).toEqual(a);
    expect(() => parseContractSnapshot({ events: {} })).toThrow(ContractLoadError);
  });
});

describe('checkContracts', () => {
  const snapshot = JSON.parse(JSON.stringify(snapshotContracts([orders])));

  it('passes unchanged contracts and reports added versions and events as non-breaking', () => {
    expect(checkContracts({ contracts: [orders], snapshot })).toMatchObject({ ok: true, breaking: [] });
    const Shipped = defineEvent({ type: 'order.shipped', versions: { 1: z.object({ orderId: z.string() }) } });
    const v3 = z.object({ orderId: z.string(), total: z.number(), currency: z.string().default('EUR'), note: z.string().optional() });
    const Created3 = defineEvent({ type: 'order.created', versions: { 1: v1, 2: v2, 3: v3 }, upcast: { 1: (p) => p, 2: (p) => p } });
    const result = checkContracts({ contracts: [defineTopic({ name: 'orders', events: [Created3, Paid, Shipped] })], snapshot });
    expect(result.ok).toBe(true);
    expect(result.changes.map((c) => [c.kind, c.eventType, c.version ?? null])).toEqual([
      ['version-added', 'order.created', 3],
      ['event-added', 'order.shipped', null],
    ]);
    expect(result.report).toMatch(/^✓ schema check passed: 3 event type\(s\), no breaking change\./);
  });

  it('fails a version changed in place, with a diff of the schema', () => {
    const edited = defineEvent({ type: 'order.created', versions: { 1: z.object({ orderId: z.string(), total: z.string() }), 2: v2 }, upcast: { 1: (p) => ({ ...p, total: Number(p.total) }) } });
    const result = checkContracts({ contracts: [defineTopic({ name: 'orders', events: [edited, Paid] })], snapshot });
    expect(result.ok).toBe(false);
    const changed = result.breaking.find((c) => c.kind === 'version-changed')!;
    expect(changed).toMatchObject({ eventType: 'order.created', version: 1, against: 'snapshot' });
    expect(changed.details).toEqual(['~ properties.total.type: "number" → "string"']);
    expect(result.report).toContain('was changed in place');
    expect(result.report).toContain('add v3 with an upcaster from v2');
  });

  it('fails a removed version or event type', () => {
    const only1 = defineEvent({ type: 'order.created', versions: { 1: v1 } });
    const result = checkContracts({ contracts: [defineTopic({ name: 'orders', events: [only1] })], snapshot });
    expect(result.breaking.map((c) => [c.kind, c.eventType, c.version ?? null])).toEqual([
      ['version-removed', 'order.created', 2],
      ['event-removed', 'order.paid', null],
    ]);
  });

  it('fails an older version without an upcast path to the latest', () => {
    const broken = { ...Created, hasUpcaster: () => false } as typeof Created;
    const result = checkContracts({ contracts: [broken] });
    expect(result.breaking.map((c) => [c.kind, c.version])).toEqual([['no-upcast-path', 1]]);
    expect(result.report).toContain('Add upcast: { 1: (v1) => … }');
  });

  it('compares with the registry: a mismatching fingerprint and a version the contracts lack are breaking', () => {
    const registered = (type: string, version: number, schema: z.ZodType) => ({ eventType: type, version, ...versionSchemaOf(schema), registeredAt: 0, registeredBy: 'billing' });
    const registry = [registered('order.created', 1, v1), registered('order.created', 2, z.object({ orderId: z.string() })), registered('order.created', 3, v2)];
    const result = checkContracts({ contracts: [orders], registry });
    expect(result.breaking.map((c) => [c.kind, c.version, c.against])).toEqual([
      ['version-changed', 2, 'registry'],
      ['version-removed', 3, 'registry'],
    ]);
    expect(result.report).toContain('(registered by billing)');
    expect(result.changes.filter((c) => !c.breaking).map((c) => [c.kind, c.eventType])).toEqual([['not-registered', 'order.paid']]);
  });

  it('refuses one event type defined twice with different schemas', () => {
    const other = defineEvent({ type: 'order.paid', versions: { 1: z.object({ orderId: z.number() }) } });
    expect(() => checkContracts({ contracts: [orders, other] })).toThrow(ContractLoadError);
  });
});

describe('loadContracts', () => {
  it('reads annals.config.json and collects exported event and topic contracts', async () => {
    const { config, contracts, sources } = await loadContracts({ cwd: fixtures });
    expect(config).toMatchObject({ file: path.join(fixtures, 'annals.config.json'), snapshot: path.join(fixtures, 'snapshot.json'), compatibility: 'forward' });
    expect(contracts.map((c) => ('name' in c ? `topic:${c.name}` : `event:${c.type}`)).sort()).toEqual(['event:order.noted', 'event:order.placed', 'topic:orders']);
    expect(sources.get('order.noted')).toBe(path.join(fixtures, 'contracts-a.mjs'));
    const snapshot = snapshotContracts(contracts, { defaultCompatibility: config.compatibility });
    expect(snapshot.events['order.placed']!.compatibility).toBe('full'); // the topic's
    expect(snapshot.events['order.noted']!.compatibility).toBe('forward'); // the config's default
  });

  it('fails with ContractLoadError naming the problem', async () => {
    await expect(loadAnnalsConfig({ cwd: path.join(fixtures, 'nowhere') })).rejects.toThrow(/No annals.config.js \/ annals.config.mjs \/ annals.config.json in/);
    await expect(loadContracts({ cwd: fixtures, configFile: 'clash.config.mjs' })).rejects.toThrow(/"order.placed" is defined twice/);
  });
});

describe('the registry on the publish path (in memory)', () => {
  it('registers on first publish; refuses a changed schema under a registered version, writing nothing', async () => {
    const storage = new InMemoryLogStorage();
    const topic = defineTopic({ name: 'orders', events: [Created] });
    await using a = new Annals({ clientId: 'service-a', storage });
    await a.admin().createTopics({ topics: [topic] });
    await a.producer().publish(topic, Created, { orderId: 'o-1', total: 1 });
    expect((await storage.schemaRegistry.list()).map((r) => [r.eventType, r.version, r.registeredBy])).toEqual([['order.created', 2, 'service-a']]);

    const Changed = defineEvent({ type: 'order.created', versions: { 1: v1, 2: z.object({ orderId: z.string(), total: z.string(), currency: z.string().default('EUR') }) }, upcast: { 1: (p) => ({ ...p, total: String(p.total) }) } });
    const changedTopic = defineTopic({ name: 'orders', events: [Changed] });
    await using b = new Annals({ clientId: 'service-b', storage });
    const error = await b.producer().publish(changedTopic, Changed, { orderId: 'o-2', total: 'x' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SchemaVersionConflictError);
    expect(error).toMatchObject({ code: 'SCHEMA_VERSION_CONFLICT', eventType: 'order.created', schemaVersion: 2, topic: 'orders', registeredBy: 'service-a' });
    expect((error as SchemaVersionConflictError).diff).toEqual(['~ properties.total.type: "number" → "string"']);
    expect((error as Error).message).toContain('add version 3 with an upcaster from 2');
    expect((await storage.fetch('orders', 0, 0n, { maxRecords: 10, maxBytes: 1 << 20 })).records).toHaveLength(1);
    expect(await storage.schemaRegistry.list()).toHaveLength(1);
  });

  it('registerContracts registers at start-up; publishes after it make no registry call', async () => {
    const storage = new InMemoryLogStorage();
    await using annals = new Annals({ clientId: 'warm', storage });
    await annals.admin().createTopics({ topics: [orders] });
    await annals.registerContracts([orders]);
    expect((await storage.schemaRegistry.list()).map((r) => `${r.eventType}/${r.version}`)).toEqual(['order.created/2', 'order.paid/1']);
    let calls = 0;
    const register = storage.schemaRegistry.register.bind(storage.schemaRegistry);
    storage.schemaRegistry.register = (entries, options) => (calls++, register(entries, options));
    await annals.transaction(async (tx) => {
      await tx.publish(orders, Created, { orderId: 'o-1', total: 1 });
      await tx.publish(orders, Paid, { orderId: 'o-1' });
    });
    expect(calls).toBe(0);
    await using off = new Annals({ clientId: 'off', storage, registerSchemas: false });
    const Changed = defineEvent({ type: 'order.paid', versions: { 1: z.object({ orderId: z.number() }) } });
    await off.registerContracts([Changed]);
    await off.producer().publish(defineTopic({ name: 'orders', events: [Changed] }), Changed, { orderId: 1 });
    expect(calls).toBe(0); // registration off: no check at all (the gate in CI is then the only guard)
  });

  it('stream appends (aggregates) register like publishes, and are refused the same way', async () => {
    const storage = new InMemoryLogStorage();
    const streams = defineTopic({ name: 'order-streams', events: [Paid], key: (e) => e.orderId, config: { 'retention.ms': -1 } });
    await using annals = new Annals({ clientId: 'aggregates', storage });
    await annals.admin().createTopics({ topics: [streams] });
    await annals.aggregates.append(streams, 'o-1', [{ type: 'order.paid', payload: { orderId: 'o-1' } }], { expectedVersion: 'no-stream' });
    expect((await storage.schemaRegistry.list()).map((r) => [r.eventType, r.version, r.registeredBy])).toEqual([['order.paid', 1, 'aggregates']]);
    const Changed = defineEvent({ type: 'order.paid', versions: { 1: z.object({ orderId: z.string(), cents: z.number() }) } });
    const changed = defineTopic({ name: 'order-streams', events: [Changed], key: (e) => e.orderId, config: { 'retention.ms': -1 } });
    await using other = new Annals({ clientId: 'other', storage });
    await expect(other.aggregates.append(changed, 'o-1', [{ type: 'order.paid', payload: { orderId: 'o-1', cents: 1 } }], { expectedVersion: 1 })).rejects.toBeInstanceOf(
      SchemaVersionConflictError,
    );
    expect((await annals.aggregates.load(streams, 'o-1')).version).toBe(1);
  });

  it('pushContracts registers every version, all or nothing', async () => {
    const storage = new InMemoryLogStorage();
    const pushed = await pushContracts({ storage, contracts: [orders] });
    expect(pushed.ok).toBe(true);
    expect((await storage.schemaRegistry.list()).map((r) => `${r.eventType}/${r.version}`)).toEqual(['order.created/1', 'order.created/2', 'order.paid/1']);
    const Paid2 = defineEvent({ type: 'order.paid', versions: { 1: z.object({ orderId: z.number() }), 2: z.object({ orderId: z.number() }) }, upcast: { 1: (p) => p } });
    const refused = await pushContracts({ storage, contracts: [Paid2] });
    expect(refused.ok).toBe(false);
    expect(refused.report).toContain('✗ "order.paid" v1 (registered by annals-schema-push) differs:');
    expect(refused.report).toContain('~ properties.orderId.type: "string" → "number"');
    expect((await storage.schemaRegistry.list()).map((r) => `${r.eventType}/${r.version}`)).toEqual(['order.created/1', 'order.created/2', 'order.paid/1']);
  });
});
