/**
 * `npm run bench`: Annals against raw PostgreSQL, measured in the same run on equally indexed
 * tables (issue 3, "Benchmark"). Several alternating rounds; the table shows the median of each
 * figure and the median of the per-round ratios.
 *
 * Environment:
 * - DATABASE_URL   a local server (default postgres://postgres@127.0.0.1:5432/test; when unset and
 *                  nothing answers there, an embedded server is started if @annals/storage-pg has one)
 * - BENCH_ROUNDS   measured rounds (default 5; 2 with BENCH_QUICK)
 * - BENCH_QUICK=1  small sizes and short windows: a smoke run of every path
 * - BENCH_EMBEDDED=1  use an embedded server even when one answers at the default URL
 * - BENCH_BATCH_CALLS, BENCH_SINGLE_MS, BENCH_BACKLOG, BENCH_LATENCY_MS: override sizes
 * - BENCH_REBUILD_EVENTS, BENCH_REBUILD_ROUNDS: the projection rebuild (projection-rebuild.ts; 0 events skips it)
 * - BENCH_AGG_EVENTS, BENCH_AGG_ROUNDS, BENCH_AGG_MS: the aggregates scenario (aggregates.ts; 0 events skips it)
 * - BENCH_RETENTION_RECORDS, BENCH_RETENTION_ROUNDS, BENCH_RETENTION_RATE, BENCH_RETENTION_BASE_MS,
 *   BENCH_RETENTION_PARTITIONS, BENCH_RETENTION_SEGMENT, BENCH_RETENTION_CHUNK: retention under load
 *   (retention.ts; 0 records skips it)
 * - BENCH_RAW_STREAM_INDEX=0: the raw table without the stream index Annals' records table carries (default: equally indexed)
 * - BENCH_GROUP_RECORDS, BENCH_GROUP_TX_RECORDS, BENCH_GROUP_ROUNDS, BENCH_GROUP_TRIALS, BENCH_GROUP_SESSION_MS:
 *                  the consumer-group scenario (groups.ts; 0 records skips it)
 * - BENCH_ONLY     a comma list of sections to run: core (a–d), rebuild, aggregates, groups, retention (default: all)
 */
