/** `annals migrate`, `topics …` and `configs …` against a real database, through the built binary. */
import { useTestDatabase } from '@annals/testing';
import { beforeAll, describe, expect, it, vi } from 'vitest';
import { json, runCli } from './run-cli.js';

// Every test spawns the binary several times; on a loaded machine one spawn can take seconds.
vi.setConfig({ testTimeout: 120_000 });

const db = useTestDatabase();
const run = (args: string[], stdin?: string) => runCli(args, { url: db.connectionString, ...(stdin !== undefined && { stdin }) });

describe('before migrating', () => {
  it('says there is no database when neither --url nor DATABASE_URL is given (exit 2)', async () => {
    const r = await runCli(['topics', 'list']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('No database given: pass --url');
    expect(r.stdout).toBe('');
  });

  it('tells to run `annals migrate` when the tables are missing, without a stack trace (exit 1)', async () => {
    const r = await run(['topics', 'list']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('error [STORAGE_ERROR]');
    expect(r.stderr).toContain('run `annals migrate`');
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });

  it('shows the stack and cause with --verbose', async () => {
    const r = await run(['topics', 'list', '--verbose']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/\n\s+at /);
    expect(r.stderr).toContain('caused by:');
  });

  it('reports an unreachable database with exit 6', async () => {
    const r = await runCli(['topics', 'list', '--url', 'postgres://postgres@127.0.0.1:1/nowhere']);
    expect(r.code).toBe(6);
    expect(r.stderr).toContain('error [CONNECTION_ERROR]');
    expect(r.stderr).toContain('hint: check --url / DATABASE_URL');
  });
});

describe('migrate', () => {
  it('prints the migrations it applied, then that the schema is up to date', async () => {
    const first = await run(['migrate']);
    expect(first.code).toBe(0);
    expect(first.stdout).toMatch(/^Applied \d+ migration\(s\) to schema "annals":\n {2}0001_log\n/);
    const again = await run(['migrate', '--json']);
    expect(again.code).toBe(0);
    const body = json<{ schema: string; applied: string[]; migrations: string[] }>(again);
    expect(body.schema).toBe('annals');
    expect(body.applied).toEqual([]);
    expect(body.migrations[0]).toBe('0001_log');
  });

  it('migrates another schema with --schema, and --url works like DATABASE_URL', async () => {
    const r = await runCli(['--url', db.connectionString, '--schema', 'other_log', 'migrate', '--json']);
    expect(r.code).toBe(0);
    expect(json<{ schema: string; applied: string[] }>(r)).toMatchObject({ schema: 'other_log' });
    expect(json<{ applied: string[] }>(r).applied.length).toBeGreaterThan(0);
  });
});

describe('topics', () => {
  beforeAll(async () => {
    expect((await run(['migrate'])).code).toBe(0);
  });

  it('creates a topic with partitions and configs', async () => {
    const r = await run(['topics', 'create', 'orders', '--partitions', '3', '--add-config', 'retention.ms=86400000,cleanup.policy=compact,delete']);
    expect(r).toMatchObject({ code: 0, stdout: 'Created topic "orders" with 3 partition(s).\n' });
    const d = json<Array<{ name: string; partitions: number; configs: Record<string, string>; overrides: string[] }>>(await run(['topics', 'describe', 'orders', '--json']));
    expect(d[0]).toMatchObject({ name: 'orders', partitions: 3 });
    expect(d[0]!.configs['retention.ms']).toBe('86400000');
    expect(d[0]!.configs['cleanup.policy']).toBe('compact,delete');
    expect(d[0]!.overrides.sort()).toEqual(['cleanup.policy', 'retention.ms']);
  });

  it('refuses an existing topic with exit 5, unless --if-not-exists', async () => {
    const again = await run(['topics', 'create', 'orders']);
    expect(again.code).toBe(5);
    expect(again.stderr).toContain('TOPIC_ALREADY_EXISTS');
    const tolerant = await run(['topics', 'create', 'orders', '--if-not-exists', '--json']);
    expect(tolerant.code).toBe(0);
    // The topic as it is (3 partitions, its configs), not the request's defaults (it echoed 1 and {}).
    expect(json(tolerant)).toEqual({ topic: 'orders', created: false, partitions: 3, configs: { 'cleanup.policy': 'compact,delete', 'retention.ms': '86400000' } });
    expect((await run(['topics', 'create', 'orders', '--if-not-exists'])).stdout).toBe('Topic "orders" already exists (3 partition(s)); nothing changed.\n');
  });

  it('refuses a bad topic name, partition count or config key with exit 2', async () => {
    expect((await run(['topics', 'create', 'bad/name'])).code).toBe(2);
    expect((await run(['topics', 'create', 'x', '--partitions', '0'])).code).toBe(2);
    const key = await run(['topics', 'create', 'x', '--add-config', 'retention.hours=1']);
    expect(key.code).toBe(2);
    expect(key.stderr).toContain('Unknown topic config key "retention.hours"');
    expect(json<string[]>(await run(['topics', 'list', '--json'])).map((t) => (t as unknown as { name: string }).name)).toEqual(['orders']);
  });

  it('lists topics as a table and as JSON', async () => {
    await run(['topics', 'create', 'payments']);
    const table = await run(['topics', 'list']);
    expect(table.code).toBe(0);
    expect(table.stdout).toBe('TOPIC     PARTITIONS\norders    3\npayments  1\n');
    expect(json(await run(['topics', 'list', '--json']))).toEqual([
      { name: 'orders', partitions: 3 },
      { name: 'payments', partitions: 1 },
    ]);
  });

  it('describes watermarks per partition', async () => {
    expect((await run(['produce', 'payments'], 'a\nb\nc\n')).code).toBe(0);
    const r = await run(['topics', 'describe', 'payments']);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(
      'Topic: payments\tPartitionCount: 1\tConfigs: (defaults)\n' +
        'PARTITION  LOG-START-OFFSET  LOG-END-OFFSET  RECORDS\n' +
        '0          0                 3               3\n',
    );
    const d = json<Array<{ offsets: unknown[] }>>(await run(['topics', 'describe', 'payments', '--json']));
    expect(d[0]!.offsets).toEqual([{ partition: 0, logStartOffset: '0', logEndOffset: '3' }]);
  });

  it('fails on an unknown topic with exit 4 and says where to look', async () => {
    const r = await run(['topics', 'describe', 'nope']);
    expect(r.code).toBe(4);
    expect(r.stderr).toBe('error [UNKNOWN_TOPIC_OR_PARTITION]: Topic "nope" does not exist.\nhint: see `annals topics list`.\n');
    const j = await run(['topics', 'describe', 'nope', '--json']);
    expect(j.code).toBe(4);
    expect(j.stdout).toBe('');
    expect(JSON.parse(j.stderr)).toEqual({
      error: { code: 'UNKNOWN_TOPIC_OR_PARTITION', message: 'Topic "nope" does not exist.', hint: 'see `annals topics list`.', exitCode: 4 },
    });
  });

  it('raises the partition count, and refuses to lower it (exit 2)', async () => {
    const up = await run(['topics', 'alter', 'payments', '--partitions', '2']);
    expect(up).toMatchObject({ code: 0, stdout: 'Topic "payments" now has 2 partition(s) (was 1).\n' });
    const down = await run(['topics', 'alter', 'payments', '--partitions', '1']);
    expect(down.code).toBe(2);
    expect(down.stderr).toContain('INVALID_PARTITIONS');
    expect((await run(['topics', 'alter', 'payments'])).code).toBe(2); // --partitions is required
  });

  it('deletes topics; an unknown one fails with exit 4 unless --if-exists', async () => {
    await run(['topics', 'create', 'scratch']);
    expect((await run(['topics', 'delete', 'scratch', 'nope'])).code).toBe(4);
    expect(json<Array<{ name: string }>>(await run(['topics', 'list', '--json'])).map((t) => t.name)).toContain('scratch');
    const r = await run(['topics', 'delete', 'scratch', 'nope', '--if-exists', '--json']);
    expect(r.code).toBe(0);
    expect(json(r)).toEqual({ deleted: ['scratch'], skipped: ['nope'] });
    expect(json<Array<{ name: string }>>(await run(['topics', 'list', '--json'])).map((t) => t.name)).not.toContain('scratch');
  });
});

describe('configs', () => {
  it('describes every key with value, default and source', async () => {
    const r = await run(['configs', 'describe', 'orders']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('Configs for topic "orders":\nKEY ');
    expect(r.stdout).toMatch(/retention\.ms\s+86400000\s+604800000\s+topic\n/);
    expect(r.stdout).toMatch(/retention\.bytes\s+-1\s+-1\s+default\n/);
    const j = json<{ configs: Array<{ name: string; source: string; doc: string }> }>(await run(['configs', 'describe', 'orders', '--json']));
    expect(j.configs.find((c) => c.name === 'cleanup.policy')).toMatchObject({ source: 'topic' });
    expect(j.configs.every((c) => c.doc.length > 0)).toBe(true);
  });

  it("sets keys with --add-config and restores defaults with --delete-config (Kafka's syntax)", async () => {
    const r = await run(['configs', 'alter', 'orders', '--add-config', 'retention.ms=604800001,max.message.bytes=2048', '--delete-config', 'cleanup.policy']);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('Updated config for topic "orders":\n  retention.ms = 604800001\n  max.message.bytes = 2048\n  cleanup.policy = (default: delete)\n');
    const j = json<{ configs: Array<{ name: string; value: string; source: string }> }>(await run(['configs', 'describe', 'orders', '--json']));
    const byName = Object.fromEntries(j.configs.map((c) => [c.name, c]));
    expect(byName['retention.ms']).toMatchObject({ value: '604800001', source: 'topic' });
    expect(byName['max.message.bytes']).toMatchObject({ value: '2048', source: 'topic' });
    expect(byName['cleanup.policy']).toMatchObject({ value: 'delete', source: 'default' });
  });

  it('takes a list value in brackets', async () => {
    expect((await run(['configs', 'alter', 'orders', '--add-config', 'cleanup.policy=[compact,delete],retention.bytes=1000000'])).code).toBe(0);
    const j = json<{ configs: Array<{ name: string; value: string }> }>(await run(['configs', 'describe', 'orders', '--json']));
    expect(j.configs.find((c) => c.name === 'cleanup.policy')!.value).toBe('compact,delete');
    expect(j.configs.find((c) => c.name === 'retention.bytes')!.value).toBe('1000000');
  });

  it('refuses an unknown key or a bad value with exit 2 and changes nothing', async () => {
    const before = json(await run(['configs', 'describe', 'orders', '--json']));
    const key = await run(['configs', 'alter', 'orders', '--add-config', 'retention.ms=1,retention.weeks=2']);
    expect(key.code).toBe(2);
    expect(key.stderr).toContain('Unknown topic config key "retention.weeks". Known keys: retention.ms');
    expect(key.stderr).toContain('hint: see `annals configs describe <topic>`');
    const value = await run(['configs', 'alter', 'orders', '--add-config', 'retention.ms=soon', '--json']);
    expect(value.code).toBe(2);
    expect(JSON.parse(value.stderr).error).toMatchObject({ code: 'INVALID_CONFIG', exitCode: 2 });
    expect((await run(['configs', 'alter', 'orders'])).code).toBe(2); // nothing to change
    expect(json(await run(['configs', 'describe', 'orders', '--json']))).toEqual(before);
  });

  it('validates without writing with --dry-run', async () => {
    const r = await run(['configs', 'alter', 'orders', '--add-config', 'retention.ms=1', '--dry-run']);
    expect(r).toMatchObject({ code: 0, stdout: 'Would update config for topic "orders":\n  retention.ms = 1\n' });
    const j = json<{ configs: Array<{ name: string; value: string }> }>(await run(['configs', 'describe', 'orders', '--json']));
    expect(j.configs.find((c) => c.name === 'retention.ms')!.value).toBe('604800001');
  });

  it('fails on an unknown topic with exit 4', async () => {
    expect((await run(['configs', 'describe', 'nope'])).code).toBe(4);
    expect((await run(['configs', 'alter', 'nope', '--add-config', 'retention.ms=1'])).code).toBe(4);
  });
});

describe('usage', () => {
  it('exits 2 on an unknown command, an unknown option or a missing argument', async () => {
    const unknown = await run(['topicz']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain("unknown command 'topicz'");
    expect((await run(['topics', 'list', '--frobnicate'])).code).toBe(2);
    expect((await run(['topics', 'create'])).code).toBe(2);
    expect((await run(['topics'])).code).toBe(2);
  });

  it('exits 0 on --help and --version, and documents the exit codes', async () => {
    const help = await run(['--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('Exit codes: 0 ok, 1 error, 2 usage');
    // Every code docs/cli.md lists (7 and 8 were missing).
    for (const code of ['3 refused', '4 not found', '5 already exists', '6 database unreachable', '7 cleaner lease', '8 breaking schema', '130 interrupted']) {
      expect(help.stdout.replace(/\s+/g, ' ')).toContain(code);
    }
    const version = await run(['--version']);
    expect(version).toMatchObject({ code: 0, stdout: '0.1.0\n' });
  });
});
