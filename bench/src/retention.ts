/**
 * Benchmark (issue 7): retention under load. Expire a backlog of 1,000,000 records while a
 * producer publishes at a steady rate:
 *
 * - **time to reclaim**: the duration of the cleaner pass that expires the backlog (log start
 *   moved, whole segments detached `CONCURRENTLY` and dropped, the rest deleted in chunks);
 * - **table size** of the topic before and after (every table of its partition tree, indexes and
 *   TOAST included: `pg_partition_tree` + `pg_total_relation_size`), with no VACUUM of any kind;
 * - **the producer's latency** (awaited single sends, open loop at a fixed rate) while the pass
 *   runs, against a window without cleanup **in the same round**. Target: p99 during cleanup
 *   ≤ 1.5 × p99 without.
 *
 * Every round loads a fresh topic (retention.ms = 1 h, segments of ~9% of the backlog, so ~11
 * whole segments are dropped and the rows of the twelfth below the log start are deleted), lets a
 * real pass note the time, adds a recent tail of one segment that stays, then runs the producer
 * through two windows — without cleanup, and
 * during `runOnce({ now: Date.now() + 2 h })`, which judges the whole backlog past retention —
 * alternating which window comes first. `pg_stat_activity` is sampled every 20 ms in both windows
 * (the producer's and the cleaner's sessions) to show what they wait on.
 *
 * Environment:
 * - BENCH_RETENTION_RECORDS     backlog per round (default 1,000,000; 100,000 with BENCH_QUICK; 0 skips)
 * - BENCH_RETENTION_ROUNDS      rounds (default 3; 2 with BENCH_QUICK)
 * - BENCH_RETENTION_RATE        producer sends per second (default 300)
 * - BENCH_RETENTION_BASE_MS     the window without cleanup (default 8,000; 3,000 with BENCH_QUICK)
 * - BENCH_RETENTION_PARTITIONS  partitions of the topic (default 1)
 * - BENCH_RETENTION_SEGMENT     segment.records (default 9% of a partition's backlog, ≥ 1,000)
 * - BENCH_RETENTION_CHUNK       the cleaner's chunkRecords (default 5,000, the cleaner's default)
 * - BENCH_RETENTION_TRACE=1     log, per cleaner statement kind, its time and the latency of the
 *                               producer's sends that overlapped it (wraps pg.Client#query)
 */
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { Annals, type Producer } from '@annals/core';
import { postgres } from '@annals/storage-pg';
import pg from 'pg';
import { makeKey, makeValue, median, now, percentile, sleep } from './common.js';

export interface RetentionBenchInput {
  readonly url: string;
  readonly log: (line: string) => void;
  readonly quick: boolean;
}

export interface RetentionBenchReport {
  readonly markdown: string;
  readonly pass: boolean;
}

const HOUR = 3_600_000;
const PRODUCER_APP = 'bench-retention-producer';
const CLEANER_APP = 'annals:cleaner';

function intEnv(name: string, fallback: number, min = 0): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min) throw new Error(`${name} must be an integer ≥ ${min}, got ${JSON.stringify(raw)}.`);
  return n;
}

