/**
 * What every scenario shares: a database of its own on the PostgreSQL under test, worker
 * processes (forked, each with its own history file), the fault log, a sampler of partition
 * ownership, draining, and the final read of the log and of the effects table into the history.
 *
 * Every wait is bounded (count and time); the only addresses are loopback ones.
 */
import { Annals } from '@annals/core';
import { PgLogStorage } from '@annals/storage-pg';
import { fork, type ChildProcess } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { HistoryWriter, valueText, type HistoryEvent } from './history.js';
import type { CleanerConfig, ConsumerConfig, FromWorker, ProducerConfig, RebuilderConfig } from './protocol.js';

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const WORKER = path.join(path.dirname(fileURLToPath(import.meta.url)), 'worker.js');

export class Worker {
  readonly proc: string;
  readonly child: ChildProcess;
  memberId: string | undefined;
  expectedExit = false;
  exited = false;
  readonly ready: Promise<void>;
  readonly done: Promise<void>;
  readonly exit: Promise<void>;
  sent = 0;
  progress: { eventsDone: number; eventsTotal: number } | undefined;

  constructor(proc: string, child: ChildProcess, history: HistoryWriter, onMember: (w: Worker) => void) {
    this.proc = proc;
    this.child = child;
    let ready!: () => void;
    let done!: () => void;
    let fail!: (e: Error) => void;
    this.ready = new Promise<void>((resolve, reject) => ((ready = resolve), (fail = reject)));
    this.done = new Promise<void>((resolve) => (done = resolve));
    this.ready.catch(() => {});
    // Errors of the IPC channel (a message to a worker that is going away) are not the harness's
    // failures: the worker's exit is what the history records.
    child.on('error', () => {});
    child.on('message', (m: FromWorker) => {
      if (m.type === 'ready') ready();
      else if (m.type === 'member') {
        this.memberId = m.memberId;
        onMember(this);
      } else if (m.type === 'done') {
        this.sent = m.sent;
        done();
      } else if (m.type === 'progress') this.progress = { eventsDone: m.eventsDone, eventsTotal: m.eventsTotal };
      else if (m.type === 'error') fail(new Error(`${proc}: ${m.message}`));
    });
    this.exit = new Promise<void>((resolve) =>
      child.on('exit', (code, signal) => {
        this.exited = true;
        history.write({ e: 'exit', t: Date.now(), proc, code, signal, expected: this.expectedExit });
        fail(new Error(`${proc} exited (${code ?? signal}) before it was ready`));
        done();
        resolve();
      }),
    );
  }

  kill(signal: NodeJS.Signals = 'SIGKILL'): void {
    if (this.exited) return;
    this.expectedExit = true;
    this.child.kill(signal);
  }

  /** Asks the worker to stop; kills it after `ms`. */
  async stop(ms = 5_000): Promise<void> {
    if (this.exited) return;
    this.expectedExit = true;
    // A worker just killed (rebalance-storm) can have its IPC channel closed before its 'exit'
    // arrives: with a callback, send reports that there instead of emitting an unhandled 'error'
    // on the ChildProcess (which crashed the harness). The kill timer below ends it either way.
    if (this.child.connected) this.child.send('stop', () => {});
    const timer = setTimeout(() => this.child.kill('SIGKILL'), ms);
    await this.exit;
    clearTimeout(timer);
  }
}

export interface ScenarioEnv {
  readonly name: string;
  readonly short: boolean;
  /** The scenario's database, as the workers reach it (possibly through a proxy). */
  workerUrl: string;
  /** The scenario's database, directly. */
  readonly directUrl: string;
  readonly schema: string;
  readonly dir: string;
  readonly history: HistoryWriter;
  /** The harness's own client (direct). */
  readonly annals: Annals<any>;
  readonly admin: pg.Pool;
}

