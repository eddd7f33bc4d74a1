/**
 * Benchmark (issue 4): consumer groups.
 *
 * 1. Consume throughput from a backlog on 6 partitions with a no-op handler, with 1 and with 3
 *    members (each member a forked process: bench/dist/groups-child.js), against raw keyset reads
 *    of the same records by as many processes, each reading the partitions the member would own.
 * 2. The same with exactly-once handlers: each handler INSERTs one row through `ctx.tx`; the raw
 *    side does, per fetched batch and in one transaction, the keyset read, the same INSERT per
 *    record and an offset upsert.
 * 3. Failover: 3 members consuming; one is sent SIGKILL (or SIGSTOP, a hung member); the time from
 *    the signal to the first record another member delivers from each of the victim's partitions.
 *
 * Throughput runs from the first delivery to the last (members start paused and are resumed
 * together once the group's assignment is stable, so joining and rebalancing are not counted).
 * Every round uses a new group, so it reads the backlog from the start; the backlog is loaded
 * once, through the producer's batched path.
 *
 * Environment:
 * - BENCH_GROUP_RECORDS     backlog size (default 1,000,000; 60,000 with BENCH_QUICK; 0 skips)
 * - BENCH_GROUP_TX_RECORDS  records consumed per exactly-once run (default 24,000; 12,000 quick)
 * - BENCH_GROUP_ROUNDS      measured rounds (default 3; 2 quick)
 * - BENCH_GROUP_TRIALS      kill trials and hang trials (default 3 each; 2 quick)
 * - BENCH_GROUP_SESSION_MS  the members' sessionTimeout in the failover trials (default 5000)
 * - BENCH_GROUP_FETCH       raw keyset read size (default 1000, the baselines' size)
 */
import { fork, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Annals } from '@annals/core';
import { postgres } from '@annals/storage-pg';
import pg from 'pg';
import { makeBatch } from './common.js';
import { wallNow, type FromGroupChild, type GroupMode, type ToGroupChild } from './groups-child.js';

export interface GroupsBenchInput {
  readonly url: string;
  readonly log: (line: string) => void;
  readonly quick: boolean;
}

export interface GroupsBenchReport {
  readonly markdown: string;
  readonly pass: boolean;
}

const TOPIC = 'bench-groups';
const PARTITIONS = 6;

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
const fmtMs = (n: number) => (Number.isFinite(n) ? `${Math.round(n).toLocaleString('en-US')} ms` : 'n/a');
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

// ---- child processes ---------------------------------------------------------------------------

class Child {
  readonly proc: ChildProcess;
  readonly #listeners = new Set<(m: FromGroupChild) => void>();
  exited = false;
  error: string | undefined;

  constructor() {
    const script = fileURLToPath(new URL('./groups-child.js', import.meta.url));
    this.proc = fork(script, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv: process.env.BENCH_GROUP_CHILD_ARGS ? process.env.BENCH_GROUP_CHILD_ARGS.split(' ') : [] });
    this.proc.on('message', (m: FromGroupChild) => {
      if (m.kind === 'error') this.error = m.message;
      for (const l of this.#listeners) l(m);
    });
    this.proc.on('exit', () => (this.exited = true));
    this.proc.on('error', () => {});
  }