const fmt = (n: number) => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : 'n/a');
const ms = (n: number) => (Number.isFinite(n) ? `${n.toFixed(2)} ms` : 'n/a');
const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MB`;

function withApplicationName(url: string, name: string): string {
  const u = new URL(url);
  u.searchParams.set('application_name', name);
  return u.toString();
}

// ---- the steady producer -------------------------------------------------------------------------

interface Sample {
  readonly at: number;
  readonly latency: number;
}

/** Sends one message every 1000/rate ms without waiting for the previous one; records each ack's latency. */
class SteadyProducer {
  readonly samples: Sample[] = [];
  errors = 0;
  sent = 0;
  #running = false;
  #loop: Promise<void> | undefined;
  #pending = new Set<Promise<void>>();

  constructor(
    private readonly producer: Producer,
    private readonly topic: string,
    private readonly rate: number,
    private readonly idBase: number,
  ) {}

  start(): void {
    this.#running = true;
    this.#loop = this.#run();
  }

  async #run(): Promise<void> {
    const interval = 1000 / this.rate;
    const t0 = now();
    let n = 0;
    while (this.#running) {
      const due = Math.floor((now() - t0) / interval) + 1;
      while (n < due && this.#running) {
        const id = this.idBase + n++;
        const at = now();
        this.sent++;
        const p = this.producer
          .send({ topic: this.topic, messages: [{ key: makeKey(id), value: makeValue(id) }] })
          .then(
            () => void this.samples.push({ at, latency: now() - at }),
            () => void this.errors++,
          )
          .finally(() => this.#pending.delete(p));
        this.#pending.add(p);
      }
      await sleep(1);
    }
  }

  /** Latencies of the sends started in [from, to). */
  between(from: number, to: number): number[] {
    return this.samples.filter((s) => s.at >= from && s.at < to).map((s) => s.latency);
  }

  async stop(): Promise<void> {
    this.#running = false;
    await this.#loop;
    await Promise.allSettled([...this.#pending]);
  }
}

// ---- wait-event sampling --------------------------------------------------------------------------

/** Samples what the producer's and the cleaner's sessions are doing, every `everyMs`, until stopped. */
class ActivitySampler {
  readonly counts = new Map<string, number>();
  /** Cleaner statements seen while a producer session waited on a lock. */
  readonly blockers = new Map<string, number>();
  samples = 0;
  /** Sum over samples of other sessions' active client backends (other agents' work on this server). */
  othersSum = 0;
  #running = false;
  #loop: Promise<void> | undefined;

  constructor(
    private readonly client: pg.Client,
    private readonly everyMs: number,
    /** Our schema: only the cleaner session working on it is ours (other clients' cleaners share the application name). */
    private readonly schema: string,
  ) {}

  /** Mean number of other sessions' active client backends per sample. */
  get others(): number {
    return this.samples === 0 ? Number.NaN : this.othersSum / this.samples;
  }

  start(): void {
    this.#running = true;
    this.#loop = (async () => {
      while (this.#running) {
        const { rows } = await this.client.query<{ app: string; state: string; wtype: string | null; wevent: string | null; query: string; blocked_by: string | null; waiting_for: string | null }>(
          `SELECT a.application_name AS app, a.state, a.wait_event_type AS wtype, a.wait_event AS wevent, left(regexp_replace(a.query, '\\s+', ' ', 'g'), 70) AS query,
             (SELECT string_agg(DISTINCT b.application_name || ': ' || left(regexp_replace(b.query, '\\s+', ' ', 'g'), 70), ' | ')
                FROM pg_stat_activity b WHERE b.pid = ANY (pg_blocking_pids(a.pid))) AS blocked_by,
             (SELECT string_agg(DISTINCT l.locktype || ' ' || l.mode || coalesce(' on ' || l.relation::regclass::text, '') ||
                       coalesce(' class ' || l.classid::regclass::text || ' obj ' || l.objid, ''), ', ')
                FROM pg_locks l WHERE l.pid = a.pid AND NOT l.granted) AS waiting_for
           FROM pg_stat_activity a
           WHERE a.datname = current_database() AND a.state NOT IN ('idle')
             AND (a.application_name = $1 OR (a.application_name = $2 AND strpos(a.query, $3) > 0))`,
          [PRODUCER_APP, CLEANER_APP, this.schema],
        );
        const { rows: others } = await this.client.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM pg_stat_activity
           WHERE backend_type = 'client backend' AND state = 'active' AND pid <> pg_backend_pid()
             AND application_name <> $1 AND NOT (application_name = $2 AND strpos(query, $3) > 0)`,
          [PRODUCER_APP, CLEANER_APP, this.schema],
        );
        this.othersSum += others[0]?.n ?? 0;
        this.samples++;
        for (const r of rows) {
          const who = r.app === PRODUCER_APP ? 'producer' : 'cleaner';
          const what = r.wtype ? `${r.wtype}:${r.wevent}` : 'on CPU';
          const waiting = r.waiting_for ? ` [${r.waiting_for}]` : '';
          const key =
            r.state === 'active' && (who === 'cleaner' || r.wtype === 'Lock') ? `${who} ${what}${waiting} — ${r.query}` : `${who} ${r.state === 'active' ? what : r.state}`;
          this.counts.set(key, (this.counts.get(key) ?? 0) + 1);
          if (r.blocked_by) this.blockers.set(`${who} blocked by ${r.blocked_by}`, (this.blockers.get(`${who} blocked by ${r.blocked_by}`) ?? 0) + 1);
        }
        await sleep(this.everyMs);
      }
    })();
  }

  async stop(): Promise<void> {
    this.#running = false;
    await this.#loop;
  }

  top(n: number): string[] {
    return [...this.counts.entries(), ...this.blockers.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, n)
      .map(([k, c]) => `${k} (${c}/${this.samples})`);
  }
}

