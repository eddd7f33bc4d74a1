/**
 * `annals projections list|status|rebuild` through the built binary. The projection's code comes
 * from test/fixtures/order-totals.mjs, named by a config file, as a user's would be.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { defineEvent, defineTopic } from '@annals/core';
import { useTestDatabase } from '@annals/testing';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { json, runCli, testClient, type TestClient } from './run-cli.js';

// Every test spawns the binary several times; on a loaded machine one spawn can take seconds.
vi.setConfig({ testTimeout: 120_000 });

const FIXTURE = fileURLToPath(new URL('./fixtures/order-totals.mjs', import.meta.url));
const db = useTestDatabase();

// The same contracts as the fixture's (same names), to publish from this process.
const OrderCreated = defineEvent({
  type: 'order.created',
  versions: { 1: z.object({ orderId: z.string(), customerId: z.string(), totalCents: z.number().int() }) },
});
const orders = defineTopic({ name: 'cli-orders', partitions: 2, events: [OrderCreated], key: (e) => e.customerId });

let dir: string;
/** A working directory without a config file. */
let empty: string;
let annals: TestClient;
const run = (args: string[], env: Record<string, string> = {}) => runCli(args, { url: db.connectionString, cwd: dir, env });

interface StatusJson {
  name: string;
  codeVersion: number | null;
  activeVersion: number | null;
  lag: number | null;
  versions: Array<{ version: number; status: string; checkpoint: Array<{ topic: string; partition: number; offset: string | null; lag: number }> }>;
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'annals-cli-'));
  empty = await mkdtemp(path.join(tmpdir(), 'annals-cli-empty-'));
  await writeFile(path.join(dir, 'annals.config.json'), JSON.stringify({ modules: [FIXTURE] }));
  expect((await run(['migrate'])).code).toBe(0);
  annals = testClient('projections-test', db.connectionString);
  await annals.admin().createTopics({ topics: [orders] });
  await annals.transaction(async (tx) => {
    for (let i = 0; i < 300; i++) await tx.publish(orders, OrderCreated, { orderId: `o-${i}`, customerId: `c-${i % 3}`, totalCents: 100 });
  });
});

afterAll(async () => {
  await annals?.disconnect();
  if (dir) await rm(dir, { recursive: true, force: true });
  if (empty) await rm(empty, { recursive: true, force: true });
});

