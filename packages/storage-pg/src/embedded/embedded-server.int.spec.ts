import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import { createRequire } from 'node:module';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { EmbeddedServerError, InvalidOptionsError } from '@annals/core';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { EmbeddedPostgresServer, type EmbeddedPostgresInput, type PgConnectionInfo } from './index.js';

const fast = { postgresFlags: { fsync: false } } as const;
const isRoot = process.getuid?.() === 0;

/** Servers a test started; stopped after each test even when it failed half-way. */
const started: EmbeddedPostgresServer[] = [];
function server(input: EmbeddedPostgresInput = {}): EmbeddedPostgresServer {
  const created = new EmbeddedPostgresServer({ ...fast, ...input });
  started.push(created);
  return created;
}
afterEach(async () => {
  await Promise.all(started.splice(0).map((s) => s.stop()));
});

let scratch: string;
beforeAll(async () => {
  scratch = await fs.mkdtemp(path.join(os.tmpdir(), 'annals-embedded-spec-'));
  await fs.chmod(scratch, 0o755); // as root, the account that runs postgres must reach it
});
afterAll(async () => {
  await fs.rm(scratch, { recursive: true, force: true });
});

async function query<R extends pg.QueryResultRow>(info: PgConnectionInfo, sql: string): Promise<R[]> {
  const client = new pg.Client({ connectionString: info.connectionString });
  await client.connect();
  try {
    return (await client.query<R>(sql)).rows;
  } finally {
    await client.end();
  }
}

function postmasterPid(dataDir: string): number {
  return Number(readFileSync(path.join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return true;
  }
}

async function until(condition: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/**
 * Runs the server in a child Node process (TypeScript loaded through vite's module runner), so a
 * test can signal or SIGKILL the process that owns it.
 */
async function serverInChild(input: EmbeddedPostgresInput): Promise<{ child: ChildProcess; dataDir: string }> {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const viteEntry = createRequire(import.meta.url).resolve('vite');
  const script = path.join(scratch, `child-${process.hrtime.bigint()}.mjs`);
  await fs.writeFile(
    script,
    `import { runnerImport } from ${JSON.stringify(viteEntry)};
const conditions = ['@annals/source'];
const { module } = await runnerImport(${JSON.stringify(path.join(here, 'index.ts'))}, {
  configFile: false, logLevel: 'error', root: ${JSON.stringify(here)},
  resolve: { conditions }, ssr: { resolve: { conditions } },
});
const server = new module.EmbeddedPostgresServer(JSON.parse(process.argv[2]));
await server.start();
process.stdout.write(JSON.stringify({ dataDir: server.dataDir }) + '\\n');
setInterval(() => {}, 60_000);
`,
  );
  const child = spawn(process.execPath, [script, JSON.stringify({ ...fast, ...input })], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const line = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout?.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      if (out.includes('\n')) resolve(out.split('\n')[0] ?? '');
    });
    child.once('exit', (code, signal) => reject(new Error(`child exited early (${code ?? signal})`)));
  });
  return { child, dataDir: (JSON.parse(line) as { dataDir: string }).dataDir };
}

function exitOf(child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  if (child.exitCode !== null || child.signalCode !== null) {
    return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  }
  return new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
}

