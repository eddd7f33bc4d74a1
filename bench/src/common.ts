/**
 * Shared pieces of the benchmark: settings, the events, the raw-Postgres baseline table and its
 * writers, and small statistics helpers. Used by the orchestrator (run.ts) and the forked
 * single-send workers (worker.ts).
 */
import { performance } from 'node:perf_hooks';
import { partitionFor } from '@annals/core';
import pg from 'pg';

// ---- settings -----------------------------------------------------------------------------------

function intEnv(name: string, fallback: number, min: number, max: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max) throw new Error(`${name} must be an integer in [${min}, ${max}], got ${JSON.stringify(raw)}.`);
  return n;
}

export interface BenchSettings {
  readonly quick: boolean;
  readonly rounds: number;
  /** (a) 1,000-message sends per round and side, and a time cap per side. */
  readonly batchCalls: number;
  readonly batchSize: number;
  readonly batchCapMs: number;
  /** (b) measurement window per side, and a cap on sends per window. */
  readonly singleMs: number;
  readonly singleMaxSends: number;
  readonly senders: number;
  /** (c) backlog size and fetch size. */
  readonly backlog: number;
  readonly fetchSize: number;
  readonly fetchCapMs: number;
  /** (d) publish rate, duration, and the raw NOTIFY baseline duration. */
  readonly latencyRate: number;
  readonly latencyMs: number;
  readonly notifyMs: number;
  readonly partitions: number;
}

export function loadSettings(): BenchSettings {
  const quick = process.env.BENCH_QUICK === '1' || process.env.BENCH_QUICK === 'true';
  return Object.freeze({
    quick,
    rounds: intEnv('BENCH_ROUNDS', quick ? 2 : 5, 1, 50),
    batchCalls: intEnv('BENCH_BATCH_CALLS', quick ? 5 : 30, 1, 1000),
    batchSize: 1000,
    batchCapMs: quick ? 3_000 : 8_000,
    singleMs: intEnv('BENCH_SINGLE_MS', quick ? 300 : 2_000, 100, 60_000),
    singleMaxSends: 50_000,
    senders: 8,
    backlog: intEnv('BENCH_BACKLOG', quick ? 12_000 : 200_000, 1_000, 5_000_000),
    fetchSize: 500,
    fetchCapMs: quick ? 10_000 : 30_000,
    latencyRate: 500,
    latencyMs: intEnv('BENCH_LATENCY_MS', quick ? 1_000 : 5_000, 200, 60_000),
    notifyMs: quick ? 500 : 1_500,
    partitions: 6,
  });
}

// ---- events -------------------------------------------------------------------------------------

export const VALUE_BYTES = 200;
const FILLER = (() => {
  let s = '{"type":"OrderPlaced","currency":"EUR","lines":[';
  for (let i = 0; s.length < 400; i++) s += `{"sku":"sku-${(i * 7919) % 10007}","qty":${(i % 5) + 1}},`;
  return s;
})();

/** A ~200-byte value that starts with `<id>|`, so a reader can tell which send it came from. */
export function makeValue(id: number): string {
  const head = `${id}|`;
  return head + FILLER.slice(0, VALUE_BYTES - head.length);
}

/** The id a value was made with. */
export function idOfValue(value: Buffer | null): number {
  if (!value) return -1;
  const bar = value.indexOf(0x7c);
  return bar < 0 ? -1 : Number(value.toString('latin1', 0, bar));
}

/** A text key: about 10,000 distinct customers. */
export function makeKey(n: number): string {
  return `customer-${(n * 2654435761) % 10_007}`;
}

export interface BenchMessage {
  readonly key: string;
  readonly value: string;
}

export function makeBatch(start: number, size: number): BenchMessage[] {
  const out: BenchMessage[] = [];
  for (let i = 0; i < size; i++) out.push({ key: makeKey(start + i), value: makeValue(start + i) });
  return out;
}

// ---- connections ----------------------------------------------------------------------------------

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '::1', '[::1]']);

/** Refuses anything but a loopback server: the benchmark compares against a server on this machine. */
export function checkLoopback(connectionString: string): void {
  const host = new URL(connectionString).hostname;
  if (!LOOPBACK.has(host)) throw new Error(`The benchmark only connects to a local server (127.0.0.1); DATABASE_URL names host "${host}".`);
}

export async function rawClient(connectionString: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString, connectionTimeoutMillis: 10_000 });
  client.on('error', () => {});
  await client.connect();
  return client;
}

export function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

// ---- the raw baseline -----------------------------------------------------------------------------

/**
 * Whether the raw table carries Annals' stream index too (`BENCH_RAW_STREAM_INDEX`, default 1).
 * Annals' records table has two indexes — the primary key and, since the aggregates migration,
 * the partial `(topic, partition, key, offset) WHERE key IS NOT NULL` index — and every keyed
 * record goes into both; a raw table with only the primary key does half the index work
 * (measured: ~50 % more execution time for a 1,000-row INSERT with the second index). Equally
 * indexed is the default; `BENCH_RAW_STREAM_INDEX=0` measures against the bare table.
 */
