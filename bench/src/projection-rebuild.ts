/**
 * Benchmark (issue 5): rebuilding a projection over a large log — a document per customer,
 * upserted — against the raw keyset read of the same records in the same run, and the rebuilding
 * process's peak RSS. Each side runs in a forked process of its own (projection-rebuild-child.ts),
 * alternating which goes first; every round rebuilds a new version (v1, v2, …) from the log start.
 *
 * Environment:
 * - BENCH_REBUILD_EVENTS  events in the log (default 1,000,000; 20,000 with BENCH_QUICK; 0 skips)
 * - BENCH_REBUILD_ROUNDS  measured rounds (default 2; 1 with BENCH_QUICK)
 */
import { fork } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { Annals, defineEvent, defineTopic, msgpackCodec, partitionFor } from '@annals/core';
import { postgres } from '@annals/storage-pg';
import pg from 'pg';
import { z } from 'zod';

export const REBUILD_TOPIC = 'bench-rebuild';

export const BenchOrderPlaced = defineEvent({
  type: 'bench.order-placed',
  versions: { 1: z.object({ orderId: z.number().int(), customerId: z.string(), cents: z.number().int() }) },
});

export const rebuildTopic = (partitions: number) => defineTopic({ name: REBUILD_TOPIC, partitions, events: [BenchOrderPlaced], key: (e) => e.customerId });

export interface RebuildChildInput {
  readonly mode: 'raw' | 'rebuild';
  readonly url: string;
  readonly schema: string;
  readonly partitions: number;
  readonly version: number;
  readonly fetchSize: number;
  readonly batchSize: number;
}

export interface RebuildChildResult {
  readonly events: number;
  readonly elapsedMs: number;
  /** process.resourceUsage().maxRSS, in kilobytes. */
  readonly maxRssKb: number;
}

export interface RebuildBenchInput {
  readonly url: string;
  readonly log: (line: string) => void;
  readonly quick: boolean;
  readonly partitions?: number;
}

export interface RebuildBenchReport {
  /** A markdown section for bench/results/latest.md. */
  readonly markdown: string;
  readonly pass: boolean;
}

function intEnv(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0) throw new Error(`${name} must be an integer ≥ 0, got ${JSON.stringify(raw)}.`);
  return n;
}

const median = (xs: readonly number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length === 0 ? NaN : s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
const fmt = (n: number) => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : 'n/a');

function runChild(input: RebuildChildInput): Promise<RebuildChildResult> {
  const script = fileURLToPath(new URL('./projection-rebuild-child.js', import.meta.url));
  const child = fork(script, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv: [] });
  return new Promise((resolve, reject) => {
    child.once('message', (m: { ok: boolean; result?: RebuildChildResult; error?: string }) => (m.ok ? resolve(m.result!) : reject(new Error(`rebuild bench child (${input.mode}): ${m.error}`))));
    child.once('exit', (code) => reject(new Error(`rebuild bench child (${input.mode}) exited with ${code}`)));
    child.send(input);
  });
}

