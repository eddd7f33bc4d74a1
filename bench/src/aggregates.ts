/**
 * Benchmark (issue 6): event-sourced aggregates.
 *
 * - **Load**: `annals.aggregates.load` of a 100-event stream from a topic holding 1,000,000
 *   events (50 streams of 100 events spread through the log, among ~100,000 other keys), p50/p99
 *   over random streams; a raw `SELECT … WHERE topic, partition, key ORDER BY offset` of the same
 *   rows through the same index as a reference. Target: p99 ≤ 10 ms.
 * - **Append**: `annals.aggregates.append` with an expected version, 8 concurrent writers on 8
 *   distinct streams (in 8 distinct partitions, as the raw writers own theirs), vs raw single-row
 *   INSERT commits on 8 connections into an equally indexed table, alternating which side runs
 *   first. Target: ≥ 0.7 × raw.
 * - **Contended appends** (no target): the same 8 writers, each with 8 streams, the 64 streams
 *   sharing 4 partitions, so other streams' appends commit while one waits for its partition's
 *   head; reported against the same round's raw rate.
 *
 * The log is filled through the raw append path (`storage.append`, 8,000 records per statement,
 * three appenders at once). Environment: BENCH_AGG_EVENTS (default 1,000,000; 100,000 with
 * BENCH_QUICK; 0 skips), BENCH_AGG_ROUNDS (default 5; 2 quick), BENCH_AGG_MS (per side and round,
 * default 3,000; 1,000 quick).
 */
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { Annals, defineEvent, defineTopic, msgpackCodec, partitionFor, type AppendRecord, type PartitionAppend } from '@annals/core';
import { postgres } from '@annals/storage-pg';
import pg from 'pg';
import { z } from 'zod';

export interface AggregatesBenchInput {
  readonly url: string;
  readonly log: (line: string) => void;
  readonly quick: boolean;
}

export interface AggregatesBenchReport {
  readonly markdown: string;
  readonly pass: boolean;
}

const BenchOrderEvent = defineEvent({
  type: 'bench.order-event',
  versions: { 1: z.object({ orderId: z.string(), n: z.number().int(), cents: z.number().int() }) },
});
const LOAD_TOPIC = 'bench-agg';
const WRITE_TOPIC = 'bench-agg-writes';
const loadTopic = defineTopic({ name: LOAD_TOPIC, partitions: 6, events: [BenchOrderEvent], key: (e) => e.orderId, config: { 'retention.ms': -1 } });
const writeTopic = defineTopic({ name: WRITE_TOPIC, partitions: 8, events: [BenchOrderEvent], key: (e) => e.orderId, config: { 'retention.ms': -1 } });
/** The contended variant: 8 writers with 8 streams each, all 64 streams sharing 4 partitions. */
const sharedTopic = defineTopic({ name: 'bench-agg-shared', partitions: 4, events: [BenchOrderEvent], key: (e) => e.orderId, config: { 'retention.ms': -1 } });
const STREAMS_PER_WRITER = 8;
const STREAMS = 50;
const STREAM_LENGTH = 100;
const WRITERS = 8;

function intEnv(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0) throw new Error(`${name} must be an integer ≥ 0, got ${JSON.stringify(raw)}.`);
  return n;
}

const now = () => performance.now();
const median = (xs: readonly number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length === 0 ? NaN : s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
const percentile = (xs: readonly number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s[Math.min(s.length, Math.max(1, Math.ceil((p / 100) * s.length))) - 1]!;
};
const fmt = (n: number) => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : 'n/a');
const ms = (n: number) => (Number.isFinite(n) ? `${n.toFixed(2)} ms` : 'n/a');