import { execFileSync, fork, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import { fileURLToPath } from 'node:url';
import { Annals, partitionFor, type Producer } from '@annals/core';
import * as storagePg from '@annals/storage-pg';
import type pg from 'pg';
import {
  checkLoopback,
  closedLoop,
  idOfValue,
  loadSettings,
  makeBatch,
  makeKey,
  makeValue,
  median,
  now,
  percentile,
  quoteIdent,
  rawClient,
  rawTableDdl,
  RAW_STREAM_INDEX,
  RawWriter,
  sleep,
  type BenchMessage,
  type BenchSettings,
  type FromWorker,
  type ToWorker,
} from './common.js';
import { cpuSince, cpuSnapshot, foreignCores, machineSnapshot, type CpuSnapshot } from './cpu.js';
import { runProjectionRebuildBench } from './projection-rebuild.js';
import { runAggregatesBench } from './aggregates.js';
import { runRetentionBench } from './retention.js';
import { runGroupsBench } from './groups.js';

const DEFAULT_URL = 'postgres://postgres@127.0.0.1:5432/test';
const settings = loadSettings();
const log = (line: string) => process.stderr.write(`[bench] ${line}\n`);
const ONLY = process.env.BENCH_ONLY ? new Set(process.env.BENCH_ONLY.split(',').map((x) => x.trim())) : undefined;
const runs = (section: 'core' | 'rebuild' | 'aggregates' | 'groups' | 'retention') => !ONLY || ONLY.has(section);

// ---- figures ----------------------------------------------------------------------------------------

type Kind = 'throughput' | 'latency';

interface Figure {
  readonly id: string;
  readonly label: string;
  readonly rawLabel: string;
  readonly kind: Kind;
  /** Throughput: minimum ratio. Latency: maximum Annals milliseconds. */
  readonly target: number;
  readonly annals: number[];
  readonly raw: number[];
  readonly ratios: number[];
  readonly cpu: { annals: CpuSnapshot[]; raw: CpuSnapshot[]; annalsOps: number[]; rawOps: number[] };
  readonly notes: string[];
}

const figures = new Map<string, Figure>();

function figure(id: string, label: string, rawLabel: string, kind: Kind, target: number): Figure {
  const f: Figure = { id, label, rawLabel, kind, target, annals: [], raw: [], ratios: [], cpu: { annals: [], raw: [], annalsOps: [], rawOps: [] }, notes: [] };
  figures.set(id, f);
  return f;
}

const F = {
  a: figure('a', '(a) batched publish, 1,000 msgs/send, 6 partitions, keyed [rows/s]', 'multi-row INSERT, 1,000 rows/statement', 'throughput', 0.7),
  b1: figure('b1', '(b) single sends, 1 producer awaiting each [msgs/s]', 'single-row INSERT autocommit, 1 connection', 'throughput', 0.85),
  b8: figure('b8', '(b) single sends, 8 concurrent senders, 1 shared producer [msgs/s]', 'single-row INSERT autocommit, 8 connections (8 pg clients, 1 process)', 'throughput', 1.0),
  b8p: figure('b8p', '(b) single sends, 8 processes, 1 producer each [msgs/s]', 'single-row INSERT autocommit, 8 connections (8 processes)', 'throughput', 0.6),
  cFetch: figure('cFetch', '(c) fetch backlog, annals.fetch, 500/fetch [records/s]', 'keyset SELECT … LIMIT 500', 'throughput', 0.7),
  cReader: figure('cReader', '(c) fetch backlog, annals.reader().run eachBatch [records/s]', 'keyset SELECT … LIMIT 500', 'throughput', 0.7),
  dP50: figure('dP50', '(d) publish → reader latency at 500 ev/s, p50 [ms]', 'LISTEN/NOTIFY one way, p50', 'latency', 5),
  dP99: figure('dP99', '(d) publish → reader latency at 500 ev/s, p99 [ms]', 'LISTEN/NOTIFY one way, p99', 'latency', 25),
};

interface Measured {
  readonly value: number;
  readonly ops: number;
  readonly cpu: CpuSnapshot;
}

async function measure(fn: () => Promise<{ ops: number; elapsedMs: number }>): Promise<Measured> {
  const before = cpuSnapshot();
  const { ops, elapsedMs } = await fn();
  const cpu = cpuSince(before);
  return { value: ops / (elapsedMs / 1000), ops, cpu };
}

/** Runs the Annals and raw sides of one throughput figure in the round's order and records them. */
async function pairThroughput(
  f: Figure,
  annalsFirst: boolean,
  annalsSide: () => Promise<{ ops: number; elapsedMs: number }>,
  rawSide: () => Promise<{ ops: number; elapsedMs: number }>,
  record = true,
): Promise<void> {
  let a: Measured;
  let r: Measured;
  if (annalsFirst) {
    a = await measure(annalsSide);
    r = await measure(rawSide);
  } else {
    r = await measure(rawSide);
    a = await measure(annalsSide);
  }
  if (!record) return;
  f.annals.push(a.value);
  f.raw.push(r.value);
  f.ratios.push(a.value / r.value);
  f.cpu.annals.push(a.cpu);
  f.cpu.raw.push(r.cpu);
  f.cpu.annalsOps.push(a.ops);
  f.cpu.rawOps.push(r.ops);
  log(`  ${f.id}: annals ${fmtNum(a.value)}  raw ${fmtNum(r.value)}  ratio ${(a.value / r.value).toFixed(2)}`);
}

// ---- formatting ---------------------------------------------------------------------------------------

function fmtNum(n: number): string {
  if (!Number.isFinite(n)) return 'n/a';
  return n >= 100 ? Math.round(n).toLocaleString('en-US') : n.toFixed(2);
}

function fmtMs(n: number): string {
  return Number.isFinite(n) ? `${n.toFixed(2)} ms` : 'n/a';
}

// ---- server and schema ------------------------------------------------------------------------------

interface Server {
  readonly url: string;
  readonly source: string;
  readonly stop?: () => Promise<void>;
}

async function answers(url: string): Promise<boolean> {
  try {
    const c = await rawClient(url);
    await c.end();
    return true;
  } catch {
    return false;
  }
}

async function resolveServer(): Promise<Server> {
  const env = process.env.DATABASE_URL;
  if (env) {
    checkLoopback(env);
    return { url: env, source: 'DATABASE_URL' };
  }
  if (process.env.BENCH_EMBEDDED !== '1' && (await answers(DEFAULT_URL))) return { url: DEFAULT_URL, source: 'default URL' };
  // No server here: start an embedded one (a fresh temporary data folder, removed at the end).
  log(`${process.env.BENCH_EMBEDDED === "1" ? "BENCH_EMBEDDED=1" : `no server answers at ${DEFAULT_URL}`}: starting an embedded PostgreSQL`);
  const server = new storagePg.EmbeddedPostgresServer({ persistent: false });
  const info = await server.start();
  return { url: info.connectionString, source: 'embedded server', stop: () => server.stop() };
}

// ---- the run ------------------------------------------------------------------------------------------

const TOPIC = { a: 'bench-a', b: 'bench-b', c: 'bench-c', d: 'bench-d' } as const;

interface Context {
  readonly url: string;
  readonly schema: string;
  readonly rawTable: string;
  readonly annals: Annals;
  readonly readerClient: Annals;
  readonly producer: Producer;
  readonly latencyProducer: Producer;
  readonly raw: pg.Client;
  readonly rawWriter: RawWriter;
  readonly raw8: pg.Client[];
  readonly raw8Writers: RawWriter[];
  readonly notifyListener: pg.Client;
  readonly notifySender: pg.Client;
  readonly notifyChannel: string;
  readonly workers: ChildProcess[];
  readonly batches: BenchMessage[][];
}

let nextId = 1;
const takeIds = (n: number) => {
  const base = nextId;
  nextId += n;
  return base;
};

// (a)
async function scenarioA(ctx: Context, s: BenchSettings, annalsFirst: boolean, record: boolean, calls: number): Promise<void> {
  const sideAnnals = async () => {
    let rows = 0;
    const t0 = now();
    for (let i = 0; i < calls && now() - t0 < s.batchCapMs; i++) {
      const batch = ctx.batches[i % ctx.batches.length]!;
      await ctx.producer.send({ topic: TOPIC.a, messages: batch });
      rows += batch.length;
    }
    return { ops: rows, elapsedMs: now() - t0 };
  };
  const sideRaw = async () => {
    let rows = 0;
    const t0 = now();
    for (let i = 0; i < calls && now() - t0 < s.batchCapMs; i++) {
      const batch = ctx.batches[i % ctx.batches.length]!;
      await ctx.rawWriter.insertBatch('raw-a', batch, s.partitions);
      rows += batch.length;
    }
    return { ops: rows, elapsedMs: now() - t0 };
  };
  await pairThroughput(F.a, annalsFirst, sideAnnals, sideRaw, record);
}

// (b) one producer / one connection, and 8 senders in one process
async function scenarioB(ctx: Context, s: BenchSettings, annalsFirst: boolean, record: boolean, ms: number): Promise<void> {
  const message = (id: number): BenchMessage => ({ key: makeKey(id), value: makeValue(id) });
  await pairThroughput(
    F.b1,
    annalsFirst,
    () => {
      const base = takeIds(s.singleMaxSends);
      return closedLoop(1, ms, s.singleMaxSends, async (_w, seq) => {
        await ctx.producer.send({ topic: TOPIC.b, messages: [message(base + seq)] });
      });
    },
    () => {
      const base = takeIds(s.singleMaxSends);
      return closedLoop(1, ms, s.singleMaxSends, async (_w, seq) => {
        const m = message(base + seq);
        await ctx.rawWriter.insertOne('raw-b1', partitionFor(m.key, s.partitions), m);
      });
    },
    record,
  );
  await pairThroughput(
    F.b8,
    annalsFirst,
    () => {
      const base = takeIds(s.singleMaxSends);
      return closedLoop(s.senders, ms, s.singleMaxSends, async (_w, seq) => {
        await ctx.producer.send({ topic: TOPIC.b, messages: [message(base + seq)] });
      });
    },
    () => {
      const base = takeIds(s.singleMaxSends);
      return closedLoop(s.senders, ms, s.singleMaxSends, async (w, seq) => {
        await ctx.raw8Writers[w]!.insertOne('raw-b8', w, message(base + seq));
      });
    },
    record,
  );
}

// (b) 8 processes
/** How long the worker processes of (b) 8 processes send on each side, three times, before the rounds. */
const WORKER_WARMUP_MS = 2_000;

function startWorkers(ctx: Omit<Context, 'workers'>, s: BenchSettings): Promise<ChildProcess[]> {
  const script = fileURLToPath(new URL('./worker.js', import.meta.url));
  const workers = Array.from({ length: s.senders }, () => fork(script, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }));
  return Promise.all(
    workers.map(
      (w, index) =>
        new Promise<ChildProcess>((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error(`worker ${index} did not start within 30 s`)), 30_000);
          w.once('message', (m: FromWorker) => {
            clearTimeout(timer);
            if (m.kind === 'ready') resolve(w);
            else reject(new Error(`worker ${index}: ${m.kind === 'error' ? m.message : m.kind}`));
          });
          w.once('exit', (code) => reject(new Error(`worker ${index} exited (${code}) during start`)));
          const init: ToWorker = {
            cmd: 'init',
            index,
            connectionString: ctx.url,
            schema: ctx.schema,
            rawTable: ctx.rawTable,
            topic: TOPIC.b,
            partitions: s.partitions,
          };
          w.send(init);
        }),
    ),
  );
}