/** Loads the log: typed events (msgpack, with the typed layer's headers) in large sends. */
export async function loadRebuildLog(url: string, schema: string, events: number, partitions: number, log: (l: string) => void): Promise<void> {
  const annals = new Annals({ clientId: 'bench-rebuild-load', storage: postgres({ connectionString: url, schema, poolSize: 4 }) });
  try {
    await annals.admin().createTopics({ topics: [rebuildTopic(partitions)] });
    const codec = msgpackCodec();
    const headers = { 'event-type': BenchOrderPlaced.type, 'schema-version': '1', 'content-type': codec.contentType };
    const producer = annals.producer();
    const t0 = Date.now();
    const chunk = 5_000;
    for (let sent = 0; sent < events; sent += chunk) {
      const messages = [];
      for (let i = sent; i < Math.min(events, sent + chunk); i++) {
        const customerId = `c${(i * 7919) % 10_000}`;
        messages.push({ key: customerId, partition: partitionFor(Buffer.from(customerId), partitions), value: Buffer.from(codec.encode({ orderId: i, customerId, cents: 100 + (i % 900) })), headers });
      }
      await producer.send({ topic: REBUILD_TOPIC, messages });
    }
    log(`projection rebuild: ${events.toLocaleString('en-US')} events loaded in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  } finally {
    await annals.disconnect();
  }
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  await client.query(`VACUUM ANALYZE "${schema}".records`).catch(() => {});
  await client.end();
}

export async function runProjectionRebuildBench(input: RebuildBenchInput): Promise<RebuildBenchReport | undefined> {
  const events = intEnv('BENCH_REBUILD_EVENTS', input.quick ? 20_000 : 1_000_000);
  if (events === 0) return undefined;
  const rounds = Math.max(1, intEnv('BENCH_REBUILD_ROUNDS', input.quick ? 1 : 2));
  const partitions = input.partitions ?? 6;
  const schema = `annals_bench_rb_${randomBytes(4).toString('hex')}`;
  const log = input.log;
  const admin = new pg.Client({ connectionString: input.url });
  await admin.connect();
  try {
    await loadRebuildLog(input.url, schema, events, partitions, log);
    const base = { url: input.url, schema, partitions, fetchSize: 500, batchSize: 10_000 };
    const rebuildRates: number[] = [];
    const rawRates: number[] = [];
    const ratios: number[] = [];
    const rss: number[] = [];
    const rows: string[] = [];
    let version = 0;
    // A warm-up read (not recorded) brings the records into the cache for both sides.
    await runChild({ ...base, mode: 'raw', version: 0 });
    for (let r = 0; r < rounds; r++) {
      const rawFirst = r % 2 === 1;
      let a: RebuildChildResult;
      let b: RebuildChildResult;
      if (rawFirst) {
        b = await runChild({ ...base, mode: 'raw', version: 0 });
        a = await runChild({ ...base, mode: 'rebuild', version: ++version });
      } else {
        a = await runChild({ ...base, mode: 'rebuild', version: ++version });
        b = await runChild({ ...base, mode: 'raw', version: 0 });
      }
      if (a.events !== events || b.events !== events) throw new Error(`projection rebuild bench: rebuild saw ${a.events} and raw read ${b.events} of ${events} events`);
      const ar = (a.events * 1000) / a.elapsedMs;
      const br = (b.events * 1000) / b.elapsedMs;
      rebuildRates.push(ar);
      rawRates.push(br);
      ratios.push(ar / br);
      rss.push(a.maxRssKb / 1024);
      rows.push(`| ${r + 1} | ${fmt(ar)} | ${fmt(br)} | ${(ar / br).toFixed(2)} | ${(a.maxRssKb / 1024).toFixed(0)} MB |`);
      log(`  rebuild round ${r + 1}: rebuild ${fmt(ar)} ev/s, raw ${fmt(br)} rows/s, ratio ${(ar / br).toFixed(2)}, peak RSS ${(a.maxRssKb / 1024).toFixed(0)} MB`);
    }
    const ratio = median(ratios);
    const peak = Math.max(...rss);
    const pass = ratio >= 0.4 && peak <= 256;
    const markdown = [
      `## Projection rebuild over ${events.toLocaleString('en-US')} events (issue 5)`,
      '',
      `A projection keeping one JSON document per customer (10,000 customers, ${partitions} partitions), rebuilt from the log start into a new version and swapped in — \`annals.projections.rebuild\` in a process of its own — vs a raw keyset read (\`SELECT … WHERE topic = $1 AND partition = $2 AND "offset" >= $3 ORDER BY "offset" LIMIT 500\`) of the same records in another process. ${rounds} round(s), alternating which side runs first, after a warm-up read. Peak RSS is the rebuilding process's \`maxRSS\`.`,
      '',
      '| figure | rebuild | raw keyset read | ratio (min–max) | target | result |',
      '|---|---:|---:|---:|---|---|',
      `| events/s (median) | ${fmt(median(rebuildRates))} | ${fmt(median(rawRates))} | **${ratio.toFixed(2)}×** (${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)}) | ≥ 0.40× | ${ratio >= 0.4 ? 'PASS' : '**FAIL**'} |`,
      `| peak RSS of the rebuilding process (max over rounds) | ${peak.toFixed(0)} MB | | | ≤ 256 MB | ${peak <= 256 ? 'PASS' : '**FAIL**'} |`,
      '',
      '| round | rebuild [events/s] | raw [rows/s] | ratio | rebuild peak RSS |',
      '|---|---:|---:|---:|---:|',
      ...rows,
      '',
    ].join('\n');
    return { markdown, pass };
  } finally {
    await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`).catch((e: unknown) => log(`cleanup: ${String(e)}`));
    await admin.end();
  }
}

// `node bench/dist/projection-rebuild.js` runs this scenario alone (results in bench/results/projection-rebuild.md).
if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const log = (line: string) => process.stderr.write(`[bench] ${line}\n`);
  runProjectionRebuildBench({ url: process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test', log, quick: process.env.BENCH_QUICK === '1' }).then(
    (report) => {
      if (!report) return;
      process.stdout.write(`\n${report.markdown}`);
      const out = fileURLToPath(new URL('../results/projection-rebuild.md', import.meta.url));
      mkdirSync(fileURLToPath(new URL('../results/', import.meta.url)), { recursive: true });
      writeFileSync(out, `# Projection rebuild benchmark: latest standalone run\n\n${new Date().toISOString()} · ${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'} · Node ${process.version}\n\n${report.markdown}`);
      log(`wrote ${out}`);
    },
    (error: unknown) => {
      log(`failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
      process.exitCode = 1;
    },
  );
}