/** Fills the load topic: `events` records, every 200th one an event of one of the 50 streams. */
async function fill(annals: Annals<any>, events: number, log: (l: string) => void): Promise<void> {
  const codec = msgpackCodec();
  const enc = new TextEncoder();
  const headers = { 'event-type': enc.encode(BenchOrderEvent.type), 'schema-version': enc.encode('1'), 'content-type': enc.encode(codec.contentType) };
  const filler = new Uint8Array(200).fill(120);
  const spacing = Math.max(1, Math.floor(events / (STREAMS * STREAM_LENGTH)));
  const buffers = new Map<number, AppendRecord[]>();
  const queue: PartitionAppend[] = [];
  let streamEvents = 0;
  for (let i = 0; i < events; i++) {
    let key: string;
    let record: AppendRecord;
    if (i % spacing === 0 && streamEvents < STREAMS * STREAM_LENGTH) {
      const s = streamEvents % STREAMS;
      const n = Math.floor(streamEvents / STREAMS);
      streamEvents++;
      key = `order-${s}`;
      record = { key: enc.encode(key), value: codec.encode({ orderId: key, n, cents: 100 + n }), headers, timestamp: null };
    } else {
      key = `customer-${(i * 7919) % 100_003}`;
      record = { key: enc.encode(key), value: filler, headers: null, timestamp: null };
    }
    const p = partitionFor(enc.encode(key), loadTopic.partitions);
    let buffer = buffers.get(p);
    if (!buffer) buffers.set(p, (buffer = []));
    buffer.push(record);
    if (buffer.length === 8_000) {
      queue.push({ topic: LOAD_TOPIC, partition: p, records: buffer });
      buffers.set(p, []);
    }
  }
  for (const [p, records] of buffers) if (records.length > 0) queue.push({ topic: LOAD_TOPIC, partition: p, records });
  const t0 = now();
  // Three appenders; a partition's batches go in order (each appender takes the next batch of any partition not in flight).
  const busy = new Set<number>();
  const worker = async () => {
    for (;;) {
      const i = queue.findIndex((a) => !busy.has(a.partition));
      if (i < 0) {
        if (queue.length === 0) return;
        await new Promise((r) => setTimeout(r, 1));
        continue;
      }
      const [append] = queue.splice(i, 1);
      busy.add(append!.partition);
      try {
        await annals.storage.append([append!]);
      } finally {
        busy.delete(append!.partition);
      }
    }
  };
  await Promise.all([worker(), worker(), worker()]);
  log(`aggregates: ${events.toLocaleString('en-US')} records (${streamEvents.toLocaleString('en-US')} of them in ${STREAMS} streams) loaded in ${((now() - t0) / 1000).toFixed(1)} s`);
}

/** Eight keys whose streams live in eight distinct partitions of the write topic. */
function writerKeys(): string[] {
  const byPartition = new Map<number, string>();
  const enc = new TextEncoder();
  for (let i = 0; byPartition.size < WRITERS; i++) {
    const key = `writer-${i}`;
    const p = partitionFor(enc.encode(key), writeTopic.partitions);
    if (!byPartition.has(p)) byPartition.set(p, key);
  }
  return [...byPartition.values()];
}

async function closedLoop(workers: number, windowMs: number, op: (w: number) => Promise<void>): Promise<{ ops: number; elapsedMs: number }> {
  let ops = 0;
  const t0 = now();
  const deadline = t0 + windowMs;
  await Promise.all(
    Array.from({ length: workers }, async (_, w) => {
      while (now() < deadline) {
        await op(w);
        ops++;
      }
    }),
  );
  return { ops, elapsedMs: now() - t0 };
}