async function runWorkers(workers: readonly ChildProcess[], mode: 'annals' | 'raw', ms: number, maxSends: number): Promise<{ ops: number; elapsedMs: number }> {
  const startAt = Date.now() + 100;
  const results = await Promise.all(
    workers.map(
      (w, index) =>
        new Promise<{ sends: number; startedAt: number; endedAt: number }>((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error(`worker ${index} did not finish its window`)), ms + 30_000);
          const onMessage = (m: FromWorker) => {
            clearTimeout(timer);
            w.off('message', onMessage);
            if (m.kind === 'done') resolve(m);
            else reject(new Error(`worker ${index}: ${m.kind === 'error' ? m.message : m.kind}`));
          };
          w.on('message', onMessage);
          const run: ToWorker = { cmd: 'run', mode, startAt, ms, maxSends };
          w.send(run);
        }),
    ),
  );
  const ops = results.reduce((n, r) => n + r.sends, 0);
  const start = Math.min(...results.map((r) => r.startedAt));
  const end = Math.max(...results.map((r) => r.endedAt));
  return { ops, elapsedMs: end - start };
}

async function scenarioBProcesses(ctx: Context, s: BenchSettings, annalsFirst: boolean, record: boolean, ms: number): Promise<void> {
  const perWorker = Math.ceil(s.singleMaxSends / s.senders);
  await pairThroughput(
    F.b8p,
    annalsFirst,
    () => runWorkers(ctx.workers, 'annals', ms, perWorker),
    () => runWorkers(ctx.workers, 'raw', ms, perWorker),
    record,
  );
}

