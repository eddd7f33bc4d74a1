/**
 * `npm run chaos` — runs the fault-injection scenarios against a real PostgreSQL, checks every
 * history, prints one table, and exits non-zero on any violation.
 *
 *   npm run chaos -- --short          bounded CI mode (also CHAOS_SHORT=1)
 *   npm run chaos                     long mode, by hand
 *   npm run chaos -- --only=control,proxy-faults   some scenarios
 *   npm run chaos -- --keep           keep each scenario's database (histories are always kept)
 *
 * The server: CHAOS_DATABASE_URL, else DATABASE_URL, else postgres://postgres@127.0.0.1:5432/test
 * (loopback only). Each scenario gets a database of its own, dropped afterwards. The restart
 * scenario runs on an embedded PostgreSQL the harness starts, owns and restarts.
 */
import { EmbeddedPostgresServer } from '@annals/storage-pg';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { check, VIOLATION_KINDS, type CheckResult } from './checker.js';
import { createTemplate, openScenario } from './harness.js';
import { readHistory } from './history.js';
import { FaultProxy } from '@annals/testing/fault-proxy';
import { scenarios, type Hooks, type ScenarioDef } from './scenarios.js';

const args = process.argv.slice(2);
const short = args.includes('--short') || process.env['CHAOS_SHORT'] === '1';
const keep = args.includes('--keep');
const only = args.find((a) => a.startsWith('--only='))?.slice('--only='.length).split(',');
/**
 * Scenarios run at once (each in its own database, with its own processes): most of a scenario is
 * waiting. Two at most by default: the server's connections are shared with others.
 */
const parallel = Number(args.find((a) => a.startsWith('--parallel='))?.slice('--parallel='.length) ?? 2);
const serverUrl = process.env['CHAOS_DATABASE_URL'] ?? process.env['DATABASE_URL'] ?? 'postgres://postgres@127.0.0.1:5432/test';
if (!/^(127\.\d+\.\d+\.\d+|localhost|\[::1\])$/.test(new URL(serverUrl).hostname)) {
  console.error(`chaos only runs against a loopback server, not ${new URL(serverUrl).hostname}`);
  process.exit(2);
}
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const stamp = new Date().toISOString().replace(/[:.]/g, '-');
const runDir = path.join(root, 'results', 'runs', `${stamp}-${short ? 'short' : 'long'}`);

interface Row {
  readonly def: ScenarioDef;
  readonly result?: CheckResult;
  readonly error?: string;
  readonly seconds: number;
  readonly phases?: string;
}

async function withOwnServer<T>(fn: (url: string, restart: () => Promise<void>) => Promise<T>): Promise<T> {
  const base = await mkdtemp(path.join(tmpdir(), 'annals-chaos-'));
  await chmod(base, 0o755); // as root, the server runs as another OS user that must enter it
  const dataDir = path.join(base, 'pg');
  const flags = { fsync: 'off', max_connections: '200' };
  let server = new EmbeddedPostgresServer({ persistent: true, dataDir, postgresFlags: flags });
  const info = await server.start();
  const restart = async () => {
    await server.stop();
    server = new EmbeddedPostgresServer({ persistent: true, dataDir, port: info.port, postgresFlags: flags });
    await server.start();
  };
  try {
    return await fn(info.connectionString, restart);
  } finally {
    await server.stop().catch(() => {});
    await rm(base, { recursive: true, force: true });
  }
}

async function runOne(def: ScenarioDef, template: string | undefined): Promise<Row> {
  const started = Date.now();
  const body = async (url: string, hooks: Hooks): Promise<Row> => {
    const phases: string[] = [];
    let mark = Date.now();
    const phase = (name: string) => {
      phases.push(`${name} ${((Date.now() - mark) / 1000).toFixed(1)}s`);
      mark = Date.now();
    };
    const { scenario, close } = await openScenario(def.name, short, url, runDir, def.ownServer ? undefined : template);
    phase('open');
    let error: string | undefined;
    let result: CheckResult | undefined;
    let proxy: FaultProxy | undefined;
    try {
      if (def.name === 'proxy-faults') {
        const target = new URL(scenario.env.directUrl);
        proxy = new FaultProxy({ target: { host: target.hostname, port: Number(target.port || 5432) } });
        await proxy.start();
        scenario.env.workerUrl = proxy.connectionString(scenario.env.directUrl);
      }
      const outcome = await def.run!(scenario, { ...hooks, ...(proxy ? { proxy } : {}) });
      phase('run');
      await scenario.recordFinalState(outcome.topics, outcome.decodeValue);
      await close(keep);
      phase('read+close');
      result = check(readHistory(scenario.env.dir), outcome.options);
      phase('check');

    } catch (e) {
      error = String((e as Error)?.stack ?? e);
      await close(true).catch(() => {});
    } finally {
      await proxy?.stop();
    }
    return { def, ...(result ? { result } : {}), ...(error ? { error } : {}), seconds: (Date.now() - started) / 1000, phases: `[${phases.join(', ')}]` };
  };
  if (def.ownServer) return withOwnServer((url, restart) => body(url, { restartServer: restart }));
  return body(serverUrl, {});
}