export class Scenario {
  readonly env: ScenarioEnv;
  readonly workers: Worker[] = [];
  readonly #byMember = new Map<string, Worker>();
  #counter = 0;
  #sampling = false;
  #sampler: Promise<void> | undefined;
  samples = 0;

  constructor(env: ScenarioEnv) {
    this.env = env;
  }

  fault(kind: string, affects: 'producers' | 'consumers' | 'all', extra: { targets?: string[]; until?: number; detail?: string; t?: number } = {}): void {
    const { t, ...rest } = extra;
    this.env.history.write({ e: 'fault', t: t ?? Date.now(), kind, affects, ...rest });
  }

  note(detail: string): void {
    this.env.history.write({ e: 'note', t: Date.now(), proc: 'harness', detail });
  }

  #spawn(prefix: string, build: (proc: string, historyFile: string) => ProducerConfig | ConsumerConfig | RebuilderConfig | CleanerConfig): Worker {
    const proc = `${prefix}${++this.#counter}`;
    const historyFile = path.join(this.env.dir, `${proc}.jsonl`);
    const config = build(proc, historyFile);
    const child = fork(WORKER, [JSON.stringify(config)], { stdio: ['ignore', 'ignore', 'pipe', 'ipc'] });
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
    child.on('exit', (code) => {
      if (code !== 0 && code !== null && stderr.trim()) this.note(`${proc} stderr: ${stderr.trim().slice(-1500)}`);
    });
    const worker = new Worker(proc, child, this.env.history, (w) => this.#byMember.set(w.memberId!, w));
    this.workers.push(worker);
    return worker;
  }

  producer(input: Omit<ProducerConfig, 'role' | 'proc' | 'historyFile' | 'connectionString' | 'schema'>): Worker {
    return this.#spawn('p', (proc, historyFile) => ({ role: 'producer', proc, historyFile, connectionString: this.env.workerUrl, schema: this.env.schema, ...input }));
  }

  consumer(input: Omit<ConsumerConfig, 'role' | 'proc' | 'historyFile' | 'connectionString' | 'schema'>): Worker {
    return this.#spawn('c', (proc, historyFile) => ({ role: 'consumer', proc, historyFile, connectionString: this.env.workerUrl, schema: this.env.schema, ...input }));
  }

  rebuilder(input: Omit<RebuilderConfig, 'role' | 'proc' | 'historyFile' | 'connectionString' | 'schema'>): Worker {
    return this.#spawn('r', (proc, historyFile) => ({ role: 'rebuilder', proc, historyFile, connectionString: this.env.workerUrl, schema: this.env.schema, ...input }));
  }

  /** A process that only runs the cleaner loop (its lease elects one cleaner among them). */
  cleaner(input: Omit<CleanerConfig, 'role' | 'proc' | 'historyFile' | 'connectionString' | 'schema'>): Worker {
    return this.#spawn('x', (proc, historyFile) => ({ role: 'cleaner', proc, historyFile, connectionString: this.env.workerUrl, schema: this.env.schema, ...input }));
  }

  workerOfMember(memberId: string): Worker | undefined {
    return this.#byMember.get(memberId);
  }

  live(prefix: 'p' | 'c' | 'x'): Worker[] {
    return this.workers.filter((w) => !w.exited && w.proc.startsWith(prefix));
  }

  /** Creates topics (with their config keys) and the effects table. */
  async setup(topics: Array<{ topic: string; numPartitions: number; configEntries?: Array<{ name: string; value: string }> }>): Promise<void> {
    await this.env.annals.admin().createTopics({ topics });
    await this.env.admin.query(`CREATE TABLE IF NOT EXISTS "${this.env.schema}".effects (g text NOT NULL, v text NOT NULL, n int NOT NULL, PRIMARY KEY (g, v))`);
  }