// (c)
async function loadBacklog(ctx: Context, s: BenchSettings): Promise<void> {
  const t0 = now();
  for (let sent = 0; sent < s.backlog; sent += s.batchSize) {
    const batch = makeBatch(sent, Math.min(s.batchSize, s.backlog - sent));
    await ctx.producer.send({ topic: TOPIC.c, messages: batch });
    await ctx.rawWriter.insertBatch('raw-c', batch, s.partitions);
  }
  await ctx.raw.query(`VACUUM ANALYZE ${quoteIdent(ctx.schema)}.records`);
  await ctx.raw.query(`VACUUM ANALYZE ${ctx.rawTable}`);
  await ctx.raw.query(`VACUUM ANALYZE ${quoteIdent(ctx.schema)}.partitions`);
  log(`backlog of ${s.backlog.toLocaleString('en-US')} records loaded on both sides in ${((now() - t0) / 1000).toFixed(1)} s`);
}

async function scenarioC(ctx: Context, s: BenchSettings, annalsFirst: boolean, record: boolean, partitions: number): Promise<void> {
  const expected = record ? s.backlog : -1;
  const check = (side: string, count: number) => {
    if (expected >= 0 && count !== expected) F.cFetch.notes.push(`${side} read ${count} of ${expected} records in one round`);
  };
  const fetchSide = async () => {
    let count = 0;
    const t0 = now();
    for (let p = 0; p < partitions; p++) {
      let offset = 0n;
      for (let i = 0; i < 1_000_000 && now() - t0 < s.fetchCapMs; i++) {
        const r = await ctx.annals.fetch(TOPIC.c, p, offset, { maxRecords: s.fetchSize });
        const last = r.messages[r.messages.length - 1];
        if (!last) break;
        count += r.messages.length;
        offset = BigInt(last.offset) + 1n;
        if (offset >= BigInt(r.highWatermark)) break;
      }
    }
    check('annals.fetch', count);
    return { ops: count, elapsedMs: now() - t0 };
  };
  const rawSide = async () => {
    let count = 0;
    const t0 = now();
    for (let p = 0; p < partitions; p++) {
      let offset = 0;
      for (let i = 0; i < 1_000_000 && now() - t0 < s.fetchCapMs; i++) {
        const { rows } = await ctx.raw.query<{ offset: string; timestamp: Date; key: Buffer; value: Buffer; headers: Buffer | null }>(
          `SELECT "offset", "timestamp", key, value, headers FROM ${ctx.rawTable}
WHERE topic = $1 AND partition = $2 AND "offset" >= $3 ORDER BY "offset" LIMIT ${s.fetchSize}`,
          ['raw-c', p, offset],
        );
        count += rows.length;
        if (rows.length < s.fetchSize) break;
        offset = Number(rows[rows.length - 1]!.offset) + 1;
      }
    }
    check('raw keyset', count);
    return { ops: count, elapsedMs: now() - t0 };
  };
  const readerSide = async () => {
    const total = record ? s.backlog : (await ctx.annals.admin().fetchTopicOffsets(TOPIC.c)).filter((o) => o.partition < partitions).reduce((n, o) => n + Number(o.high), 0);
    const reader = ctx.annals.reader({ maxRecords: s.fetchSize });
    await reader.assign(Array.from({ length: partitions }, (_, partition) => ({ topic: TOPIC.c, partition, offset: '0' })));
    let count = 0;
    let finish!: () => void;
    const finished = new Promise<void>((resolve) => (finish = resolve));
    const t0 = now();
    const running = reader.run({
      eachBatch: async ({ batch }) => {
        count += batch.messages.length;
        if (count >= total) finish();
      },
    });
    running.catch(() => {}).finally(() => finish());
    const cap = sleep(s.fetchCapMs);
    await Promise.race([finished, cap]);
    const elapsedMs = now() - t0;
    await reader.stop();
    await running;
    check('annals.reader', count);
    return { ops: count, elapsedMs };
  };
  await pairThroughput(F.cFetch, annalsFirst, fetchSide, rawSide, record);
  await pairThroughput(F.cReader, annalsFirst, readerSide, rawSide, record);
}

// (d)
async function annalsLatency(ctx: Context, s: BenchSettings, ms: number): Promise<{ latencies: number[]; sent: number; errors: number }> {
  const total = Math.max(1, Math.round((s.latencyRate * ms) / 1000));
  const base = takeIds(total);
  const sendAt = new Float64Array(total);
  const received = new Uint8Array(total);
  const latencies: number[] = [];
  const reader = ctx.readerClient.reader({ maxRecords: s.fetchSize });
  await reader.assign(Array.from({ length: s.partitions }, (_, partition) => ({ topic: TOPIC.d, partition, offset: 'latest' as const })));
  const running = reader.run({
    eachMessage: async ({ message }) => {
      const at = now();
      const i = idOfValue(message.value) - base;
      if (i >= 0 && i < total && received[i] === 0) {
        received[i] = 1;
        latencies.push(at - sendAt[i]!);
      }
    },
  });
  running.catch(() => {});
  await sleep(300); // the reader's first fetches and its LISTEN
  let sent = 0;
  let errors = 0;
  const interval = 1000 / s.latencyRate;
  const t0 = now();
  while (sent < total && now() - t0 < ms + 2_000) {
    const due = Math.min(total, Math.floor((now() - t0) / interval) + 1);
    while (sent < due) {
      const id = base + sent;
      sendAt[sent] = now();
      ctx.latencyProducer.send({ topic: TOPIC.d, messages: [{ key: makeKey(id), value: makeValue(id) }] }).catch(() => errors++);
      sent++;
    }
    await sleep(1);
  }
  const waitUntil = now() + 5_000;
  while (latencies.length < sent - errors && now() < waitUntil) await sleep(5);
  await reader.stop();
  await running.catch(() => {});
  return { latencies, sent, errors };
}