const fmt = (n: number | null | undefined) => (n === null || n === undefined ? '—' : String(n));

function table(rows: readonly Row[]): string {
  const head = ['scenario', 'faults injected', 'records', 'lost', 'duplicated effects (≠1)', 'order violations', 'skipped offsets', 'double owners', 'read twice', 'aborted read', 'other', 'recovery p99 (ms)'];
  const lines = [`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`];
  for (const row of rows) {
    if (row.def.pending) {
      lines.push(`| ${row.def.name} | ${row.def.faults} | pending: ${row.def.pending} | | | | | | | | | |`);
      continue;
    }
    const r = row.result;
    if (!r) {
      lines.push(`| ${row.def.name} | ${row.def.faults} | harness error | | | | | | | | see below | |`);
      continue;
    }
    const c = r.counts;
    const other = (['false-failure', 'log-duplicate', 'partial-txn', 'compaction', 'not-routed', 'crash', 'stalled'] as const).filter((k) => c[k] > 0).map((k) => `${k} ${c[k]}`).join(', ') || '0';
    lines.push(
      `| ${row.def.name} | ${row.def.faults} (${r.faults}) | ${r.records} | ${c.lost} | ${c.effects} | ${c.order} | ${c.skipped} | ${c['double-owner']} | ${c['read-twice']} | ${c['aborted-read']} | ${other} | ${fmt(r.recoveryP99)} |`,
    );
  }
  return lines.join('\n');
}

function details(rows: readonly Row[]): string {
  const out: string[] = [];
  for (const row of rows) {
    if (row.def.pending) continue;
    const r = row.result;
    if (!r) {
      out.push(`- **${row.def.name}**: harness error after ${row.seconds.toFixed(0)} s: ${row.error?.split('\n').slice(0, 3).join(' ')}`);
      continue;
    }
    out.push(
      `- **${row.def.name}** (${row.seconds.toFixed(0)} s): ${r.sends} sends — acknowledged ok ${r.acks.ok}, unknown outcome ${r.acks.unknown}, failed ${r.acks.failed}, aborted ${r.acks.aborted}; ${r.deliveries} deliveries; ${r.faults} faults; recovery ms ${r.recoveryMs.length ? `min ${Math.min(...r.recoveryMs)} / max ${Math.max(...r.recoveryMs)}` : '—'}`,
    );
    for (const v of r.violations.slice(0, 8)) out.push(`  - ${v.kind}: ${v.detail}`);
    if (r.violations.length > 8) out.push(`  - … ${r.violations.length - 8} more (see the history in ${path.relative(root, runDir)})`);
  }
  return out.join('\n');
}

async function main(): Promise<void> {
  await mkdir(runDir, { recursive: true });
  const selected = scenarios.filter((s) => !only || only.includes(s.name));
  const rows: Row[] = [];
  const t0 = Date.now();
  const template = selected.some((d) => !d.pending && !d.ownServer) ? await createTemplate(serverUrl) : undefined;
  const byName = new Map<string, Row>();
  const queue = selected.filter((d) => !d.pending);
  const lane = async () => {
    for (let def = queue.shift(); def; def = queue.shift()) {
      process.stderr.write(`chaos: ${def.name} started\n`);
      const row = await runOne(def, template?.name);
      const bad = row.error ? `harness error: ${row.error.split('\n')[0]}` : VIOLATION_KINDS.filter((k) => row.result!.counts[k] > 0).join(', ') || 'ok';
      process.stderr.write(`chaos: ${def.name} ${row.seconds.toFixed(0)} s ${row.phases ?? ''}: ${bad}\n`);
      byName.set(def.name, row);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, parallel) }, lane));
  for (const def of selected) rows.push(def.pending ? { def, seconds: 0 } : byName.get(def.name)!);
  await template?.drop().catch(() => {});
  const elapsed = (Date.now() - t0) / 1000;
  const failed = rows.some((r) => !r.def.pending && (!r.result || r.result.violations.length > 0));
  const report = [
    `Annals chaos run, ${short ? 'short' : 'long'} mode, ${new Date().toISOString()}, ${elapsed.toFixed(0)} s (${parallel} at a time), PostgreSQL at ${new URL(serverUrl).host} (restart scenario: an embedded server the harness owns)`,
    '',
    table(rows),
    '',
    details(rows),
    '',
    failed ? 'RESULT: VIOLATIONS FOUND' : 'RESULT: no violations',
  ].join('\n');
  console.log(report);
  await writeFile(path.join(runDir, 'report.md'), report + '\n');
  if (!only) await writeFile(path.join(root, 'results', `latest-${short ? 'short' : 'long'}.md`), report + '\n');
  process.exit(failed ? 1 : 0);
}

main().catch((error) => {
  console.error(error);
  process.exit(2);
});