  /** Samples partition ownership every `everyMs`: who holds each partition's advisory lock, and the group's owner row. */
  startSampler(everyMs: number): void {
    this.#sampling = true;
    const schema = this.env.schema;
    const last = new Map<string, string>();
    const query = `SELECT o.group_id, o.topic, o.partition, o.member_id, m.backend_pid,
        ARRAY(SELECT l.pid FROM pg_locks l
              WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
                AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                AND ((l.classid::bigint << 32) | l.objid::bigint) = hashtextextended($1 || '/' || o.group_id || '/' || o.topic || '/' || o.partition, 0)) AS holders
      FROM "${schema}".partition_owners o
      LEFT JOIN "${schema}".group_members m ON m.group_id = o.group_id AND m.member_id = o.member_id`;
    this.#sampler = (async () => {
      while (this.#sampling) {
        try {
          const { rows } = await this.env.admin.query<{ group_id: string; topic: string; partition: number; member_id: string | null; backend_pid: number | null; holders: number[] }>(query, [schema]);
          this.samples++;
          const t = Date.now();
          for (const r of rows) {
            const key = `${r.group_id}/${r.topic}/${r.partition}`;
            const state = JSON.stringify([r.holders, r.member_id]);
            if (last.get(key) === state && r.holders.length <= 1) continue;
            last.set(key, state);
            this.env.history.write({ e: 'owners', t, g: r.group_id, topic: r.topic, p: r.partition, holders: r.holders, owner: r.member_id, ownerPid: r.backend_pid });
          }
        } catch {
          /* the server may be down (restart scenario) */
        }
        await sleep(everyMs);
      }
    })();
  }

  async stopSampler(): Promise<void> {
    this.#sampling = false;
    await this.#sampler;
  }

  /** Waits (bounded) until every group has committed up to the log end of its topics; writes a `stall` if not. */
  async drain(groups: Record<string, readonly string[]>, timeoutMs: number): Promise<boolean> {
    this.note('producers done; draining');
    const deadline = Date.now() + timeoutMs;
    let behind = '';
    while (Date.now() < deadline) {
      behind = '';
      try {
        for (const [groupId, topics] of Object.entries(groups)) {
          const committed = await this.env.annals.admin().fetchOffsets({ groupId, topics: [...topics] });
          for (const topic of topics) {
            const ends = await this.env.annals.admin().fetchTopicOffsets(topic);
            const mine = committed.find((c) => c.topic === topic)?.partitions ?? [];
            for (const e of ends) {
              const at = mine.find((m) => m.partition === e.partition)?.offset ?? '-1';
              if (BigInt(at === '-1' ? '0' : at) < BigInt(e.high)) behind += ` ${groupId}:${topic}[${e.partition}] at ${at} of ${e.high};`;
            }
          }
        }
      } catch (error) {
        behind = `drain check failed: ${String(error)}`;
      }
      if (behind === '') {
        this.note('drained');
        return true;
      }
      await sleep(200);
    }
    this.env.history.write({ e: 'stall', t: Date.now(), detail: `not drained after ${timeoutMs} ms:${behind.slice(0, 800)}` });
    return false;
  }

  /** Waits (bounded) for the producer workers to finish their sends. */
  async producersDone(timeoutMs: number): Promise<void> {
    const producers = this.workers.filter((w) => w.proc.startsWith('p'));
    const all = Promise.all(producers.map((w) => w.done));
    const timedOut = await Promise.race([all.then(() => false), sleep(timeoutMs).then(() => true)]);
    if (timedOut) {
      const late = producers.filter((w) => !w.exited).map((w) => w.proc);
      this.env.history.write({ e: 'stall', t: Date.now(), detail: `producers ${late.join(', ')} not done after ${timeoutMs} ms` });
    }
  }

  async stopAll(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.stop()));
  }

  /** Reads every record of the topics and the effects table into the history. */
  async recordFinalState(topics: string[], valueOf: (value: Buffer | null) => string = valueText): Promise<void> {
    for (const topic of topics) {
      const ends = await this.env.annals.admin().fetchTopicOffsets(topic);
      for (const { partition } of ends) {
        let offset = 0n;
        for (let pages = 0; pages < 10_000; pages++) {
          const r = await this.env.annals.fetch(topic, partition, offset, { maxRecords: 1000 });
          if (r.messages.length === 0) break;
          for (const m of r.messages) {
            const event: HistoryEvent = { e: 'log', topic, p: partition, o: Number(m.offset), v: valueOf(m.value), ...(m.key ? { k: m.key.toString() } : {}) };
            this.env.history.write(event);
          }
          offset = BigInt(r.messages.at(-1)!.offset) + 1n;
        }
      }
    }
    const { rows } = await this.env.admin.query<{ g: string; v: string; n: number }>(`SELECT g, v, n FROM "${this.env.schema}".effects`);
    for (const r of rows) this.env.history.write({ e: 'effect', g: r.g, v: r.v, n: r.n });
  }
}