  on(listener: (m: FromGroupChild) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  send(m: ToGroupChild): void {
    if (this.proc.connected) this.proc.send(m);
  }

  wait<K extends FromGroupChild['kind']>(kind: K, timeoutMs: number): Promise<Extract<FromGroupChild, { kind: K }>> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        off();
        reject(new Error(`group bench child ${this.proc.pid}: no "${kind}" within ${timeoutMs} ms${this.error ? `: ${this.error}` : ''}`));
      }, timeoutMs);
      const off = this.on((m) => {
        if (m.kind === kind || m.kind === 'error') {
          clearTimeout(timer);
          off();
          if (m.kind === 'error') reject(new Error(`group bench child ${this.proc.pid}: ${m.message}`));
          else resolve(m as Extract<FromGroupChild, { kind: K }>);
        }
      });
    });
  }

  kill(): void {
    if (!this.exited && this.proc.pid !== undefined) {
      try {
        process.kill(this.proc.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }
}

interface Members {
  readonly children: Child[];
  readonly assigned: number[][];
  readonly progress: Array<{ count: number; first: number; last: number; cpuMs?: number }>;
  readonly firsts: Array<Array<{ partition: number; at: number }>>;
}

async function startMembers(
  n: number,
  init: { url: string; schema: string; groupId: string; mode: GroupMode; sessionTimeout: number; heartbeatInterval: number; effectsTable: string },
): Promise<Members> {
  const children = Array.from({ length: n }, () => new Child());
  const members: Members = {
    children,
    assigned: children.map(() => []),
    progress: children.map(() => ({ count: 0, first: 0, last: 0 })),
    firsts: children.map(() => []),
  };
  children.forEach((c, i) =>
    c.on((m) => {
      if (m.kind === 'assigned') members.assigned[i] = m.partitions;
      if (m.kind === 'progress') members.progress[i] = { count: m.count, first: m.first, last: m.last };
      if (m.kind === 'done') members.progress[i] = { count: m.count, first: m.first, last: m.last, cpuMs: m.cpuMs };
      if (m.kind === 'first') members.firsts[i]!.push({ partition: m.partition, at: m.at });
    }),
  );
  try {
    await Promise.all(
      children.map((c) => {
        const ready = c.wait('ready', 60_000);
        c.send({ cmd: 'member', topic: TOPIC, ...init });
        return ready;
      }),
    );
    // Stable: every partition owned, evenly, by the n members, for 500 ms.
    const even = () => {
      const all = members.assigned.flat().sort((a, b) => a - b);
      return all.length === PARTITIONS && all.every((p, i) => p === i) && members.assigned.every((a) => a.length >= Math.floor(PARTITIONS / n));
    };
    const deadline = Date.now() + 60_000;
    let stableSince = 0;
    for (;;) {
      if (Date.now() > deadline) throw new Error(`the group did not settle: ${JSON.stringify(members.assigned)}`);
      const e = children.find((c) => c.error);
      if (e) throw new Error(`member failed: ${e.error}`);
      if (even()) {
        stableSince ||= Date.now();
        if (Date.now() - stableSince >= 500) break;
      } else stableSince = 0;
      await sleep(25);
    }
    return members;
  } catch (error) {
    for (const c of children) c.kill();
    throw error;
  }
}

async function stopMembers(m: Members): Promise<void> {
  await Promise.all(
    m.children.map(async (c) => {
      if (c.exited) return;
      const done = c.wait('done', 20_000).catch(() => undefined);
      c.send({ cmd: 'stop' });
      await done;
      await Promise.race([new Promise((r) => (c.exited ? r(undefined) : c.proc.once('exit', r))), sleep(5_000)]);
      c.kill();
    }),
  );
}

/**
 * Runs a side again (up to 3 times) when the shared server refused a connection (53300, too many
 * clients: other sessions' test runs on the same server). Anything else fails the run.
 */
async function retryTooMany<T>(log: (l: string) => void, what: string, fn: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (error) {
      const text = error instanceof Error ? error.message : String(error);
      if (attempt >= 3 || !/53300|too many clients/.test(text)) throw error;
      log(`  ${what}: the server refused a connection (too many clients); running it again in 5 s`);
      await sleep(5_000);
    }
  }
}

// ---- throughput ----------------------------------------------------------------------------------

interface Side {
  readonly records: number;
  readonly elapsedMs: number;
  readonly rate: number;
  /** Node CPU (all of the side's processes) per 1,000 records, ms. */
  readonly cpuPer1k: number;
}

/** Members consume until `target` records were delivered in all. */
async function annalsSide(ctx: RunCtx, n: number, mode: 'noop' | 'tx', groupId: string, target: number, capMs: number): Promise<Side> {
  const members = await startMembers(n, {
    url: ctx.url,
    schema: ctx.schema,
    groupId,
    mode,
    sessionTimeout: 30_000,
    heartbeatInterval: 3_000,
    effectsTable: `${ctx.schema}.bench_effects`,
  });
  try {
    const t0 = Date.now();
    for (const c of members.children) c.send({ cmd: 'go' });
    const total = () => members.progress.reduce((s, p) => s + p.count, 0);
    while (total() < target && Date.now() - t0 < capMs) {
      const e = members.children.find((c) => c.error);
      if (e) throw new Error(`member failed: ${e.error}`);
      await sleep(20);
    }
  } finally {
    await stopMembers(members);
  }
  const count = members.progress.reduce((s, p) => s + p.count, 0);
  const first = Math.min(...members.progress.filter((p) => p.count > 0).map((p) => p.first));
  const last = Math.max(...members.progress.map((p) => p.last));
  if (mode === 'noop' && target === ctx.perPartitionHigh.reduce((a, b) => a + b, 0) && count !== target) ctx.notes.push(`${groupId}: ${n} member(s) delivered ${count} of ${target} records`);
  if (mode === 'tx') {
    const { rows } = await ctx.admin.query<{ n: string; d: string }>(
      `SELECT count(*)::text AS n, count(DISTINCT (partition, "offset"))::text AS d FROM "${ctx.schema}".bench_effects WHERE grp = $1`,
      [groupId],
    );
    const committed = await ctx.admin.query<{ s: string | null }>(
      `SELECT sum(committed_offset)::text AS s FROM "${ctx.schema}".group_offsets WHERE group_id = $1`,
      [groupId],
    ).catch(() => ({ rows: [{ s: null }] }));
    if (rows[0]!.n !== rows[0]!.d) ctx.notes.push(`${groupId}: duplicate effects (${rows[0]!.n} rows, ${rows[0]!.d} distinct)`);
    if (committed.rows[0]!.s !== null && committed.rows[0]!.s !== rows[0]!.n) {
      ctx.notes.push(`${groupId}: ${rows[0]!.n} effect rows but committed offsets sum to ${committed.rows[0]!.s}`);
    }
  }
  const cpu = members.progress.reduce((s, p) => s + (p.cpuMs ?? NaN), 0);
  return { records: count, elapsedMs: last - first, rate: count / ((last - first) / 1000), cpuPer1k: (cpu * 1000) / count };
}

/** Raw readers: n processes, each reading its share of the partitions, `perPartition` records each. */
async function rawSide(ctx: RunCtx, n: number, mode: 'read' | 'tx', groupId: string, perPartition: number): Promise<Side> {
  const shares = Array.from({ length: n }, (_, i) => Array.from({ length: PARTITIONS }, (_, p) => p).filter((p) => p % n === i));
  const children = shares.map(() => new Child());
  try {
    await Promise.all(
      children.map((c, i) => {
        const ready = c.wait('ready', 60_000);
        c.send({
          cmd: 'raw',
          url: ctx.url,
          schema: ctx.schema,
          topic: TOPIC,
          partitions: shares[i]!,
          perPartition: shares[i]!.map((p) => Math.min(perPartition, ctx.perPartitionHigh[p]!)),
          mode,
          fetchSize: ctx.fetchSize,
          effectsTable: `${ctx.schema}.raw_effects`,
          groupId,
        });
        return ready;
      }),
    );
    const done = children.map((c) => c.wait('done', 30 * 60_000));
    for (const c of children) c.send({ cmd: 'go' });
    const results = await Promise.all(done);
    const count = results.reduce((s, r) => s + r.count, 0);
    const first = Math.min(...results.map((r) => r.first));
    const last = Math.max(...results.map((r) => r.last));
    const cpu = results.reduce((s, r) => s + r.cpuMs, 0);
    return { records: count, elapsedMs: last - first, rate: count / ((last - first) / 1000), cpuPer1k: (cpu * 1000) / count };
  } finally {
    for (const c of children) c.kill();
  }
}

// ---- failover ------------------------------------------------------------------------------------

interface Trial {
  readonly signal: 'SIGKILL' | 'SIGSTOP';
  /** Per moved partition: ms from the signal to the first record another member delivered. */
  readonly delays: number[];
  readonly timedOut: number;
}

async function failoverTrial(ctx: RunCtx, signal: 'SIGKILL' | 'SIGSTOP', index: number, sessionTimeout: number): Promise<Trial> {
  const groupId = `g-${signal === 'SIGKILL' ? 'kill' : 'hang'}-${index}`;
  const members = await startMembers(3, {
    url: ctx.url,
    schema: ctx.schema,
    groupId,
    mode: 'slow',
    sessionTimeout,
    heartbeatInterval: Math.max(100, Math.floor(sessionTimeout / 5)),
    effectsTable: `${ctx.schema}.bench_effects`,
  });
  try {
    for (const c of members.children) c.send({ cmd: 'go' });
    // Every partition delivering before the signal.
    const deadline = Date.now() + 30_000;
    while (new Set(members.firsts.flatMap((f) => f.map((x) => x.partition))).size < PARTITIONS) {
      if (Date.now() > deadline) throw new Error('failover trial: not every partition delivered within 30 s');
      await sleep(20);
    }
    await sleep(500);
    const victimIndex = index % 3;
    const victim = members.children[victimIndex]!;
    const moved = [...members.assigned[victimIndex]!];
    const survivors = members.children.map((_, i) => i).filter((i) => i !== victimIndex);
    const before = survivors.map((i) => members.firsts[i]!.length);
    const t = wallNow();
    process.kill(victim.proc.pid!, signal);
    const limit = signal === 'SIGKILL' ? 15_000 : sessionTimeout + 15_000;
    const found = new Map<number, number>();
    const stop = Date.now() + limit;
    while (found.size < moved.length && Date.now() < stop) {
      survivors.forEach((i, k) => {
        for (const f of members.firsts[i]!.slice(before[k])) {
          if (moved.includes(f.partition) && f.at >= t && !found.has(f.partition)) found.set(f.partition, f.at - t);
        }
      });
      await sleep(10);
    }
    return { signal, delays: [...found.values()], timedOut: moved.length - found.size };
  } finally {
    const victim = members.children[index % 3]!;
    victim.kill();
    await stopMembers(members);
  }
}

// ---- the scenario --------------------------------------------------------------------------------

interface RunCtx {
  readonly url: string;
  readonly schema: string;
  readonly admin: pg.Client;
  readonly fetchSize: number;
  readonly perPartitionHigh: number[];
  readonly notes: string[];
}

interface Pair {
  readonly id: string;
  readonly label: string;
  readonly rawLabel: string;
  readonly target: number;
  readonly annals: number[];
  readonly raw: number[];
  readonly ratios: number[];
  readonly cpuAnnals: number[];
  readonly cpuRaw: number[];
}

async function loadBacklog(url: string, schema: string, records: number, log: (l: string) => void): Promise<void> {
  const annals = new Annals({ clientId: 'bench-groups-load', storage: postgres({ connectionString: url, schema, poolSize: 4 }) });
  try {
    await annals.admin().createTopics({ topics: [{ topic: TOPIC, numPartitions: PARTITIONS }] });
    const producer = annals.producer();
    const t0 = Date.now();
    const chunk = 5_000;
    for (let sent = 0; sent < records; sent += chunk) {
      await producer.send({ topic: TOPIC, messages: makeBatch(sent, Math.min(chunk, records - sent)) });
    }
    log(`groups: ${records.toLocaleString('en-US')} records loaded through producer.send (${chunk.toLocaleString('en-US')} per send) in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  } finally {
    await annals.disconnect();
  }
}

export async function runGroupsBench(input: GroupsBenchInput): Promise<GroupsBenchReport | undefined> {
  const records = intEnv('BENCH_GROUP_RECORDS', input.quick ? 60_000 : 1_000_000);
  if (records === 0) return undefined;
  const txRecords = Math.min(records, intEnv('BENCH_GROUP_TX_RECORDS', input.quick ? 12_000 : 24_000));
  const rounds = Math.max(1, intEnv('BENCH_GROUP_ROUNDS', input.quick ? 2 : 3));
  const trials = intEnv('BENCH_GROUP_TRIALS', input.quick ? 2 : 3);
  const sessionTimeout = Math.max(1_000, intEnv('BENCH_GROUP_SESSION_MS', 5_000));
  const fetchSize = Math.max(1, intEnv('BENCH_GROUP_FETCH', 1_000));
  const log = input.log;
  const schema = `annals_bench_g_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: input.url });
  admin.on('error', () => {});
  await admin.connect();
  const t0 = Date.now();
  try {
    await loadBacklog(input.url, schema, records, log);
    const q = (s: string) => `"${schema}".${s}`;
    for (const t of ['bench_effects', 'raw_effects']) {
      await admin.query(`CREATE TABLE ${q(t)} (grp text NOT NULL, partition integer NOT NULL, "offset" bigint NOT NULL, PRIMARY KEY (grp, partition, "offset"))`);
    }
    await admin.query(`CREATE TABLE ${q('raw_offsets')} (grp text NOT NULL, topic text NOT NULL, partition integer NOT NULL, committed_offset bigint NOT NULL, PRIMARY KEY (grp, topic, partition))`);
    await admin.query(`VACUUM ANALYZE ${q('records')}`);
    await admin.query(`VACUUM ANALYZE ${q('partitions')}`);
    const { rows: highs } = await admin.query<{ partition: number; n: string }>(`SELECT partition, next_offset::text AS n FROM ${q('partitions')} WHERE topic = $1 ORDER BY partition`, [TOPIC]);
    const ctx: RunCtx = { url: input.url, schema, admin, fetchSize, perPartitionHigh: highs.map((h) => Number(h.n)), notes: [] };

    const pairs: Pair[] = [];
    const pair = (id: string, label: string, rawLabel: string, target: number) => {
      const p: Pair = { id, label, rawLabel, target, annals: [], raw: [], ratios: [], cpuAnnals: [], cpuRaw: [] };
      pairs.push(p);
      return p;
    };
    const P = {
      noop1: pair('noop1', `no-op handler, 1 member, ${records.toLocaleString('en-US')}-record backlog [records/s]`, `keyset read, ${fetchSize}/query, 1 process`, 0.7),
      noop3: pair('noop3', `no-op handler, 3 members (processes) [records/s]`, `keyset read, ${fetchSize}/query, 3 processes`, 0.7),
      tx1: pair('tx1', `exactly-once (ctx.tx INSERT per record), 1 member, ${txRecords.toLocaleString('en-US')} records [records/s]`, `per ${fetchSize}-batch tx: keyset read + INSERT per record + offset upsert, 1 process`, 0.5),
      tx3: pair('tx3', `exactly-once, 3 members (processes) [records/s]`, `same, 3 processes`, 0.5),
    };
    const capMs = input.quick ? 60_000 : 10 * 60_000;
    // Warm-up: one short pass each way so caches and JIT are warm for both sides.
    await annalsSide(ctx, 1, 'noop', 'g-warmup', Math.min(records, 20_000), capMs);
    await rawSide(ctx, 1, 'read', 'g-warmup', Math.ceil(Math.min(records, 20_000) / PARTITIONS));
    for (let r = 0; r < rounds; r++) {
      const annalsFirst = r % 2 === 0;
      log(`groups: round ${r + 1}/${rounds} (${annalsFirst ? 'Annals' : 'raw'} first)`);
      for (const [p, n, mode, total] of [
        [P.noop1, 1, 'noop', records],
        [P.noop3, 3, 'noop', records],
        [P.tx1, 1, 'tx', txRecords],
        [P.tx3, 3, 'tx', txRecords],
      ] as const) {
        const groupId = `g-${p.id}-r${r}`;
        const perPartition = mode === 'noop' ? records : Math.ceil(total / PARTITIONS);
        let a: Side;
        let w: Side;
        // Each side starts from a settled server: the previous side's writes (the exactly-once runs'
        // effects) flushed by a CHECKPOINT, not paid for by whichever side runs next.
        const settle = async () => {
          await ctx.admin.query('CHECKPOINT').catch(() => {});
          await sleep(500);
        };
        let attempt = 0;
        const runAnnals = () => retryTooMany(log, `${p.id} Annals`, async () => (await settle(), annalsSide(ctx, n, mode, `${groupId}-${attempt++}`, total, capMs)));
        const runRaw = () => retryTooMany(log, `${p.id} raw`, async () => (await settle(), rawSide(ctx, n, mode === 'noop' ? 'read' : 'tx', `${groupId}-raw-${attempt++}`, perPartition)));
        if (annalsFirst) {
          a = await runAnnals();
          w = await runRaw();
        } else {
          w = await runRaw();
          a = await runAnnals();
        }
        p.annals.push(a.rate);
        p.raw.push(w.rate);
        p.ratios.push(a.rate / w.rate);
        p.cpuAnnals.push(a.cpuPer1k);
        p.cpuRaw.push(w.cpuPer1k);
        log(
          `  ${p.id}: annals ${fmt(a.rate)} (${a.records} in ${(a.elapsedMs / 1000).toFixed(1)} s, Node ${a.cpuPer1k.toFixed(1)} ms/1k)  raw ${fmt(w.rate)} (${w.records}, Node ${w.cpuPer1k.toFixed(1)} ms/1k)  ratio ${(a.rate / w.rate).toFixed(2)}`,
        );
      }
    }

    const kills: Trial[] = [];
    const hangs: Trial[] = [];
    for (let i = 0; i < trials; i++) {
      const k = await retryTooMany(log, 'kill trial', () => failoverTrial(ctx, 'SIGKILL', i, sessionTimeout));
      kills.push(k);
      log(`  kill trial ${i + 1}: ${k.delays.map((d) => d.toFixed(0)).join(', ')} ms${k.timedOut ? ` (${k.timedOut} partition(s) not resumed)` : ''}`);
      const h = await retryTooMany(log, 'hang trial', () => failoverTrial(ctx, 'SIGSTOP', i, sessionTimeout));
      hangs.push(h);
      log(`  hang trial ${i + 1}: ${h.delays.map((d) => d.toFixed(0)).join(', ')} ms${h.timedOut ? ` (${h.timedOut} partition(s) not resumed)` : ''}`);
    }

    // ---- report
    const lines: string[] = [];
    lines.push('## Consumer groups (issue 4)');
    lines.push('');
    lines.push(
      `${rounds} rounds alternating which side runs first, after a warm-up; ${records.toLocaleString('en-US')} records (200-byte values, text keys) on ${PARTITIONS} partitions, loaded once through \`producer.send\`; a new group per run, so each reads from the log start. Members are forked processes, started paused and resumed together once the assignment is stable; throughput runs from the first delivery to the last. Raw readers are as many processes, each reading the partitions a member would own, on one connection. ${((Date.now() - t0) / 1000).toFixed(0)} s in all.`,
    );
    lines.push('');
    lines.push('| scenario | Annals (median) | raw baseline | raw (median) | ratio (min–max) | target | result |');
    lines.push('|---|---:|---|---:|---:|---|---|');
    let pass = true;
    for (const p of pairs) {
      const ratio = median(p.ratios);
      const ok = ratio >= p.target;
      pass &&= ok;
      lines.push(
        `| ${p.label} | ${fmt(median(p.annals))} | ${p.rawLabel} | ${fmt(median(p.raw))} | **${ratio.toFixed(2)}×** (${Math.min(...p.ratios).toFixed(2)}–${Math.max(...p.ratios).toFixed(2)}) | ≥ ${p.target}× | ${ok ? 'PASS' : '**FAIL**'} |`,
      );
    }
    const fo = (label: string, ts: Trial[], limitMs: number, limitText: string) => {
      const all = ts.flatMap((t) => t.delays);
      const missing = ts.reduce((s, t) => s + t.timedOut, 0);
      const max = all.length ? Math.max(...all) : NaN;
      const ok = missing === 0 && max <= limitMs;
      pass &&= ok;
      lines.push(
        `| ${label} | p50 ${fmtMs(median(all))}, max ${fmtMs(max)} (${all.length} partitions, ${ts.length} trials${missing ? `, ${missing} not resumed` : ''}) | — | — | — | ${limitText} | ${ok ? 'PASS' : '**FAIL**'} |`,
      );
    };
    if (trials > 0) {
      fo('`kill -9` of 1 of 3 members → its partitions delivering elsewhere', kills, 2_000, '≤ 2 s');
      fo(`SIGSTOP (hung) member, sessionTimeout ${sessionTimeout} ms → its partitions delivering elsewhere`, hangs, sessionTimeout + 2_000, `≤ sessionTimeout + 2 s (${fmtMs(sessionTimeout + 2_000)})`);
    }
    lines.push('');
    lines.push('| figure | ' + Array.from({ length: rounds }, (_, i) => `round ${i + 1}`).join(' | ') + ' |');
    lines.push('|---|' + Array.from({ length: rounds }, () => '---:').join('|') + '|');
    for (const p of pairs) lines.push(`| ${p.id} (Annals / raw) | ${p.annals.map((a, i) => `${fmt(a)} / ${fmt(p.raw[i]!)} = ${p.ratios[i]!.toFixed(2)}`).join(' | ')} |`);
    lines.push('');
    lines.push('Node CPU per 1,000 records (all of a side\'s processes, from first delivery to last; median over rounds): ' + pairs.map((p) => `${p.id} Annals ${median(p.cpuAnnals).toFixed(1)} ms vs raw ${median(p.cpuRaw).toFixed(1)} ms`).join('; ') + '.');
    lines.push('');
    lines.push(
      `Failover trials: 3 members with a slow handler (2 ms pause every 20 records, so partitions always have records waiting), heartbeatInterval ${Math.max(100, Math.floor(sessionTimeout / 5))} ms, sessionTimeout ${sessionTimeout} ms; the victim rotates; delay = first delivery by a survivor of each of the victim's partitions − the moment the signal was sent (wall clock, shared by the processes).`,
    );
    if (ctx.notes.length > 0) {
      lines.push('');
      lines.push('Warnings:');
      for (const n of ctx.notes) lines.push(`- ${n}`);
    }
    const markdown = lines.join('\n') + '\n';
    const out = fileURLToPath(new URL('../results/groups.md', import.meta.url));
    mkdirSync(fileURLToPath(new URL('../results/', import.meta.url)), { recursive: true });
    writeFileSync(out, markdown);
    return { markdown, pass };
  } finally {
    await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`).catch(() => {});
    await admin.end();
  }
}