describe('EmbeddedPostgresServer', () => {
  it('starts a real PostgreSQL server on a free port: advisory locks exclude across connections', async () => {
    const s = server();
    const info = await s.start();
    expect(info).toMatchObject({ host: '127.0.0.1', user: 'postgres', password: 'postgres', database: 'annals' });
    expect(info.port).toBeGreaterThan(0);
    expect(info.connectionString).toBe(`postgres://postgres:postgres@127.0.0.1:${info.port}/annals`);
    expect(s.connectionInfo).toBe(info);

    const [row] = await query<{ one: number; version: string; fsync: string }>(
      info,
      "select 1 as one, current_setting('server_version') as version, current_setting('fsync') as fsync",
    );
    expect(row).toMatchObject({ one: 1, fsync: 'off' });
    expect(row?.version).toMatch(/^\d+\.\d+/);

    // One backend per connection (unlike PGlite's single session): the second cannot take the lock.
    const a = new pg.Client({ connectionString: info.connectionString });
    const b = new pg.Client({ connectionString: info.connectionString });
    await Promise.all([a.connect(), b.connect()]);
    try {
      const tryLock = async (client: pg.Client) =>
        (await client.query<{ locked: boolean }>('select pg_try_advisory_lock(4242) as locked')).rows[0]?.locked;
      expect(await tryLock(a)).toBe(true);
      expect(await tryLock(b)).toBe(false);
      await a.query('select pg_advisory_unlock(4242)');
      expect(await tryLock(b)).toBe(true);
    } finally {
      await Promise.all([a.end(), b.end()]);
    }
  });

  it('stop is idempotent and concurrency-safe, and removes a non-persistent folder', async () => {
    const s = server();
    const [first, second] = await Promise.all([s.start(), s.start()]);
    expect(second).toBe(first);
    expect(await s.start()).toBe(first);
    const dataDir = s.dataDir;
    expect(dataDir).toBeDefined();
    expect(dataDir?.startsWith(os.tmpdir())).toBe(true);
    expect(existsSync(path.join(dataDir ?? '', 'PG_VERSION'))).toBe(true);

    await Promise.all([s.stop(), s.stop()]);
    await s.stop();
    expect(existsSync(path.dirname(dataDir ?? ''))).toBe(false);
    expect(s.dataDir).toBeUndefined();
    expect(() => s.connectionInfo).toThrow(EmbeddedServerError);
    await expect(query(first, 'select 1')).rejects.toThrow();
  });

  it('applies start and stop calls in the order they were made', async () => {
    const s = server();
    const firstStart = s.start();
    const stop = s.stop();
    const secondStart = s.start();
    expect(s.start()).toBe(secondStart);
    const first = await firstStart;
    await stop;
    const second = await secondStart;
    expect(second).not.toBe(first);
    expect(s.connectionInfo).toBe(second);
    expect(await query(second, 'select 1 as one')).toEqual([{ one: 1 }]);

    // A stop queued behind a start wins: the server ends up stopped.
    const restart = s.start();
    await Promise.all([s.stop(), restart.catch(() => undefined)]);
    expect(() => s.connectionInfo).toThrow(EmbeddedServerError);
  });

  it('can be used with await using', async () => {
    let info: PgConnectionInfo;
    {
      await using s = new EmbeddedPostgresServer(fast);
      info = await s.start();
      expect(await query(info, 'select 1 as one')).toEqual([{ one: 1 }]);
    }
    await expect(query(info, 'select 1')).rejects.toThrow();
  });

  it('keeps a persistent folder and its data across restarts', async () => {
    const dataDir = path.join(scratch, 'persistent', 'pgdata');
    const first = server({ persistent: true, dataDir });
    const info = await first.start();
    await query(info, 'create table kept (v text); insert into kept values ($$survives$$)');
    await first.stop();
    expect(existsSync(path.join(dataDir, 'PG_VERSION'))).toBe(true);
    const systemId = readFileSync(path.join(dataDir, 'global', 'pg_control')).subarray(0, 8);

    const second = server({ persistent: true, dataDir });
    const again = await second.start();
    expect(await query(again, 'select v from kept')).toEqual([{ v: 'survives' }]);
    // The same cluster, not a new initdb: pg_control starts with the system identifier.
    expect(readFileSync(path.join(dataDir, 'global', 'pg_control')).subarray(0, 8)).toEqual(systemId);
    await second.stop();
    expect(existsSync(path.join(dataDir, 'PG_VERSION'))).toBe(true);
  });

  it('starts over a stale postmaster.pid whose PID now belongs to another program', async () => {
    const dataDir = path.join(scratch, 'stale', 'pgdata');
    await server({ persistent: true, dataDir }).start();
    await Promise.all(started.splice(0).map((s) => s.stop()));
    const impostor = spawn('sleep', ['30'], { stdio: 'ignore' });
    try {
      const pidFile = path.join(dataDir, 'postmaster.pid');
      await fs.writeFile(pidFile, `${impostor.pid}\n${dataDir}\n1700000000\n5432\n\n127.0.0.1\n0 0\nready   \n`);
      const info = await server({ persistent: true, dataDir }).start();
      expect(await query(info, 'select 1 as one')).toEqual([{ one: 1 }]);
      expect(postmasterPid(dataDir)).not.toBe(impostor.pid);
    } finally {
      impostor.kill();
    }
  });

  it('stops a postmaster orphaned by a SIGKILLed owner before starting on the same folder', async () => {
    const dataDir = path.join(scratch, 'orphan', 'pgdata');
    const { child } = await serverInChild({ persistent: true, dataDir });
    const orphan = postmasterPid(dataDir);
    child.kill('SIGKILL');
    await exitOf(child);
    expect(isAlive(orphan)).toBe(true);

    const info = await server({ persistent: true, dataDir }).start();
    expect(isAlive(orphan)).toBe(false);
    expect(postmasterPid(dataDir)).not.toBe(orphan);
    expect(await query(info, 'select 1 as one')).toEqual([{ one: 1 }]);
  });

  it('sweeps the temp folder and postmaster of a SIGKILLed owner at the next start', async () => {
    const { child, dataDir } = await serverInChild({});
    const orphan = postmasterPid(dataDir);
    child.kill('SIGKILL');
    await exitOf(child);
    expect(isAlive(orphan)).toBe(true);

    await server().start();
    await until(() => !isAlive(orphan));
    expect(existsSync(path.dirname(dataDir))).toBe(false);
  });

  it('on SIGINT (Ctrl-C), stops the server and the process still dies of SIGINT', async () => {
    const { child, dataDir } = await serverInChild({});
    const pid = postmasterPid(dataDir);
    child.kill('SIGINT');
    expect(await exitOf(child)).toEqual({ code: null, signal: 'SIGINT' });
    expect(isAlive(pid)).toBe(false);
    expect(existsSync(path.dirname(dataDir))).toBe(false);
  });

  it('stops the server on SIGTERM without re-raising it when the application handles it too', async () => {
    const baseline = process.listenerCount('SIGTERM');
    const s = server();
    await s.start();
    const dataDir = s.dataDir ?? '';
    const pid = postmasterPid(dataDir);
    expect(process.listenerCount('SIGTERM')).toBe(baseline + 1);
    let handled = 0;
    const appHandler = () => void handled++;
    process.on('SIGTERM', appHandler);
    try {
      process.emit('SIGTERM', 'SIGTERM');
      await until(() => !isAlive(pid));
      await until(() => !existsSync(dataDir));
      expect(handled).toBe(1);
      expect(() => s.connectionInfo).toThrow(EmbeddedServerError);
      expect(process.listenerCount('SIGTERM')).toBe(baseline + 1); // ours is gone, the app's remains
    } finally {
      process.removeListener('SIGTERM', appHandler);
    }
  });

  it('creates the database and quotes names and credentials properly', async () => {
    const info = await server({ database: 'Annals "Odd"-db', user: 'Ann User', password: 'p@ss:w/rd%?' }).start();
    expect(info.connectionString).toContain('/Annals%20%22Odd%22-db');
    const [row] = await query<{ db: string; who: string }>(info, 'select current_database() as db, current_user as who');
    expect(row).toEqual({ db: 'Annals "Odd"-db', who: 'Ann User' });
  });

  it('fails to start with an EmbeddedServerError that says what to do next', async () => {
    const blocker = net.createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const { port } = blocker.address() as net.AddressInfo;
    try {
      const s = server({ port });
      const failure = await s.start().catch((error: unknown) => error);
      expect(failure).toBeInstanceOf(EmbeddedServerError);
      expect((failure as Error).message).toMatch(/already in use/);
      expect((failure as Error).message).toMatch(/DATABASE_URL/);
      expect(() => s.connectionInfo).toThrow(EmbeddedServerError);
    } finally {
      blocker.close();
    }
  });

  it.runIf(isRoot)('runs as another existing OS account when root (osUser)', async () => {
    const s = server({ osUser: 'nobody' });
    await s.start();
    expect((await fs.stat(s.dataDir ?? '')).uid).toBe(65534);
    await expect(server({ osUser: 'no-such-account-x' }).start()).rejects.toThrow(/no unprivileged account/);
  });

  it('embeddedPostgres takes every option of postgres() except connectionString and pool (docs/getting-started.md)', async () => {
    const { embeddedPostgres } = await import('../index.js');
    const storage = embeddedPostgres({ ...fast, schema: 'opts', poolSize: 3, migrate: false, connectionTimeoutMs: 5_000, wakeupIntervalMs: 5 });
    expect(storage.schema).toBe('opts');
    expect(() => embeddedPostgres({ wakeupIntervalMs: -1 })).toThrow(InvalidOptionsError);
    await storage.disconnect(); // never started: nothing to stop
  });

  it('validates its options', () => {
    const bad: unknown[] = [
      { port: -1 },
      { port: 1.5 },
      { prot: 5432 },
      { user: '' },
      { password: 'a\nb' },
      { dataDir: '/tmp/x' },
      { persistent: 'yes' },
      { postgresFlags: { port: 5 } },
      { postgresFlags: { 'bad name': 1 } },
      { postgresFlags: { fsync: null } },
      { onLog: 'console' },
    ];
    for (const input of bad) {
      expect(() => new EmbeddedPostgresServer(input as EmbeddedPostgresInput), JSON.stringify(input)).toThrow(
        InvalidOptionsError,
      );
    }
    const options = new EmbeddedPostgresServer({ persistent: true, postgresFlags: { fsync: false, work_mem: '8MB' } })
      .options;
    expect(options).toMatchObject({
      persistent: true,
      dataDir: path.join(process.cwd(), '.annals', 'pgdata'),
      port: 0,
      user: 'postgres',
      password: 'postgres',
      database: 'annals',
      postgresFlags: { fsync: 'off', work_mem: '8MB' },
      handleSignals: true,
    });
    expect(Object.isFrozen(options)).toBe(true);
    expect(new EmbeddedPostgresServer().options.dataDir).toBeUndefined();
  });
});
