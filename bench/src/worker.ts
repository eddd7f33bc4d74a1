/**
 * A forked single-send worker for scenario (b) "8 processes": each process owns one Annals client
 * (one producer) and one raw pg connection, and on command sends single messages, one at a time,
 * for a time window. Started by run.ts with child_process.fork; exits when the parent goes away.
 */
import { Annals, type Producer } from '@annals/core';
import { postgres } from '@annals/storage-pg';
import type pg from 'pg';
import { makeKey, makeValue, rawClient, RawWriter, sleep, type FromWorker, type ToWorker, type WorkerInit, type WorkerRun } from './common.js';

let init: WorkerInit | undefined;
let annals: Annals | undefined;
let producer: Producer | undefined;
let raw: pg.Client | undefined;
let writer: RawWriter | undefined;
let seq = 0;

function reply(message: FromWorker): void {
  process.send?.(message);
}

async function setup(message: WorkerInit): Promise<void> {
  init = message;
  annals = new Annals({
    clientId: `bench-worker-${message.index}`,
    storage: postgres({ connectionString: message.connectionString, schema: message.schema, migrate: false, poolSize: 2 }),
  });
  producer = annals.producer();
  await producer.connect();
  raw = await rawClient(message.connectionString);
  writer = new RawWriter(raw, message.rawTable);
}

async function runWindow(message: WorkerRun): Promise<void> {
  if (!init || !producer || !writer) throw new Error('worker not initialised');
  const wait = message.startAt - Date.now();
  if (wait > 0) await sleep(Math.min(wait, 5_000));
  const startedAt = Date.now();
  const deadline = startedAt + message.ms;
  const rawTopic = 'raw-b-procs';
  const rawPartition = 100 + init.index;
  let sends = 0;
  while (sends < message.maxSends && Date.now() < deadline) {
    const n = init.index * 1_000_000 + seq++;
    const m = { key: makeKey(n), value: makeValue(n) };
    if (message.mode === 'annals') await producer.send({ topic: init.topic, messages: [m] });
    else await writer.insertOne(rawTopic, rawPartition, m);
    sends++;
  }
  reply({ kind: 'done', sends, startedAt, endedAt: Date.now() });
}

async function shutdown(code: number): Promise<never> {
  const timer = setTimeout(() => process.exit(code), 3_000);
  timer.unref();
  await producer?.disconnect().catch(() => {});
  await annals?.disconnect().catch(() => {});
  await raw?.end().catch(() => {});
  process.exit(code);
}

process.on('disconnect', () => void shutdown(0));
process.on('message', (message: ToWorker) => {
  const handle = async () => {
    if (message.cmd === 'init') {
      await setup(message);
      reply({ kind: 'ready' });
    } else if (message.cmd === 'run') {
      await runWindow(message);
    } else {
      await shutdown(0);
    }
  };
  handle().catch((error: unknown) => reply({ kind: 'error', message: error instanceof Error ? (error.stack ?? error.message) : String(error) }));
});