/** Creates a database for one scenario and everything the harness needs in it. */
export async function openScenario(
  name: string,
  short: boolean,
  serverUrl: string,
  runDir: string,
  template?: string,
): Promise<{ scenario: Scenario; close: (keep: boolean) => Promise<void> }> {
  const database = `chaos_${process.pid}_${name.replace(/[^a-z0-9]/gi, '_').toLowerCase()}`;
  await serverQuery(serverUrl, `DROP DATABASE IF EXISTS ${database} WITH (FORCE)`, `CREATE DATABASE ${database}${template ? ` TEMPLATE ${template}` : ''}`);
  const url = new URL(serverUrl);
  url.pathname = `/${database}`;
  const directUrl = url.toString();
  const schema = 'annals';
  const dir = path.join(runDir, name);
  mkdirSync(dir, { recursive: true });
  const history = new HistoryWriter(path.join(dir, 'harness.jsonl'));
  const annals = new Annals({
    clientId: 'chaos-harness',
    storage: new PgLogStorage({ connectionString: directUrl, schema, poolSize: 3 }),
    retry: { retries: 30, initialRetryTime: 50, maxRetryTime: 1_000 },
    cleaner: false, // scenarios that clean run cleaner workers, and passes of their own with runOnce
  });
  await annals.admin().listTopics(); // migrates
  const admin = new pg.Pool({ connectionString: directUrl, max: 2, application_name: 'chaos-harness' });
  admin.on('error', () => {});
  const scenario = new Scenario({ name, short, workerUrl: directUrl, directUrl, schema, dir, history, annals, admin });
  return {
    scenario,
    close: async (keep: boolean) => {
      await scenario.stopSampler();
      await scenario.stopAll();
      await annals.disconnect().catch(() => {});
      await admin.end().catch(() => {});
      history.close();
      if (!keep) {
        await serverQuery(serverUrl, `DROP DATABASE IF EXISTS ${database} WITH (FORCE)`).catch(() => {});
      }
    },
  };
}

/**
 * Runs statements, in order, on a short-lived connection to the server: its 'error' listener is
 * attached before it connects (a server going away between statements must fail the call, not
 * crash the harness), and it is ended whatever happens.
 */
async function serverQuery(serverUrl: string, ...statements: string[]): Promise<void> {
  const c = new pg.Client({ connectionString: serverUrl, application_name: 'chaos-harness' });
  c.on('error', () => {});
  try {
    await c.connect();
    for (const sql of statements) await c.query(sql);
  } finally {
    await c.end().catch(() => {});
  }
}

/** A database with the log's schema migrated, to copy for each scenario (migrating is slow on a busy machine). */
export async function createTemplate(serverUrl: string): Promise<{ name: string; drop: () => Promise<void> }> {
  const name = `chaos_${process.pid}_template`;
  const run = (sql: string) => serverQuery(serverUrl, sql);
  await run(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  await run(`CREATE DATABASE ${name}`);
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  const storage = new PgLogStorage({ connectionString: url.toString(), schema: 'annals', poolSize: 2 });
  await storage.connect();
  await storage.disconnect();
  return { name, drop: () => run(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`) };
}