export const RAW_STREAM_INDEX = process.env.BENCH_RAW_STREAM_INDEX !== '0';

/** The raw log-shaped table: same columns and indexes as Annals' records table (see `RAW_STREAM_INDEX`). */
export function rawTableDdl(table: string): string[] {
  const ddl = [
    `CREATE TABLE ${table} (
  topic        text NOT NULL,
  partition    integer NOT NULL,
  "offset"     bigint NOT NULL,
  "timestamp"  timestamptz NOT NULL,
  key          bytea,
  value        bytea,
  headers      bytea,
  PRIMARY KEY (topic, partition, "offset")
)`,
  ];
  if (RAW_STREAM_INDEX) ddl.push(`CREATE INDEX ON ${table} (topic, partition, key, "offset") WHERE key IS NOT NULL`);
  return ddl;
}

/**
 * Writes to the raw table the way a hand-written log would, without any head row: the client keeps
 * the next offset per (topic, partition) itself (each writer owns its partitions, so there is no
 * coordination at all — the most favourable baseline).
 */
export class RawWriter {
  readonly #client: pg.Client;
  readonly #table: string;
  readonly #next = new Map<string, number>();

  constructor(client: pg.Client, table: string) {
    this.#client = client;
    this.#table = table;
  }

  #take(topic: string, partition: number, n: number): number {
    const k = `${topic}\u0000${partition}`;
    const base = this.#next.get(k) ?? 0;
    this.#next.set(k, base + n);
    return base;
  }

  /** One multi-row INSERT (autocommit): the topic is sent once, partition and offset as literals. */
  async insertBatch(topic: string, messages: readonly BenchMessage[], partitions: number): Promise<void> {
    const values: unknown[] = [topic];
    const rows: string[] = [];
    for (const m of messages) {
      const key = Buffer.from(m.key);
      const partition = partitionFor(key, partitions);
      const offset = this.#take(topic, partition, 1);
      values.push(key, Buffer.from(m.value));
      const n = values.length;
      rows.push(`($1, ${partition}, ${offset}, now(), $${n - 1}, $${n}, NULL)`);
    }
    await this.#client.query(
      `INSERT INTO ${this.#table} (topic, partition, "offset", "timestamp", key, value, headers) VALUES ${rows.join(', ')}`,
      values,
    );
  }

  /** One single-row INSERT (autocommit). */
  async insertOne(topic: string, partition: number, message: BenchMessage): Promise<void> {
    const offset = this.#take(topic, partition, 1);
    await this.#client.query(
      `INSERT INTO ${this.#table} (topic, partition, "offset", "timestamp", key, value, headers) VALUES ($1, $2, $3, now(), $4, $5, NULL)`,
      [topic, partition, offset, Buffer.from(message.key), Buffer.from(message.value)],
    );
  }
}

// ---- timing and statistics -----------------------------------------------------------------------

export const now = (): number => performance.now();
export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** Nearest-rank percentile (p in [0, 100]). */
export function percentile(xs: readonly number[], p: number): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  const rank = Math.min(s.length, Math.max(1, Math.ceil((p / 100) * s.length)));
  return s[rank - 1]!;
}

/**
 * Runs `workers` loops of `op` until `ms` have passed or `maxOps` operations were started in total.
 * Returns the operations completed and the elapsed time (from start until the last loop ended).
 */
export async function closedLoop(
  workers: number,
  ms: number,
  maxOps: number,
  op: (worker: number, seq: number) => Promise<void>,
): Promise<{ ops: number; elapsedMs: number }> {
  let started = 0;
  let done = 0;
  const t0 = now();
  const deadline = t0 + ms;
  await Promise.all(
    Array.from({ length: workers }, async (_, w) => {
      while (started < maxOps && now() < deadline) {
        const seq = started++;
        await op(w, seq);
        done++;
      }
    }),
  );
  return { ops: done, elapsedMs: now() - t0 };
}

// ---- messages between the orchestrator and the workers -----------------------------------------

export interface WorkerInit {
  readonly cmd: 'init';
  readonly index: number;
  readonly connectionString: string;
  readonly schema: string;
  readonly rawTable: string;
  readonly topic: string;
  readonly partitions: number;
}

export interface WorkerRun {
  readonly cmd: 'run';
  readonly mode: 'annals' | 'raw';
  /** `Date.now()` at which to start, so every worker starts together. */
  readonly startAt: number;
  readonly ms: number;
  readonly maxSends: number;
}

export type ToWorker = WorkerInit | WorkerRun | { readonly cmd: 'exit' };

export type FromWorker =
  | { readonly kind: 'ready' }
  | { readonly kind: 'done'; readonly sends: number; readonly startedAt: number; readonly endedAt: number }
  | { readonly kind: 'error'; readonly message: string };