async function notifyLatency(ctx: Context, s: BenchSettings, ms: number): Promise<number[]> {
  const total = Math.max(1, Math.round((s.latencyRate * ms) / 1000));
  const sendAt = new Float64Array(total);
  const latencies: number[] = [];
  const base = takeIds(total);
  const onNotification = (m: pg.Notification) => {
    const at = now();
    if (m.channel !== ctx.notifyChannel) return;
    const i = Number(m.payload) - base;
    if (i >= 0 && i < total) latencies.push(at - sendAt[i]!);
  };
  ctx.notifyListener.on('notification', onNotification);
  try {
    // One connection runs one query at a time: due notifications queue here and are sent in order
    // (the queueing counts in their latency, as it does for the producer's coalesced sends).
    const queue: number[] = [];
    let scheduling = true;
    let wake: (() => void) | undefined;
    const drain = (async () => {
      while (scheduling || queue.length > 0) {
        const i = queue.shift();
        if (i === undefined) {
          await new Promise<void>((resolve) => (wake = resolve));
          wake = undefined;
          continue;
        }
        await ctx.notifySender.query('SELECT pg_notify($1, $2)', [ctx.notifyChannel, String(base + i)]).catch(() => {});
      }
    })();
    let sent = 0;
    const interval = 1000 / s.latencyRate;
    const t0 = now();
    while (sent < total && now() - t0 < ms + 2_000) {
      const due = Math.min(total, Math.floor((now() - t0) / interval) + 1);
      while (sent < due) {
        sendAt[sent] = now();
        queue.push(sent);
        sent++;
      }
      wake?.();
      await sleep(1);
    }
    scheduling = false;
    wake?.();
    await drain;
    const waitUntil = now() + 3_000;
    while (latencies.length < sent && now() < waitUntil) await sleep(5);
  } finally {
    ctx.notifyListener.off('notification', onNotification);
  }
  return latencies;
}

const pooled = { annals: [] as number[], raw: [] as number[], sent: 0, lost: 0, errors: 0 };

async function scenarioD(ctx: Context, s: BenchSettings, annalsFirst: boolean, record: boolean, ms: number, notifyMs: number): Promise<void> {
  let a: Awaited<ReturnType<typeof annalsLatency>>;
  let r: number[];
  if (annalsFirst) {
    a = await annalsLatency(ctx, s, ms);
    r = await notifyLatency(ctx, s, notifyMs);
  } else {
    r = await notifyLatency(ctx, s, notifyMs);
    a = await annalsLatency(ctx, s, ms);
  }
  if (!record) return;
  const ap50 = percentile(a.latencies, 50);
  const ap99 = percentile(a.latencies, 99);
  const rp50 = percentile(r, 50);
  const rp99 = percentile(r, 99);
  F.dP50.annals.push(ap50);
  F.dP50.raw.push(rp50);
  F.dP50.ratios.push(ap50 / rp50);
  F.dP99.annals.push(ap99);
  F.dP99.raw.push(rp99);
  F.dP99.ratios.push(ap99 / rp99);
  pooled.annals.push(...a.latencies);
  pooled.raw.push(...r);
  pooled.sent += a.sent;
  pooled.lost += a.sent - a.errors - a.latencies.length;
  pooled.errors += a.errors;
  log(`  d: annals p50 ${fmtMs(ap50)} p99 ${fmtMs(ap99)} (${a.latencies.length}/${a.sent} received)  notify p50 ${fmtMs(rp50)} p99 ${fmtMs(rp99)}`);
}

// ---- one round ----------------------------------------------------------------------------------------

const foreignLoad: number[] = [];

async function round(ctx: Context, s: BenchSettings, index: number, warmup: boolean): Promise<void> {
  const annalsFirst = index % 2 === 0;
  log(`${warmup ? 'warm-up' : `round ${index + 1}/${s.rounds}`} (${annalsFirst ? 'Annals' : 'raw'} first)`);
  const pids = ctx.workers.flatMap((w) => (w.pid === undefined ? [] : [w.pid]));
  const before = machineSnapshot(pids);
  try {
    await roundScenarios(ctx, s, annalsFirst, warmup);
  } finally {
    const load = foreignCores(before, machineSnapshot(pids));
    if (!warmup) foreignLoad.push(load);
    if (load > 0.5) log(`  other processes kept ${load.toFixed(2)} cores busy during this round: its figures are noisy`);
  }
}

async function roundScenarios(ctx: Context, s: BenchSettings, annalsFirst: boolean, warmup: boolean): Promise<void> {
  const short = warmup ? Math.min(300, s.singleMs) : s.singleMs;
  await scenarioA(ctx, s, annalsFirst, !warmup, warmup ? Math.min(5, s.batchCalls) : s.batchCalls);
  await scenarioB(ctx, s, annalsFirst, !warmup, short);
  await scenarioBProcesses(ctx, s, annalsFirst, !warmup, short);
  await scenarioC(ctx, s, annalsFirst, !warmup, warmup ? 1 : s.partitions);
  await scenarioD(ctx, s, annalsFirst, !warmup, warmup ? 500 : s.latencyMs, warmup ? 300 : s.notifyMs);
}

// ---- the report ----------------------------------------------------------------------------------------