// ---- statement trace (BENCH_RETENTION_TRACE=1) ----------------------------------------------------

interface Traced {
  readonly kind: string;
  readonly start: number;
  end: number;
}

/**
 * Records when each statement of the cleaner's session ran, by wrapping `pg.Client#query` for
 * clients whose application_name is the cleaner's. For finding which step the producer's slow
 * sends overlap; off unless BENCH_RETENTION_TRACE=1.
 */
const trace: Traced[] = [];
function installTrace(): void {
  const proto = pg.Client.prototype as unknown as { query: (...args: unknown[]) => unknown; __traced?: boolean };
  if (proto.__traced) return;
  proto.__traced = true;
  const original = proto.query;
  proto.query = function (this: { connectionParameters?: { application_name?: string } }, ...args: unknown[]) {
    const result = original.apply(this, args);
    const text = typeof args[0] === 'string' ? args[0] : '';
    if (this.connectionParameters?.application_name === CLEANER_APP && result instanceof Promise) {
      const entry: Traced = { kind: statementKind(text), start: now(), end: Number.NaN };
      trace.push(entry);
      result.then(
        () => void (entry.end = now()),
        () => void (entry.end = now()),
      );
    }
    return result;
  };
}

function statementKind(text: string): string {
  const t = text.replace(/\s+/g, ' ').trim();
  if (t.startsWith('ALTER TABLE') && t.includes('DETACH')) return 'DETACH PARTITION CONCURRENTLY';
  if (t.startsWith('DROP TABLE')) return 'DROP TABLE';
  if (t.startsWith('DELETE FROM') && t.includes('"segments"')) return 'forget segment';
  if (t.startsWith('WITH doomed') && t.includes('value IS NULL')) return 'remove tombstones';
  if (t.startsWith('WITH doomed') || t.startsWith('WITH gone AS ( DELETE')) return 'delete below log start (chunk)';
  if (t.startsWith('SELECT min("offset")')) return 'first stored offset';
  if (t.startsWith('INSERT INTO') && t.includes('time_index')) return 'note time';
  if (t.startsWith('DELETE FROM') && t.includes('time_index')) return 'prune time notes';
  if (t.startsWith('WITH clk')) return 'clean state';
  if (t.startsWith('WITH target')) return 'move log start';
  if (t.startsWith('SELECT s.partition')) return 'list segments';
  return t.slice(0, 40);
}