export async function runAggregatesBench(input: AggregatesBenchInput): Promise<AggregatesBenchReport | undefined> {
  const events = intEnv('BENCH_AGG_EVENTS', input.quick ? 100_000 : 1_000_000);
  if (events === 0) return undefined;
  const rounds = Math.max(1, intEnv('BENCH_AGG_ROUNDS', input.quick ? 2 : 5));
  const windowMs = Math.max(200, intEnv('BENCH_AGG_MS', input.quick ? 1_000 : 3_000));
  const loads = input.quick ? 200 : 500;
  const { log } = input;
  const schema = `annals_bench_agg_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: input.url });
  await admin.connect();
  const annals = new Annals({ clientId: 'bench-aggregates', storage: postgres({ connectionString: input.url, schema, poolSize: 12 }) });
  const raw = await Promise.all(
    Array.from({ length: WRITERS }, async () => {
      const c = new pg.Client({ connectionString: input.url });
      await c.connect();
      return c;
    }),
  );
  try {
    await annals.admin().createTopics({ topics: [loadTopic, writeTopic, sharedTopic] });
    await fill(annals, events, log);
    await admin.query(`VACUUM ANALYZE "${schema}".records`);

    // ---- load ------------------------------------------------------------------------------------
    const pick = (i: number) => `order-${(i * 17) % STREAMS}`;
    for (let i = 0; i < 50; i++) await annals.aggregates.load(loadTopic, pick(i)); // warm-up
    const loadMs: number[] = [];
    for (let i = 0; i < loads; i++) {
      const t0 = now();
      const stream = await annals.aggregates.load(loadTopic, pick(i));
      loadMs.push(now() - t0);
      if (stream.version !== STREAM_LENGTH) throw new Error(`aggregates bench: stream ${pick(i)} has ${stream.version} events, not ${STREAM_LENGTH}`);
    }
    const rawLoadMs: number[] = [];
    const enc = new TextEncoder();
    for (let i = 0; i < loads; i++) {
      const key = pick(i);
      const t0 = now();
      const { rowCount } = await raw[0]!.query(
        `SELECT "offset", "timestamp", value, headers FROM "${schema}".records WHERE topic = $1 AND partition = $2 AND key = $3 ORDER BY "offset"`,
        [LOAD_TOPIC, partitionFor(enc.encode(key), loadTopic.partitions), Buffer.from(key)],
      );
      rawLoadMs.push(now() - t0);
      if (rowCount !== STREAM_LENGTH) throw new Error(`aggregates bench: raw read of ${key} found ${rowCount} rows`);
    }
    const loadP50 = percentile(loadMs, 50);
    const loadP99 = percentile(loadMs, 99);
    log(`aggregates: load p50 ${ms(loadP50)} p99 ${ms(loadP99)} (raw SELECT p50 ${ms(percentile(rawLoadMs, 50))} p99 ${ms(percentile(rawLoadMs, 99))})`);

    // ---- expected-version appends vs raw single-row commits ---------------------------------------
    const rawTable = `"${schema}".raw_records`;
    await admin.query(`CREATE TABLE ${rawTable} (topic text NOT NULL, partition integer NOT NULL, "offset" bigint NOT NULL, "timestamp" timestamptz NOT NULL,
      key bytea, value bytea, headers bytea, PRIMARY KEY (topic, partition, "offset"))`);
    await admin.query(`CREATE INDEX ON ${rawTable} (topic, partition, key, "offset") WHERE key IS NOT NULL`);
    const keys = writerKeys();
    const versions = keys.map(() => 0);
    const rawOffsets = keys.map(() => 0);
    const codec = msgpackCodec();
    const annalsSide = () =>
      closedLoop(WRITERS, windowMs, async (w) => {
        const key = keys[w]!;
        const r = await annals.aggregates.append(writeTopic, key, [{ type: 'bench.order-event', payload: { orderId: key, n: versions[w]!, cents: 100 } }], {
          expectedVersion: versions[w]!,
        });
        versions[w] = r.version;
      });
    const rawSide = () =>
      closedLoop(WRITERS, windowMs, async (w) => {
        const key = keys[w]!;
        const value = codec.encode({ orderId: key, n: rawOffsets[w]!, cents: 100 });
        await raw[w]!.query(`INSERT INTO ${rawTable} (topic, partition, "offset", "timestamp", key, value, headers) VALUES ($1, $2, $3, now(), $4, $5, NULL)`, [
          'raw',
          w,
          rawOffsets[w]!++,
          Buffer.from(key),
          value,
        ]);
      });
    // Contended: each append picks one of its writer's 8 streams; the 64 streams share 4 partitions,
    // so appends to other streams of a partition commit while one waits for its head lock.
    const sharedVersions = keys.map(() => new Array<number>(STREAMS_PER_WRITER).fill(0));
    let pickSeq = 0;
    const sharedSide = () =>
      closedLoop(WRITERS, windowMs, async (w) => {
        const s = (pickSeq = (pickSeq * 1_103_515_245 + 12_345) >>> 0) % STREAMS_PER_WRITER;
        const key = `shared-${w}-${s}`;
        const r = await annals.aggregates.append(sharedTopic, key, [{ type: 'bench.order-event', payload: { orderId: key, n: sharedVersions[w]![s]!, cents: 100 } }], {
          expectedVersion: sharedVersions[w]![s]!,
        });
        sharedVersions[w]![s] = r.version;
      });
    await annalsSide();
    await sharedSide();
    await rawSide(); // warm-up, not recorded
    const annalsRates: number[] = [];
    const rawRates: number[] = [];
    const ratios: number[] = [];
    const roundRows: string[] = [];
    const sharedRates: number[] = [];
    const sharedRatios: number[] = [];
    for (let r = 0; r < rounds; r++) {
      const rawFirst = r % 2 === 1;
      const rate = (x: { ops: number; elapsedMs: number }) => (x.ops * 1000) / x.elapsedMs;
      let a: number;
      let b: number;
      if (rawFirst) {
        b = rate(await rawSide());
        a = rate(await annalsSide());
      } else {
        a = rate(await annalsSide());
        b = rate(await rawSide());
      }
      const c = rate(await sharedSide());
      annalsRates.push(a);
      rawRates.push(b);
      ratios.push(a / b);
      sharedRates.push(c);
      sharedRatios.push(c / b);
      roundRows.push(`| ${r + 1} | ${fmt(a)} | ${fmt(b)} | ${(a / b).toFixed(2)} | ${fmt(c)} | ${(c / b).toFixed(2)} |`);
      log(`  aggregates round ${r + 1}: expected-version appends ${fmt(a)}/s, raw single-row commits ${fmt(b)}/s, ratio ${(a / b).toFixed(2)}; 64 streams on 4 partitions ${fmt(c)}/s (${(c / b).toFixed(2)})`);
    }
    // Every append went through: each stream is dense at the version its writer holds.
    for (const [w, key] of keys.entries()) {
      const { version } = await annals.aggregates.load(writeTopic, key);
      if (version !== versions[w]) throw new Error(`aggregates bench: stream ${key} is at ${version}, its writer expected ${versions[w]}`);
      for (let s = 0; s < STREAMS_PER_WRITER; s++) {
        const shared = await annals.aggregates.load(sharedTopic, `shared-${w}-${s}`);
        if (shared.version !== sharedVersions[w]![s]) throw new Error(`aggregates bench: stream shared-${w}-${s} is at ${shared.version}, its writer expected ${sharedVersions[w]![s]}`);
      }
    }
    const ratio = median(ratios);
    const loadPass = loadP99 <= 10;
    const appendPass = ratio >= 0.7;
    const markdown = [
      `## Event-sourced aggregates (issue 6)`,
      '',
      `Load: \`annals.aggregates.load\` (decode and upcast included) of a ${STREAM_LENGTH}-event stream from a topic holding ${events.toLocaleString('en-US')} records — ${STREAMS} streams spread through the log among ~100,000 other keys, 6 partitions — ${loads} loads of random streams after a warm-up; raw: \`SELECT "offset", "timestamp", value, headers … WHERE topic = $1 AND partition = $2 AND key = $3 ORDER BY "offset"\` of the same rows. ` +
        `Append: \`annals.aggregates.append(topic, key, [event], { expectedVersion })\` in closed loops by ${WRITERS} concurrent writers on ${WRITERS} streams in ${WRITERS} distinct partitions, vs single-row INSERT autocommits on ${WRITERS} connections (each writer its own partition) into a table with the same columns, primary key and stream index; ${rounds} round(s) of ${windowMs} ms per side, alternating which side runs first, after a warm-up. ` +
        `Contended (no target): the same writers, each appending to one of its ${STREAMS_PER_WRITER} streams at a time, the ${WRITERS * STREAMS_PER_WRITER} streams sharing ${sharedTopic.partitions} partitions — appends to other streams of a partition commit while one waits for the partition's head; measured after the other two in each round, against the same round's raw rate.`,
      '',
      '| figure | Annals | raw | ratio | target | result |',
      '|---|---:|---:|---:|---|---|',
      `| load of a ${STREAM_LENGTH}-event stream, p50 | ${ms(loadP50)} | ${ms(percentile(rawLoadMs, 50))} | ${(loadP50 / percentile(rawLoadMs, 50)).toFixed(1)}× raw | | |`,
      `| load of a ${STREAM_LENGTH}-event stream, p99 | ${ms(loadP99)} | ${ms(percentile(rawLoadMs, 99))} | ${(loadP99 / percentile(rawLoadMs, 99)).toFixed(1)}× raw | ≤ 10 ms | ${loadPass ? 'PASS' : '**FAIL**'} |`,
      `| expected-version appends, ${WRITERS} writers [appends/s] | ${fmt(median(annalsRates))} | ${fmt(median(rawRates))} | **${ratio.toFixed(2)}×** (${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)}) | ≥ 0.70× | ${appendPass ? 'PASS' : '**FAIL**'} |`,
      `| expected-version appends, ${WRITERS} writers, ${WRITERS * STREAMS_PER_WRITER} streams on ${sharedTopic.partitions} partitions [appends/s] | ${fmt(median(sharedRates))} | ${fmt(median(rawRates))} | ${median(sharedRatios).toFixed(2)}× (${Math.min(...sharedRatios).toFixed(2)}–${Math.max(...sharedRatios).toFixed(2)}) | — | |`,
      '',
      '| round | appends/s | raw commits/s | ratio | contended appends/s | ratio |',
      '|---|---:|---:|---:|---:|---:|',
      ...roundRows,
      '',
    ].join('\n');
    return { markdown, pass: loadPass && appendPass };
  } finally {
    await annals.disconnect().catch(() => {});
    await Promise.all(raw.map((c) => c.end().catch(() => {})));
    await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`).catch((e: unknown) => log(`cleanup: ${String(e)}`));
    await admin.end();
  }
}

// `node bench/dist/aggregates.js` runs this scenario alone.
if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const log = (line: string) => process.stderr.write(`[bench] ${line}\n`);
  runAggregatesBench({ url: process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test', log, quick: process.env.BENCH_QUICK === '1' }).then(
    (report) => {
      if (report) process.stdout.write(`\n${report.markdown}`);
    },
    (error: unknown) => {
      log(`failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
      process.exitCode = 1;
    },
  );
}