interface ServerFacts {
  readonly version: string;
  readonly settings: Record<string, string>;
}

/** The commit measured, with `-dirty` when the working tree has changes (they are measured too). */
function sourceVersion(): string {
  try {
    const cwd = fileURLToPath(new URL('..', import.meta.url));
    return execFileSync('git', ['describe', '--always', '--dirty'], { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 5_000 }).trim();
  } catch {
    return 'not a git checkout';
  }
}

function report(s: BenchSettings, server: Server, facts: ServerFacts, startedAt: Date, durationS: number): string {
  const lines: string[] = [];
  const cpus = os.cpus();
  lines.push('# Annals benchmark: latest run');
  lines.push('');
  lines.push(
    `${startedAt.toISOString()} · source ${sourceVersion()} · ${s.rounds} measured rounds${s.quick ? ' (BENCH_QUICK smoke run: sizes too small for real figures)' : ''}, alternating which side runs first, after one warm-up round · ${durationS.toFixed(0)} s in all`,
  );
  lines.push(
    `Machine: ${cpus.length} × ${cpus[0]?.model ?? 'cpu'}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB · Node ${process.version} · PostgreSQL ${facts.version} (${server.source}) · ${Object.entries(facts.settings)
      .map(([k, v]) => `${k}=${v}`)
      .join(', ')}`,
  );
  lines.push(
    `Events: text keys (~10k distinct), ${settings.partitions} partitions keyed with murmur2, ${200}-byte values, no headers. Raw baseline table: same columns and primary key (topic, partition, offset) as the Annals records table${RAW_STREAM_INDEX ? ', and the same partial stream index (topic, partition, key, offset) WHERE key IS NOT NULL' : ', WITHOUT the stream index the Annals table has (BENCH_RAW_STREAM_INDEX=0)'}, offsets assigned by the client, no head row.`,
  );
  lines.push('');
  lines.push('Figures are medians over the rounds; the ratio is Annals ÷ raw per round, then the median (range in brackets).');
  lines.push('');
  lines.push('| scenario | Annals | raw PostgreSQL baseline | raw | ratio (min–max) | target | result |');
  lines.push('|---|---:|---|---:|---:|---|---|');
  for (const f of figures.values()) {
    const a = median(f.annals);
    const r = median(f.raw);
    const ratio = median(f.ratios);
    const lo = Math.min(...f.ratios);
    const hi = Math.max(...f.ratios);
    if (f.kind === 'throughput') {
      const pass = ratio >= f.target;
      lines.push(
        `| ${f.label} | ${fmtNum(a)} | ${f.rawLabel} | ${fmtNum(r)} | **${ratio.toFixed(2)}×** (${lo.toFixed(2)}–${hi.toFixed(2)}) | ≥ ${f.target.toFixed(2)}× | ${pass ? 'PASS' : '**FAIL**'} |`,
      );
    } else {
      const pass = a <= f.target;
      lines.push(
        `| ${f.label} | ${fmtMs(a)} | ${f.rawLabel} | ${fmtMs(r)} | ${ratio.toFixed(1)}× raw (${lo.toFixed(1)}–${hi.toFixed(1)}) | ≤ ${f.target} ms | ${pass ? 'PASS' : '**FAIL**'} |`,
      );
    }
  }
  lines.push('');
  lines.push(
    `(d) pooled over all rounds: Annals p50 ${fmtMs(percentile(pooled.annals, 50))}, p99 ${fmtMs(percentile(pooled.annals, 99))}, max ${fmtMs(Math.max(...pooled.annals))} (${pooled.annals.length} of ${pooled.sent} events received; ${pooled.errors} send errors; ${pooled.lost} not received within 5 s) · raw NOTIFY p50 ${fmtMs(percentile(pooled.raw, 50))}, p99 ${fmtMs(percentile(pooled.raw, 99))}.`,
  );
  lines.push('');
  lines.push('## CPU per 1,000 events (median over rounds; Node = this process, PostgreSQL = all postgres processes)');
  lines.push('');
  lines.push('| scenario | Annals: Node ms | Annals: PostgreSQL ms | raw: Node ms | raw: PostgreSQL ms |');
  lines.push('|---|---:|---:|---:|---:|');
  for (const f of figures.values()) {
    if (f.kind !== 'throughput' || f.cpu.annals.length === 0) continue;
    const per = (cpu: CpuSnapshot[], ops: number[], k: keyof CpuSnapshot) => median(cpu.map((c, i) => (c[k] * 1000) / ops[i]!));
    const note = f.id === 'b8p' ? ' (Node: the parent only; senders run in child processes)' : '';
    lines.push(
      `| ${f.id}${note} | ${per(f.cpu.annals, f.cpu.annalsOps, 'nodeMs').toFixed(1)} | ${per(f.cpu.annals, f.cpu.annalsOps, 'pgMs').toFixed(1)} | ${per(f.cpu.raw, f.cpu.rawOps, 'nodeMs').toFixed(1)} | ${per(f.cpu.raw, f.cpu.rawOps, 'pgMs').toFixed(1)} |`,
    );
  }
  lines.push('');
  lines.push('## Every round');
  lines.push('');
  lines.push(`| figure | ${Array.from({ length: s.rounds }, (_, i) => `round ${i + 1}`).join(' | ')} |`);
  lines.push(`|---|${Array.from({ length: s.rounds }, () => '---:').join('|')}|`);
  for (const f of figures.values()) {
    const cell = (i: number) =>
      f.kind === 'throughput'
        ? `${fmtNum(f.annals[i]!)} / ${fmtNum(f.raw[i]!)} = ${f.ratios[i]!.toFixed(2)}`
        : `${f.annals[i]!.toFixed(2)} / ${f.raw[i]!.toFixed(2)} ms`;
    lines.push(`| ${f.id} (Annals / raw) | ${f.annals.map((_, i) => cell(i)).join(' | ')} |`);
  }
  lines.push(`| other load, ≈ cores busy outside this benchmark and PostgreSQL (±0.3) | ${foreignLoad.map((x) => (Number.isFinite(x) ? x.toFixed(2) : 'n/a')).join(' | ')} |`);
  const notes = [...figures.values()].flatMap((f) => f.notes);
  const noisy = foreignLoad.filter((x) => x > 0.5).length;
  if (noisy > 0) {
    notes.push(
      `${noisy} of ${foreignLoad.length} rounds ran while other processes kept more than about 0.5 of ${os.cpus().length} cores busy (see "other load"): those rounds' figures are noisy; the alternating order spreads the noise over both sides.`,
    );
  }
  if (notes.length > 0) {
    lines.push('');
    lines.push('## Warnings');
    for (const n of notes) lines.push(`- ${n}`);
  }
  lines.push('');
  lines.push('## What is measured');
  lines.push('');
  lines.push(
    [
      `- (a) ${s.batchCalls} × \`producer.send\` of ${s.batchSize} keyed messages (one 6-partition statement each) vs ${s.batchCalls} multi-row INSERTs of ${s.batchSize} rows (topic as one parameter, partition/offset literals, key and value parameters, \`now()\`), autocommit, one connection.`,
      `- (b) closed loops for ${s.singleMs} ms per side: each sender awaits its send before the next. "8 senders" share one producer (its sends coalesce into one append per round trip) vs 8 pg clients in the same process; "8 processes" are 8 forked workers (bench/dist/worker.js), each with its own Annals client and its own raw connection, started together and warmed up before the first round (3 × ${s.quick ? 500 : WORKER_WARMUP_MS} ms of sends on each side, alternately).`,
      `- (c) ${s.backlog.toLocaleString('en-US')} records over ${s.partitions} partitions loaded once on each side, then VACUUM ANALYZE; each round reads all of them partition by partition with ${s.fetchSize}-record fetches (annals.fetch), and again with a reader (annals.reader(), eachBatch); raw: \`SELECT "offset", "timestamp", key, value, headers … WHERE topic=$1 AND partition=$2 AND "offset" >= $3 ORDER BY "offset" LIMIT ${s.fetchSize}\` on one connection.`,
      `- Two Annals LISTEN sessions (one per Annals client, opened by the first readers) stay connected for the whole run, as a deployment with running consumers would have: every Annals append's wake-up (a NOTIFY sent after its commit) reaches them. The raw inserts notify nobody.`,
      `- (d) ${s.latencyRate} single sends per second for ${s.latencyMs} ms (not awaited, so concurrent sends coalesce) while a reader of a second Annals client reads all ${s.partitions} partitions with eachMessage and LISTEN/NOTIFY wake-ups; latency = receive time − time just before \`send\`. Raw: \`SELECT pg_notify(…)\` at the same rate for ${s.notifyMs} ms on one connection, received on another.`,
    ].join('\n'),
  );
  return lines.join('\n') + '\n';
}