/** Per statement kind: time spent, and the p99 / max latency of the producer's sends that overlapped it. */
function traceReport(samples: readonly Sample[], from: number, to: number): string[] {
  const inWindow = trace.filter((e) => e.start >= from && e.start < to);
  const kinds = new Map<string, Traced[]>();
  for (const e of inWindow) kinds.set(e.kind, [...(kinds.get(e.kind) ?? []), e]);
  const lines: string[] = [];
  for (const [kind, es] of kinds) {
    const overlapping = samples.filter((s) => es.some((e) => s.at < e.end && s.at + s.latency > e.start)).map((s) => s.latency);
    const total = es.reduce((sum, e) => sum + (e.end - e.start), 0);
    lines.push(`${kind}: ${es.length}× ${fmt(total)} ms in all (max ${fmt(Math.max(...es.map((e) => e.end - e.start)))} ms); sends overlapping: ${overlapping.length}, p99 ${ms(percentile(overlapping, 99))}, max ${ms(Math.max(...overlapping))}`);
  }
  return lines;
}

// ---- loading and sizes ----------------------------------------------------------------------------

/**
 * Loads the backlog server-side, the fastest way the machine allows: for each partition, its
 * segments up to one past the end (`ensure_segments`, as appends would make them), then
 * `INSERT … SELECT FROM generate_series` of rows shaped like the other scenarios' events (text key
 * of ~10,000 distinct customers, a 200-byte value, no headers), in statements of one segment each,
 * and the head row moved to the end. What is measured afterwards does not depend on how the rows
 * got there; appending 1,000,000 rows through `storage.append` took minutes on this shared machine.
 */
async function loadRecords(client: pg.Client, schema: string, topic: string, partitions: number, records: number, segment: number): Promise<number> {
  const s = `"${schema}"`;
  const t0 = now();
  const filler = makeValue(0).slice(2); // 198 bytes
  for (let p = 0; p < partitions; p++) {
    const { rows: heads } = await client.query<{ next_offset: string }>(`SELECT next_offset::text AS next_offset FROM ${s}.partitions WHERE topic = $1 AND partition = $2`, [topic, p]);
    const start = Number(heads[0]!.next_offset);
    const n = start + Math.floor(records / partitions) + (p < records % partitions ? 1 : 0);
    await client.query(`SELECT ${s}.ensure_segments($1, $2, $3::bigint + $4::bigint, $4::bigint)`, [topic, p, n, segment]);
    for (let from = start; from < n; from += segment) {
      const to = Math.min(n, from + segment);
      await client.query(
        `INSERT INTO ${s}.records (topic, partition, "offset", "timestamp", key, value, headers)
         SELECT $1, $2, g, now(), convert_to('customer-' || ((g * 2654435761) % 10007), 'UTF8'), convert_to(g || '|' || $5, 'UTF8'), NULL
         FROM generate_series($3::bigint, $4::bigint - 1) g`,
        [topic, p, from, to, filler],
      );
    }
    await client.query(`UPDATE ${s}.partitions SET next_offset = $3 WHERE topic = $1 AND partition = $2`, [topic, p, n]);
  }
  return now() - t0;
}

interface TopicSize {
  readonly bytes: number;
  readonly tables: number;
}

/** On-disk size of every table in the topic's partition tree (heap, indexes, TOAST), and the number of segment tables. */
async function topicSize(client: pg.Client, schema: string, topic: string): Promise<TopicSize> {
  const { rows } = await client.query<{ bytes: string; tables: number }>(
    `SELECT coalesce(sum(pg_total_relation_size(t.relid)), 0)::text AS bytes, (count(*) FILTER (WHERE t.isleaf))::int AS tables
     FROM "${schema}".topics tp, pg_partition_tree(to_regclass(format('%I.%I', $1::text, 'records_t' || tp.id))) t
     WHERE tp.name = $2`,
    [schema, topic],
  );
  return { bytes: Number(rows[0]?.bytes ?? 0), tables: rows[0]?.tables ?? 0 };
}

// ---- one round ------------------------------------------------------------------------------------

