/**
 * The schema gate of the monorepo example, run as CI runs it: `annals schema check|push` (the
 * built CLI) in a child process, against the committed snapshot (`annals.contracts.json`) and a
 * database's registry. Contracts are changed on purpose in throw-away modules next to the real
 * ones: an in-place edit and an incompatible new version fail the gate (exit 8, a readable diff);
 * a compatible new version passes. Needs the built packages (`npm test` builds first; else
 * `npx tsc -b`).
 */
import { useTestDatabase } from '@annals/testing';
import { execFile } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const bin = path.resolve(root, '../../packages/cli/dist/bin.js');
const tmp = path.join(root, '.gate-tmp');
const database = useTestDatabase();

afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function gate(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [bin, 'schema', ...args], { cwd: root, env: { ...process.env, ...env } }, (error, stdout, stderr) => {
      resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

/** A variant of the contracts module with `order.placed` defined by `versions` (JS source), and a config for it. */
function variant(name: string, versions: string, upcast: string): string {
  mkdirSync(tmp, { recursive: true });
  writeFileSync(
    path.join(tmp, `${name}.mjs`),
    `import { defineEvent, defineTopic } from '@annals/core';
import { z } from 'zod';
import { PaymentCaptured, payments } from '../dist/contracts/index.js';
export const OrderPlaced = defineEvent({ type: 'order.placed', versions: ${versions}, upcast: ${upcast} });
export const orders = defineTopic({ name: 'orders', partitions: 3, events: [OrderPlaced], key: (e) => e.customerId, compatibility: 'full' });
export { PaymentCaptured, payments };
`,
  );
  const config = path.join(tmp, `${name}.config.json`);
  writeFileSync(config, JSON.stringify({ contracts: [`./${name}.mjs`], snapshot: '../annals.contracts.json' }));
  return config;
}

const V1 = `z.object({ orderId: z.string(), customerId: z.string(), totalCents: z.number().int().nonnegative() })`;
const V2 = `z.object({ orderId: z.string(), customerId: z.string(), totalCents: z.number().int().nonnegative(), currency: z.string().length(3).default('EUR') })`;

describe('the schema gate in CI (examples/monorepo)', () => {
  it('passes the committed contracts', async () => {
    const { code, stdout } = await gate(['check']);
    expect(stdout).toBe('✓ schema check passed: 2 event type(s), no breaking change.\n');
    expect(code).toBe(0);
  });

  it('fails a version edited in place, with a diff of what changed', async () => {
    const edited = `z.object({ orderId: z.string(), customerId: z.string(), totalCents: z.number() })`;
    const config = variant('edited', `{ 1: ${edited}, 2: ${V2} }`, `{ 1: (v1) => ({ ...v1, currency: 'EUR' }) }`);
    const { code, stdout } = await gate(['check', '--config', config]);
    expect(code).toBe(8);
    expect(stdout).toContain('✗ schema check failed: 2 breaking change(s) in 1 event type(s).');
    expect(stdout).toContain('backward (v2 reading v1 records): totalCents: type changed — the writer writes number, the reader needs integer.');
    expect(stdout).toContain('✗ [version-changed vs snapshot] "order.placed" v1 was changed in place');
    expect(stdout).toContain('restore v1 and add v3 with an upcaster from v2');
    expect(stdout).toContain('- properties.totalCents.maximum: 9007199254740991');
    expect(stdout).toContain('~ properties.totalCents.type: "integer" → "number"');
  });

  it('fails a new version that breaks the topic\'s full compatibility, naming the field and direction', async () => {
    const v3 = `z.object({ orderId: z.string(), customerId: z.string(), totalCents: z.number().int().nonnegative(), currency: z.string().length(3).default('EUR'), vatCents: z.number().int() })`;
    const config = variant('incompatible', `{ 1: ${V1}, 2: ${V2}, 3: ${v3} }`, `{ 1: (v1) => ({ ...v1, currency: 'EUR' }), 2: (v2) => ({ ...v2, vatCents: 0 }) }`);
    const { code, stdout } = await gate(['check', '--config', config]);
    expect(code).toBe(8);
    expect(stdout).toContain('"order.placed" v3 is not full-compatible with v2');
    expect(stdout).toContain('backward (v3 reading v2 records): vatCents: required by the reader (integer), but the writer never writes it');
  });

  it('passes a compatible new version and lists it', async () => {
    const v3 = `z.object({ orderId: z.string(), customerId: z.string(), totalCents: z.number().int().nonnegative(), currency: z.string().length(3).default('EUR'), note: z.string().optional() })`;
    const config = variant('compatible', `{ 1: ${V1}, 2: ${V2}, 3: ${v3} }`, `{ 1: (v1) => ({ ...v1, currency: 'EUR' }), 2: (v2) => v2 }`);
    const { code, stdout } = await gate(['check', '--config', config]);
    expect(stdout).toContain('✓ schema check passed');
    expect(stdout).toContain('· [version-added vs snapshot] "order.placed" v3 is new (update the snapshot).');
    expect(code).toBe(0);
  });

  it('pushes to the registry, then refuses (all or nothing) and checks against it', async () => {
    const env = { DATABASE_URL: database.connectionString };
    const migrated = await new Promise<number>((resolve) =>
      execFile(process.execPath, [bin, 'migrate'], { cwd: root, env: { ...process.env, ...env } }, (error) => resolve(error ? 1 : 0)),
    );
    expect(migrated).toBe(0);
    const pushed = await gate(['push'], env);
    expect(pushed.stdout).toContain('✓ schema push: 3 version(s) registered, 0 already registered.');
    expect(pushed.code).toBe(0);
    const edited = `z.object({ orderId: z.string(), customerId: z.string(), totalCents: z.number() })`;
    const config = variant('edited-push', `{ 1: ${edited}, 2: ${V2} }`, `{ 1: (v1) => ({ ...v1, currency: 'EUR' }) }`);
    const refused = await gate(['push', '--config', config], env);
    expect(refused.code).toBe(8);
    expect(refused.stdout).toContain('✗ schema push refused: 1 version(s) are registered with another schema. Nothing was registered.');
    expect(refused.stdout).toContain('~ properties.totalCents.type: "integer" → "number"');
    const checked = await gate(['check', '--registry'], env);
    expect(checked.code).toBe(0);
    const againstRegistry = await gate(['check', '--registry', '--config', config], env);
    expect(againstRegistry.code).toBe(8);
    expect(againstRegistry.stdout).toContain('[version-changed vs registry] "order.placed" v1 was changed in place');
  });

  it('exits 2 on a usage error, 4 on a missing config file', async () => {
    expect((await gate(['frobnicate'])).code).toBe(2);
    const missing = await gate(['check', '--config', 'nope.json']);
    expect(missing.code).toBe(4);
    expect(missing.stderr).toContain('does not exist');
  });
});
