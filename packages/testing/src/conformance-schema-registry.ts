/**
 * The schema-registry part of the storage conformance suite (`schema-registry.ts` in
 * `@annals/core`). Declared inside `describeLogStorageConformance`, so every store runs it.
 *
 * Named invariants, each pinned by a test:
 * - **immutability**: a registered version keeps its fingerprint; registering it again with the
 *   same fingerprint is a no-op, with another one a conflict;
 * - **all or nothing**: a registration with one conflicting entry writes none of its entries;
 * - **first writer wins**: of concurrent registrations of one new version with different
 *   fingerprints, exactly one is recorded and every other sees a conflict naming it.
 */
import type { LogStorage, SchemaRegistration } from '@annals/core';
import { describe, expect, it } from 'vitest';

export interface SchemaRegistryConformanceContext {
  /** The test's connected store. */
  readonly storage: () => LogStorage<any>;
}

const fp = (n: number): string => `sha256:${n.toString(16).padStart(64, '0')}`;
const entry = (eventType: string, version: number, n: number): SchemaRegistration => ({
  eventType,
  version,
  fingerprint: fp(n),
  schema: { type: 'object', properties: { n: { const: n } } },
});

export function describeSchemaRegistryConformance(ctx: SchemaRegistryConformanceContext): void {
  describe('schema registry', () => {
    it('registers versions once; the same fingerprint again is a no-op; list sorts by type and version', async () => {
      const registry = ctx.storage().schemaRegistry;
      const first = await registry.register([entry('b.event', 2, 2), entry('b.event', 1, 1), entry('a.event', 1, 3)], { registeredBy: 'svc-a' });
      expect(first.ok).toBe(true);
      if (!first.ok) return;
      expect(first.registered.map((r) => `${r.eventType}/${r.version}`).sort()).toEqual(['a.event/1', 'b.event/1', 'b.event/2']);
      expect(first.existing).toEqual([]);
      const again = await registry.register([entry('b.event', 1, 1)], { registeredBy: 'svc-b' });
      expect(again).toMatchObject({ ok: true, registered: [], existing: [{ eventType: 'b.event', version: 1, fingerprint: fp(1), registeredBy: 'svc-a' }] });
      const all = await registry.list();
      expect(all.map((r) => [r.eventType, r.version, r.fingerprint])).toEqual([
        ['a.event', 1, fp(3)],
        ['b.event', 1, fp(1)],
        ['b.event', 2, fp(2)],
      ]);
      expect(all[0]!.schema).toEqual({ type: 'object', properties: { n: { const: 3 } } });
      expect(Math.abs(all[0]!.registeredAt - Date.now())).toBeLessThan(5 * 60_000);
      expect((await registry.list({ eventTypes: ['b.event'] })).map((r) => r.version)).toEqual([1, 2]);
      expect(await registry.list({ eventTypes: ['none'] })).toEqual([]);
    });

    it('refuses a version registered with another fingerprint, and writes none of the registration', async () => {
      const registry = ctx.storage().schemaRegistry;
      await registry.register([entry('order.created', 1, 1)]);
      const refused = await registry.register([entry('order.created', 2, 2), entry('order.created', 1, 99), entry('order.paid', 1, 5)]);
      expect(refused.ok).toBe(false);
      if (refused.ok) return;
      expect(refused.conflicts).toHaveLength(1);
      expect(refused.conflicts[0]!.requested.fingerprint).toBe(fp(99));
      expect(refused.conflicts[0]!.registered).toMatchObject({ eventType: 'order.created', version: 1, fingerprint: fp(1) });
      // Nothing of the refused registration was written: not v2, not order.paid, and v1 unchanged.
      expect((await registry.list()).map((r) => [r.eventType, r.version, r.fingerprint])).toEqual([['order.created', 1, fp(1)]]);
    });

    it('first writer wins: of concurrent registrations of one new version, exactly one is recorded', async () => {
      const registry = ctx.storage().schemaRegistry;
      const results = await Promise.all(Array.from({ length: 8 }, (_, i) => registry.register([entry('race', 1, 100 + i)])));
      const winners = results.filter((r) => r.ok && r.registered.length === 1);
      expect(winners).toHaveLength(1);
      const [row] = await registry.list({ eventTypes: ['race'] });
      for (const r of results) {
        if (r.ok) continue;
        expect(r.conflicts[0]!.registered.fingerprint).toBe(row!.fingerprint);
      }
      expect(results.filter((r) => !r.ok)).toHaveLength(7);
    });

    it('validates entries: version, fingerprint, duplicates (InvalidOptionsError, nothing written)', async () => {
      const registry = ctx.storage().schemaRegistry;
      for (const bad of [
        [{ ...entry('x', 1, 1), version: 0 }],
        [{ ...entry('x', 1, 1), fingerprint: 'md5:abc' }],
        [entry('x', 1, 1), entry('x', 1, 1)],
        [{ ...entry('x', 1, 1), eventType: '' }],
      ]) {
        await expect(registry.register(bad)).rejects.toMatchObject({ name: 'InvalidOptionsError' });
      }
      expect(await registry.list()).toEqual([]);
      expect(await registry.register([])).toEqual({ ok: true, registered: [], existing: [] });
    });
  });
}