interface RoundResult {
  readonly loadMs: number;
  readonly passMs: number;
  readonly before: TopicSize;
  readonly after: TopicSize;
  readonly segmentsDropped: number;
  readonly recordsExpired: number;
  readonly logStart: bigint;
  readonly baseP50: number;
  readonly baseP99: number;
  readonly baseN: number;
  readonly cleanP50: number;
  readonly cleanP99: number;
  readonly cleanMax: number;
  readonly cleanN: number;
  readonly errors: number;
  readonly baseWaits: string[];
  readonly cleanWaits: string[];
  /** Mean active client backends of other sessions on the server, per window. */
  readonly baseOthers: number;
  readonly cleanOthers: number;
  readonly cleanupFirst: boolean;
}

interface Setup {
  readonly url: string;
  readonly schema: string;
  readonly log: (line: string) => void;
  readonly loader: Annals<any>;
  readonly cleaner: Annals<any>;
  readonly producerClient: Annals<any>;
  readonly admin: pg.Client;
  readonly sampler: pg.Client;
  readonly records: number;
  readonly partitions: number;
  readonly segment: number;
  readonly rate: number;
  readonly baseMs: number;
  readonly traced: boolean;
}

async function round(s: Setup, index: number, cleanupFirst: boolean): Promise<RoundResult> {
  const topic = `bench-retention-${index}`;
  await s.loader.admin().createTopics({
    topics: [
      {
        topic,
        numPartitions: s.partitions,
        configEntries: [
          { name: 'retention.ms', value: String(HOUR) },
          { name: 'segment.records', value: String(s.segment) },
        ],
      },
    ],
  });
  const idBase = 1_000_000_000 * (index + 1);
  const loadMs = await loadRecords(s.admin, s.schema, topic, s.partitions, s.records, s.segment);
  s.log(`retention round ${index + 1}: ${fmt(s.records)} records loaded in ${(loadMs / 1000).toFixed(1)} s (${fmt((s.records * 1000) / loadMs)}/s)`);
  // A real pass notes the time: "everything below the log end was appended by now".
  const noted = await s.cleaner.cleaner.runOnce({ topics: [topic] });
  if (!noted.ran) throw new Error(`retention bench: the cleaner did not run (${noted.reason})`);
  if (noted.report.partitions.some((p) => p.logStartMovedBy !== null)) throw new Error('retention bench: the first pass moved a log start');
  // A recent tail, one segment per partition, appended after the note: it stays. The log start
  // then falls inside a full segment, whose rows below it the pass deletes, as in a log that has
  // been running for a while (the segment being written is never touched).
  await loadRecords(s.admin, s.schema, topic, s.partitions, s.segment * s.partitions, s.segment);
  // An hour-old backlog has long been through autovacuum: do it now, so that it neither lands in
  // one window only nor makes a DETACH wait for its cancellation (deadlock_timeout). Then flush
  // the load's WAL, so that a checkpoint does not land in one window only either.
  const { rows: ids } = await s.admin.query<{ id: number }>(`SELECT id FROM "${s.schema}".topics WHERE name = $1`, [topic]);
  await s.admin.query(`VACUUM (ANALYZE) "${s.schema}"."records_t${ids[0]!.id}"`);
  await s.admin.query('CHECKPOINT').catch((e: unknown) => s.log(`CHECKPOINT: ${String(e)}`));
  const before = await topicSize(s.admin, s.schema, topic);

  const producer = s.producerClient.producer();
  await producer.connect();
  const steady = new SteadyProducer(producer, topic, s.rate, idBase + s.records);
  steady.start();
  await sleep(1_000); // warm-up: connections, plans

  const activity = async (fn: () => Promise<void>): Promise<{ from: number; to: number; waits: string[]; others: number }> => {
    const sampler = new ActivitySampler(s.sampler, 20, s.schema);
    sampler.start();
    const from = now();
    try {
      await fn();
    } finally {
      await sampler.stop();
    }
    return { from, to: now(), waits: sampler.top(6), others: sampler.others };
  };
  let report: Awaited<ReturnType<typeof s.cleaner.cleaner.runOnce>> | undefined;
  const cleanup = () =>
    activity(async () => {
      report = await s.cleaner.cleaner.runOnce({ topics: [topic], now: Date.now() + 2 * HOUR });
    });
  const baseline = () => activity(() => sleep(s.baseMs));
  let clean: { from: number; to: number; waits: string[]; others: number };
  let base: { from: number; to: number; waits: string[]; others: number };
  if (cleanupFirst) {
    clean = await cleanup();
    await sleep(500);
    base = await baseline();
  } else {
    base = await baseline();
    clean = await cleanup();
  }
  await sleep(200);
  await steady.stop();
  await producer.disconnect();
  if (!report?.ran) throw new Error(`retention bench: the expiring pass did not run`);
  const after = await topicSize(s.admin, s.schema, topic);
  const parts = report.report.partitions;
  const offsets = await s.loader.admin().fetchTopicOffsets(topic);
  const logStart = offsets.reduce((sum, p) => sum + BigInt(p.low), 0n);
  if (logStart !== BigInt(s.records)) throw new Error(`retention bench: the log start moved to ${logStart}, not to the ${s.records} records noted`);
  if (steady.errors > 0) throw new Error(`retention bench: ${steady.errors} producer sends failed`);

  const baseLat = steady.between(base.from, base.to);
  const cleanLat = steady.between(clean.from, clean.to);
  const result: RoundResult = {
    loadMs,
    passMs: report.report.durationMs,
    before,
    after,
    segmentsDropped: parts.reduce((n, p) => n + p.segmentsDropped, 0),
    recordsExpired: parts.reduce((n, p) => n + p.recordsExpired, 0),
    logStart,
    baseP50: percentile(baseLat, 50),
    baseP99: percentile(baseLat, 99),
    baseN: baseLat.length,
    cleanP50: percentile(cleanLat, 50),
    cleanP99: percentile(cleanLat, 99),
    cleanMax: Math.max(...cleanLat),
    cleanN: cleanLat.length,
    errors: steady.errors,
    baseWaits: base.waits,
    cleanWaits: clean.waits,
    baseOthers: base.others,
    cleanOthers: clean.others,
    cleanupFirst,
  };
  s.log(
    `retention round ${index + 1} (${cleanupFirst ? 'cleanup first' : 'baseline first'}): pass ${fmt(result.passMs)} ms, ${result.segmentsDropped} segments dropped, ${fmt(result.recordsExpired)} rows deleted; ` +
      `size ${mb(before.bytes)} (${before.tables} tables) → ${mb(after.bytes)} (${after.tables}); ` +
      `p50/p99 baseline ${ms(result.baseP50)}/${ms(result.baseP99)} (n=${result.baseN}), during cleanup ${ms(result.cleanP50)}/${ms(result.cleanP99)} (n=${result.cleanN}, max ${ms(result.cleanMax)}); ratio ${(result.cleanP99 / result.baseP99).toFixed(2)}; other sessions' active backends ${result.baseOthers.toFixed(1)} / ${result.cleanOthers.toFixed(1)} (mean, baseline / cleanup)`,
  );
  s.log(`  waits during cleanup: ${result.cleanWaits.join('; ') || 'none'}`);
  if (s.traced) for (const line of traceReport(steady.samples, clean.from, clean.to)) s.log(`  trace: ${line}`);
  s.log(`  waits in baseline: ${result.baseWaits.join('; ') || 'none'}`);
  await s.loader.admin().deleteTopics({ topics: [topic] });
  return result;
}