describe('projections', () => {
  it('lists nothing without the code before the first rebuild, and the unbuilt code version with it', async () => {
    expect(await runCli(['projections', 'list'], { url: db.connectionString, cwd: empty })).toMatchObject({ code: 0, stdout: 'No projections.\n' });
    const withCode = await run(['projections', 'list']);
    expect(withCode.code).toBe(0);
    expect(withCode.stdout).toMatch(/^PROJECTION\s+ACTIVE-VERSION\s+CODE-VERSION\s+VERSIONS\s+LAG\norder-totals\s+-\s+1\s+-\s+-\n$/);
  });

  it('rebuild needs the code: without a config file it says how to give one (exit 2)', async () => {
    const r = await runCli(['projections', 'rebuild', 'order-totals'], { url: db.connectionString, cwd: empty });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('add annals.config.mjs (or .js/.json) with { modules:');
  });

  it('rebuilds the projection from the config in the working directory, and swaps it in', async () => {
    const r = await run(['projections', 'rebuild', 'order-totals']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^Rebuilt projection "order-totals" v1: replayed 300 event\(s\) in \d+(s|m\d\ds); v1 is now active\.\n$/);
    expect(await annals.projections.documents('order-totals', 'order_totals')).toEqual([
      ['c-0', { orders: 100, totalCents: 10_000 }],
      ['c-1', { orders: 100, totalCents: 10_000 }],
      ['c-2', { orders: 100, totalCents: 10_000 }],
    ]);
  });

  it('lists and shows status with checkpoints and lag', async () => {
    const list = await run(['projections', 'list']);
    expect(list.code).toBe(0);
    expect(list.stdout).toMatch(/^PROJECTION\s+ACTIVE-VERSION\s+CODE-VERSION\s+VERSIONS\s+LAG\norder-totals\s+1\s+1\s+v1:active\s+0\n$/);
    const status = await run(['projections', 'status', 'order-totals']);
    expect(status.code).toBe(0);
    expect(status.stdout).toContain('Projection: order-totals\tActive: v1\tCode: v1\tLag: 0\n');
    expect(status.stdout).toMatch(/VERSION\s+STATUS\s+TOPIC\s+PARTITION\s+CHECKPOINT\s+LOG-END-OFFSET\s+LAG\nv1\s+active\s+cli-orders\s+0\s+(\d+)\s+\1\s+0\nv1\s+active\s+cli-orders\s+1\s+(\d+)\s+\2\s+0\n/);
    const [j] = json<StatusJson[]>(await run(['projections', 'status', '--json']));
    expect(j).toMatchObject({ name: 'order-totals', codeVersion: 1, activeVersion: 1, lag: 0 });
    expect(j!.versions[0]!.checkpoint.reduce((n, c) => n + Number(c.offset), 0)).toBe(300);
  });

  it('status works without the code, and fails on an unknown name with exit 4', async () => {
    const [j] = json<StatusJson[]>(await runCli(['projections', 'status', '--json'], { url: db.connectionString, cwd: empty }));
    expect(j).toMatchObject({ name: 'order-totals', codeVersion: null, activeVersion: 1 });
    const unknown = await run(['projections', 'status', 'nope']);
    expect(unknown.code).toBe(4);
    expect(unknown.stderr).toContain('No projection "nope" is known to the store');
  });

  it('refuses to rebuild the active version (exit 2) and an unknown projection (exit 4)', async () => {
    const active = await run(['projections', 'rebuild', 'order-totals']);
    expect(active.code).toBe(2);
    expect(active.stderr).toContain('version 1 is already active. To rebuild its read model, bump the version');
    const unknown = await run(['projections', 'rebuild', 'nope']);
    expect(unknown.code).toBe(4);
    expect(unknown.stderr).toContain('No projection "nope" in the modules of');
    expect(unknown.stderr).toContain('(found: order-totals)');
  });

  it('rebuilds a new version up to the active version\'s checkpoint and swaps, with the JSON result', async () => {
    await annals.producer().publish(orders, OrderCreated, { orderId: 'o-x', customerId: 'c-0', totalCents: 1 });
    const r = await run(['projections', 'rebuild', 'order-totals', '--json'], { ORDER_TOTALS_VERSION: '2' });
    expect(r.code).toBe(0);
    expect(json(r)).toMatchObject({ projection: 'order-totals', version: 2, previousVersion: 1, swapped: true });
    const [j] = json<StatusJson[]>(await run(['projections', 'status', '--json'], { ORDER_TOTALS_VERSION: '2' }));
    expect(j).toMatchObject({ activeVersion: 2, codeVersion: 2 });
    expect(j!.versions.map((v) => [v.version, v.status])).toEqual([
      [1, 'retired'],
      [2, 'active'],
    ]);
    // v2 replayed up to v1's checkpoint (300); the record after it is for the application's live
    // consumer of v2 to process, so v2 shows a lag of 1 and the read model 100 orders of c-0.
    expect(j!.lag).toBe(1);
    const docs = await annals.projections.documents<{ orders: number }>('order-totals', 'order_totals');
    expect(docs.find(([id]) => id === 'c-0')![1].orders).toBe(100);
  });
});

describe('config files', () => {
  it('finds annals.config.mjs, takes url and schema from it', async () => {
    const other = await mkdtemp(path.join(tmpdir(), 'annals-cli-mjs-'));
    try {
      await writeFile(path.join(other, 'annals.config.mjs'), `export default { url: ${JSON.stringify(db.connectionString)}, schema: 'annals', modules: [${JSON.stringify(FIXTURE)}] };\n`);
      const r = await runCli(['projections', 'list', '--json'], { cwd: other }); // no DATABASE_URL: the config's url
      expect(r.code).toBe(0);
      expect(json<Array<{ name: string; codeVersion: number }>>(r)).toEqual([expect.objectContaining({ name: 'order-totals', codeVersion: 1 })]);
    } finally {
      await rm(other, { recursive: true, force: true });
    }
  });

  it('reports a bad config file or a missing module clearly', async () => {
    const other = await mkdtemp(path.join(tmpdir(), 'annals-cli-bad-'));
    try {
      await writeFile(path.join(other, 'bad.json'), JSON.stringify({ modules: ['./missing.js'], urls: 'x' }));
      const badKey = await run(['projections', 'list', '--config', path.join(other, 'bad.json')]);
      expect(badKey.code).toBe(2);
      expect(badKey.stderr).toContain('has unknown key(s) "urls"; known keys: url, schema, modules, contracts, snapshot, compatibility.');
      await writeFile(path.join(other, 'missing.json'), JSON.stringify({ modules: ['./missing.js'] }));
      const missing = await run(['projections', 'rebuild', 'order-totals', '--config', path.join(other, 'missing.json')]);
      expect(missing.code).toBe(4);
      expect(missing.stderr).toContain(`Module ${path.join(other, 'missing.js')} (listed in the config's modules) does not exist.`);
      expect((await run(['topics', 'list', '--config', path.join(other, 'nope.json')])).code).toBe(4);
    } finally {
      await rm(other, { recursive: true, force: true });
    }
  });
});