// ---- main ------------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  // A closed pipe (`npm run bench | head`) must not end the run before the schema is dropped.
  process.stdout.on('error', () => {});
  process.stderr.on('error', () => {});
  const startedAt = new Date();
  const t0 = now();
  const s = settings;
  const server = await resolveServer();
  checkLoopback(server.url);
  const schema = `annals_bench_${randomBytes(4).toString('hex')}`;
  const rawTable = `${quoteIdent(schema)}.raw_records`;
  const cleanups: Array<() => Promise<unknown>> = [];
  let cleaned = false;
  const cleanup = async () => {
    if (cleaned) return;
    cleaned = true;
    for (const c of cleanups.reverse()) await c().catch((e: unknown) => log(`cleanup: ${String(e)}`));
  };
  const onSignal = (signal: NodeJS.Signals) => {
    log(`${signal}: cleaning up`);
    const force = setTimeout(() => process.exit(130), 10_000);
    force.unref();
    void cleanup().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  if (server.stop) cleanups.push(server.stop);

  try {
    const admin = await rawClient(server.url);
    cleanups.push(async () => {
      await admin.query(`DROP SCHEMA IF EXISTS ${quoteIdent(schema)} CASCADE`);
      await admin.end();
      log(`dropped schema ${schema}`);
    });
    const { rows: settingRows } = await admin.query<{ name: string; setting: string; unit: string | null }>(
      `SELECT name, setting, unit FROM pg_settings WHERE name IN ('shared_buffers', 'synchronous_commit', 'fsync', 'wal_level', 'max_wal_size', 'commit_delay', 'autovacuum')`,
    );
    const { rows: versionRows } = await admin.query<{ server_version: string }>('SHOW server_version');
    const facts: ServerFacts = {
      version: versionRows[0]?.server_version ?? '?',
      settings: Object.fromEntries(settingRows.map((r) => [r.name, r.unit === '8kB' ? `${(Number(r.setting) * 8) / 1024}MB` : `${r.setting}${r.unit ?? ''}`])),
    };
    log(`PostgreSQL ${facts.version} via ${server.source}; schema ${schema}`);

    const annals = new Annals({ clientId: 'bench', storage: storagePg.postgres({ connectionString: server.url, schema, poolSize: 10 }) });
    cleanups.push(() => annals.disconnect());
    await annals.connect();
    const readerClient = new Annals({ clientId: 'bench-reader', storage: storagePg.postgres({ connectionString: server.url, schema, migrate: false, poolSize: 4 }) });
    cleanups.push(() => readerClient.disconnect());
    await annals.admin().createTopics({
      topics: Object.values(TOPIC).map((topic) => ({ topic, numPartitions: s.partitions })),
    });
    for (const ddl of rawTableDdl(rawTable)) await admin.query(ddl);

    const producer = annals.producer();
    await producer.connect();
    const latencyProducer = annals.producer();
    await latencyProducer.connect();
    const raw = await rawClient(server.url);
    cleanups.push(() => raw.end());
    const raw8 = await Promise.all(Array.from({ length: s.senders }, () => rawClient(server.url)));
    cleanups.push(() => Promise.all(raw8.map((c) => c.end())));
    const notifyListener = await rawClient(server.url);
    const notifySender = await rawClient(server.url);
    cleanups.push(() => Promise.all([notifyListener.end(), notifySender.end()]));
    const notifyChannel = `bench_raw_${schema}`.slice(0, 63);
    await notifyListener.query(`LISTEN ${quoteIdent(notifyChannel)}`);

    const base: Omit<Context, 'workers'> = {
      url: server.url,
      schema,
      rawTable,
      annals,
      readerClient,
      producer,
      latencyProducer,
      raw,
      rawWriter: new RawWriter(raw, rawTable),
      raw8,
      raw8Writers: raw8.map((c) => new RawWriter(c, rawTable)),
      notifyListener,
      notifySender,
      notifyChannel,
      batches: Array.from({ length: 10 }, (_, i) => makeBatch(10_000_000 + i * s.batchSize, s.batchSize)),
    };
    let markdown = '';
    if (runs('core')) {
    const workers = await startWorkers(base, s);
    cleanups.push(async () => {
      for (const w of workers) if (w.connected) w.send({ cmd: 'exit' } satisfies ToWorker);
      await Promise.race([Promise.all(workers.map((w) => (w.exitCode === null ? new Promise((r) => w.once('exit', r)) : null))), sleep(5_000)]);
      for (const w of workers) if (w.exitCode === null && w.pid !== undefined) w.kill('SIGKILL');
    });
    const ctx: Context = { ...base, workers };
    log(`${workers.length} worker processes ready`);
    // Warm the worker processes up before any round: 8 processes sharing 2 cores JIT-compile the
    // send path slowly, and the round's own 300 ms warm-up left them cold (measured: Node CPU per
    // Annals send ~350 µs in the first 3 s of sending, ~180 µs after 6–9 s; raw ~120 → ~85 µs).
    // Both sides get the same, alternately.
    const warmMs = s.quick ? 500 : WORKER_WARMUP_MS;
    for (let i = 0; i < 3; i++) {
      await runWorkers(workers, 'annals', warmMs, Number.MAX_SAFE_INTEGER);
      await runWorkers(workers, 'raw', warmMs, Number.MAX_SAFE_INTEGER);
    }
    log(`worker processes warmed up (${3 * warmMs} ms of sends on each side)`);

    await loadBacklog(ctx, s);
    await round(ctx, s, 0, true);
    for (let i = 0; i < s.rounds; i++) await round(ctx, s, i, false);
    markdown = report(s, server, facts, startedAt, (now() - t0) / 1000);
    }
    const rebuild = runs('rebuild') ? await runProjectionRebuildBench({ url: server.url, log, quick: s.quick }) : undefined;
    const aggregates = runs('aggregates') ? await runAggregatesBench({ url: server.url, log, quick: s.quick }) : undefined;
    const groups = runs('groups') ? await runGroupsBench({ url: server.url, log, quick: s.quick }) : undefined;
    const retention = runs('retention') ? await runRetentionBench({ url: server.url, log, quick: s.quick }) : undefined;

    markdown +=
      (rebuild ? `\n${rebuild.markdown}` : '') +
      (aggregates ? `\n${aggregates.markdown}` : '') +
      (groups ? `\n${groups.markdown}` : '') +
      (retention ? `\n${retention.markdown}` : '');
    process.stdout.write('\n' + markdown);
    // A partial run (BENCH_ONLY without core) leaves latest.md alone; each module writes its own file too.
    const out = fileURLToPath(new URL(runs('core') ? '../results/latest.md' : '../results/partial.md', import.meta.url));
    mkdirSync(fileURLToPath(new URL('../results/', import.meta.url)), { recursive: true });
    writeFileSync(out, markdown);
    log(`wrote ${out}`);
  } finally {
    await cleanup();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

main().then(
  () => process.exit(process.exitCode ?? 0),
  (error: unknown) => {
    process.stderr.write(`[bench] failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exit(1);
  },
);