// ---- the scenario ---------------------------------------------------------------------------------

export async function runRetentionBench(input: RetentionBenchInput): Promise<RetentionBenchReport | undefined> {
  const records = intEnv('BENCH_RETENTION_RECORDS', input.quick ? 100_000 : 1_000_000);
  if (records === 0) return undefined;
  const rounds = Math.max(1, intEnv('BENCH_RETENTION_ROUNDS', input.quick ? 2 : 3));
  const rate = Math.max(1, intEnv('BENCH_RETENTION_RATE', 300));
  const baseMs = Math.max(500, intEnv('BENCH_RETENTION_BASE_MS', input.quick ? 3_000 : 8_000));
  const partitions = Math.max(1, intEnv('BENCH_RETENTION_PARTITIONS', 1));
  const segment = Math.max(1_000, intEnv('BENCH_RETENTION_SEGMENT', Math.floor((records / partitions) * 0.09)));
  const chunk = Math.max(1, intEnv('BENCH_RETENTION_CHUNK', 5_000));
  const traced = process.env.BENCH_RETENTION_TRACE === '1';
  if (traced) installTrace();
  const { log, url } = input;
  const schema = `annals_bench_ret_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: url });
  await admin.connect();
  const samplerClient = new pg.Client({ connectionString: url });
  await samplerClient.connect();
  const loader = new Annals({ clientId: 'bench-retention-loader', cleaner: false, storage: postgres({ connectionString: url, schema, poolSize: 4 }) });
  const cleaner = new Annals({ clientId: 'bench-retention-cleaner', cleaner: { chunkRecords: chunk }, storage: postgres({ connectionString: url, schema, migrate: false, poolSize: 2 }) });
  const producerClient = new Annals({
    clientId: 'bench-retention-producer',
    cleaner: false,
    storage: postgres({ connectionString: withApplicationName(url, PRODUCER_APP), schema, migrate: false, poolSize: 4 }),
  });
  try {
    await loader.connect();
    await cleaner.connect();
    await cleaner.cleaner.stop(); // no interval loop: only the passes this benchmark runs
    await producerClient.connect();
    const setup: Setup = { url, schema, log, loader, cleaner, producerClient, admin, sampler: samplerClient, records, partitions, segment, rate, baseMs, traced };
    log(`retention: ${fmt(records)} records per round in ${partitions} partition(s), segment.records ${fmt(segment)}, producer ${rate} sends/s, chunkRecords ${fmt(chunk)}, ${rounds} round(s)`);
    const results: RoundResult[] = [];
    for (let r = 0; r < rounds; r++) results.push(await round(setup, r, r % 2 === 1));

    const ratios = results.map((r) => r.cleanP99 / r.baseP99);
    const ratio = median(ratios);
    const reclaimed = results.map((r) => (r.before.bytes - r.after.bytes) / r.before.bytes);
    const p99Pass = ratio <= 1.5;
    const spacePass = results.every((r) => r.after.bytes < r.before.bytes * 0.5);
    const med = (f: (r: RoundResult) => number) => median(results.map(f));
    const markdown = [
      `## Retention under load (issue 7)`,
      '',
      `Each round loads ${fmt(records)} records (~200-byte values, ${partitions} partition(s), \`retention.ms\` 1 h, \`segment.records\` ${fmt(segment)}) into a fresh topic (server-side \`INSERT … SELECT\`, then plain VACUUM ANALYZE and CHECKPOINT, as an hour-old backlog would have had), lets a real cleaner pass note the time, adds a recent tail of one segment per partition that stays, then runs a producer at ${rate} awaited single sends/s (open loop, same topic) through two windows: ${fmt(baseMs)} ms without cleanup, and one \`cleaner.runOnce({ now: Date.now() + 2 h })\` pass (chunkRecords ${fmt(chunk)}) that expires the whole backlog — alternating which comes first. ` +
        `Size: \`pg_total_relation_size\` summed over the topic's \`pg_partition_tree\` (heap, indexes, TOAST), before and after the pass, no VACUUM of any kind. ${rounds} round(s); medians.`,
      '',
      '| figure | median | rounds | target | result |',
      '|---|---:|---|---|---|',
      `| time to reclaim (the expiring pass) | ${fmt(med((r) => r.passMs))} ms | ${results.map((r) => fmt(r.passMs)).join(' / ')} | | |`,
      `| topic size before → after | ${mb(med((r) => r.before.bytes))} → ${mb(med((r) => r.after.bytes))} | ${results.map((r) => `${mb(r.before.bytes)} → ${mb(r.after.bytes)}`).join(' / ')} | reclaimed without VACUUM FULL | ${spacePass ? 'PASS' : '**FAIL**'} (${(median(reclaimed) * 100).toFixed(1)}% returned) |`,
      `| segments dropped / rows deleted per pass | ${fmt(med((r) => r.segmentsDropped))} / ${fmt(med((r) => r.recordsExpired))} | ${results.map((r) => `${r.segmentsDropped}/${fmt(r.recordsExpired)}`).join(' / ')} | | |`,
      `| producer p50 without / during cleanup | ${ms(med((r) => r.baseP50))} / ${ms(med((r) => r.cleanP50))} | ${results.map((r) => `${ms(r.baseP50)} / ${ms(r.cleanP50)}`).join(' · ')} | | |`,
      `| producer p99 without / during cleanup | ${ms(med((r) => r.baseP99))} / ${ms(med((r) => r.cleanP99))} | ${results.map((r) => `${ms(r.baseP99)} / ${ms(r.cleanP99)}`).join(' · ')} | | |`,
      `| **p99 during / p99 without** (same round) | **${ratio.toFixed(2)}×** | ${ratios.map((x) => x.toFixed(2)).join(' / ')} | ≤ 1.5× | ${p99Pass ? 'PASS' : '**FAIL**'} |`,
      '',
      '| round | order | load | pass | dropped / deleted | size before → after | sends (base / cleanup) | p99 base / cleanup / max cleanup | ratio | other sessions active (base / cleanup) |',
      '|---|---|---:|---:|---:|---|---:|---|---:|---:|',
      ...results.map(
        (r, i) =>
          `| ${i + 1} | ${r.cleanupFirst ? 'cleanup first' : 'baseline first'} | ${(r.loadMs / 1000).toFixed(1)} s | ${fmt(r.passMs)} ms | ${r.segmentsDropped} / ${fmt(r.recordsExpired)} | ${mb(r.before.bytes)} (${r.before.tables}) → ${mb(r.after.bytes)} (${r.after.tables}) | ${r.baseN} / ${r.cleanN} | ${ms(r.baseP99)} / ${ms(r.cleanP99)} / ${ms(r.cleanMax)} | ${(r.cleanP99 / r.baseP99).toFixed(2)} | ${r.baseOthers.toFixed(1)} / ${r.cleanOthers.toFixed(1)} |`,
      ),
      '',
      "Other sessions active: the mean number of other clients' active backends on the server per 20 ms sample (work of other sessions sharing the machine, i.e. noise).",
      '',
      'Most frequent session states sampled every 20 ms (`pg_stat_activity`, producer and cleaner sessions), round 1:',
      '',
      `- during cleanup: ${results[0]!.cleanWaits.join('; ') || 'none'}`,
      `- without cleanup: ${results[0]!.baseWaits.join('; ') || 'none'}`,
      '',
    ].join('\n');
    return { markdown, pass: p99Pass && spacePass };
  } finally {
    await producerClient.disconnect().catch(() => {});
    await cleaner.disconnect().catch(() => {});
    await loader.disconnect().catch(() => {});
    await samplerClient.end().catch(() => {});
    await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`).catch((e: unknown) => log(`cleanup: ${String(e)}`));
    await admin.end();
  }
}

// `node bench/dist/retention.js` runs this scenario alone.
if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const log = (line: string) => process.stderr.write(`[bench] ${line}\n`);
  runRetentionBench({ url: process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test', log, quick: process.env.BENCH_QUICK === '1' }).then(
    (report) => {
      if (report) process.stdout.write(`\n${report.markdown}`);
    },
    (error: unknown) => {
      log(`failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
      process.exitCode = 1;
    },
  );
}
