/**
 * A chaos worker: one OS process, a producer, a consumer-group member, a projection rebuilder or a
 * cleaner, that writes every operation to its own history file before and after it happens. Started by the harness with
 * child_process.fork; its config is argv[2] (JSON). It may be killed at any moment (SIGKILL):
 * history lines are written synchronously, so everything it did before is on disk.
 */
import { Annals, CommitOutcomeUnknownError, defineSubscriber, on, partitionFor, type Consumer, type Producer } from '@annals/core';
import { PgLogStorage } from '@annals/storage-pg';
import { existsSync, writeFileSync } from 'node:fs';
import { sql, type Kysely } from 'kysely';
import { HistoryWriter, valueText, type AckOutcome } from './history.js';
import type { ConsumerConfig, FromWorker, ProducerConfig, RebuilderConfig, WorkerConfig } from './protocol.js';
import { ChaosEvent, SEEN_GROUP, SEEN_PROJECTION, seenProjection, typedTopic } from './typed.js';

const config = JSON.parse(process.argv[2]!) as WorkerConfig;
const history = new HistoryWriter(config.historyFile);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const reply = (m: FromWorker) => process.send?.(m);

const annals = new Annals<Kysely<any>>({
  clientId: config.proc,
  storage: new PgLogStorage({ connectionString: config.connectionString, schema: config.schema, migrate: false, poolSize: 3, connectionTimeoutMs: 3_000 }),
  retry: { retries: 12, initialRetryTime: 50, maxRetryTime: 1_000 },
  // Only a cleaner worker cleans (the others would otherwise take part in the election).
  cleaner:
    config.role === 'cleaner'
      ? {
          intervalMs: config.intervalMs,
          chunkRecords: config.chunkRecords,
          onPass: (report) => {
            const compacted = report.partitions.reduce((n, p) => n + p.recordsCompacted, 0);
            history.write({ e: 'note', t: Date.now(), proc: config.proc, detail: `cleaner pass: ${compacted} records compacted in ${report.durationMs} ms` });
          },
          onError: (error) => history.write({ e: 'note', t: Date.now(), proc: config.proc, detail: `cleaner pass failed: ${String(error)}`.slice(0, 500) }),
        }
      : false,
});

function outcomeOf(error: unknown): { outcome: AckOutcome; code: string } {
  const code = (error as { code?: string }).code ?? (error as Error).name ?? 'unknown';
  return { outcome: error instanceof CommitOutcomeUnknownError ? 'unknown' : 'failed', code: String(code) };
}

async function shutdown(code: number): Promise<never> {
  setTimeout(() => process.exit(code), 4_000).unref();
  await annals.disconnect().catch(() => {});
  history.close();
  process.exit(code);
}
process.on('disconnect', () => void shutdown(0));
process.on('message', (m) => {
  if (m === 'stop') void shutdown(0);
});

// ---------------------------------------------------------------------------------------------
// Producers

async function runProducers(c: ProducerConfig): Promise<number> {
  await annals.storage.connect(); // the storage-level modes use it directly
  const deadline = Date.now() + c.maxMs;
  let sent = 0;
  const one = async (j: number) => {
    const label = `${c.proc}.${j}`;
    let plain: Producer | undefined;
    let idempotent: Producer | undefined;
    let transactional: Producer | undefined;
    for (let i = 0; i < c.count && Date.now() < deadline; i++) {
      const mode = c.modes[(i + j) % c.modes.length]!;
      const key = `k${i % c.keys}`;
      const poison = c.poisonEvery !== undefined && i % c.poisonEvery === c.poisonEvery - 1;
      const v = `${label}-${i}${poison ? '-poison' : ''}`;
      const partition = partitionFor(key, c.partitions);
      const values: Array<{ topic: string; v: string }> = [{ topic: c.topic, v }];
      if (['txn', 'txn-abort', 'annals-tx', 'annals-tx-rollback', 'storage-rollback', 'long-tx'].includes(mode)) values.push({ topic: c.topic, v: `${v}b` });
      if (mode === 'multi-txn' || mode === 'multi-txn-abort') values.push({ topic: c.topic2!, v: `${v}~2` });
      const txn = values.length > 1 ? `${label}-${i}` : undefined;
      for (const x of values) history.write({ e: 'send', t: Date.now(), proc: label, topic: x.topic, v: x.v, k: key, ...(txn ? { txn } : {}), ...(poison ? { poison } : {}) });
      const messages = (topic: string) => values.filter((x) => x.topic === topic).map((x) => ({ key, value: x.v }));
      const rec = (x: { v: string }) => ({ key: Buffer.from(key), value: Buffer.from(x.v), headers: null, timestamp: null });
      let outcome: AckOutcome = 'ok';
      let code: string | undefined;
      const meta: Array<{ p: number; o: number }> = [];
      try {
        switch (mode) {
          case 'send':
          case 'acks1': {
            plain ??= annals.producer();
            const [m] = await plain.send({ topic: c.topic, messages: messages(c.topic), ...(mode === 'acks1' ? { acks: 1 } : {}) });
            meta.push({ p: m!.partition, o: Number(m!.baseOffset) });
            break;
          }
          case 'idempotent': {
            idempotent ??= annals.producer({ idempotent: true });
            const [m] = await idempotent.send({ topic: c.topic, messages: messages(c.topic) });
            meta.push({ p: m!.partition, o: Number(m!.baseOffset) });
            break;
          }
          case 'txn':
          case 'txn-abort':
          case 'multi-txn':
          case 'multi-txn-abort': {
            transactional ??= annals.producer({ transactionalId: label });
            const t = await transactional.transaction();
            await t.send({ topic: c.topic, messages: messages(c.topic) });
            if (c.topic2 && mode.startsWith('multi')) await t.send({ topic: c.topic2, messages: messages(c.topic2) });
            if (mode.endsWith('abort')) {
              await t.abort();
              outcome = 'aborted';
            } else await t.commit();
            break;
          }
          case 'annals-tx':
            await annals.transaction(async (tx) => void (await tx.send({ topic: c.topic, messages: messages(c.topic) })));
            break;
          case 'annals-tx-rollback':
            await annals
              .transaction(async (tx) => {
                await tx.send({ topic: c.topic, messages: messages(c.topic) });
                throw new Error('chaos: roll back');
              })
              .catch((e: Error) => {
                if (e.message !== 'chaos: roll back') throw e;
              });
            outcome = 'aborted';
            break;
          case 'storage-rollback':
            await annals.storage
              .transaction(async (stx) => {
                await stx.append([{ topic: c.topic, partition, records: values.map(rec) }]);
                await sleep(i % 3);
                throw new Error('chaos: roll back');
              })
              .catch((e: Error) => {
                if (e.message !== 'chaos: roll back') throw e;
              });
            outcome = 'aborted';
            break;
          case 'long-tx':
            await annals.storage.transaction(async (stx) => {
              await stx.append([{ topic: c.topic, partition, records: values.map(rec) }]);
              const t = Date.now();
              const ms = c.longTxMs ?? 2_000;
              history.write({ e: 'fault', t, kind: 'long-transaction', targets: [label], affects: 'producers', until: t + ms, detail: `holds the head lock of ${c.topic}[${partition}] for ${ms} ms` });
              await sleep(ms);
            });
            break;
        }
      } catch (error) {
        ({ outcome, code } = outcomeOf(error));
      }
      const t = Date.now();
      for (const x of values) {
        const m = x.v === v && x.topic === c.topic ? meta[0] : undefined;
        history.write({ e: 'ack', t, proc: label, topic: x.topic, v: x.v, outcome, ...(code ? { code } : {}), ...(m ? { p: m.p, o: m.o } : {}) });
      }
      sent++;
      if (c.paceMs > 0) await sleep(c.paceMs);
    }
  };
  await Promise.all(Array.from({ length: c.producers }, (_, j) => one(j)));
  return sent;
}

// ---------------------------------------------------------------------------------------------
// Consumers

async function effect(c: ConsumerConfig, db: Kysely<any>, v: string): Promise<void> {
  await sql`INSERT INTO ${sql.table(`${c.schema}.effects`)} (g, v, n) VALUES (${c.groupId}, ${v}, 1)
    ON CONFLICT (g, v) DO UPDATE SET n = effects.n + 1`.execute(db);
}

async function handle(c: ConsumerConfig, memberId: () => string, r: { topic: string; p: number; o: number; v: string; k?: string }, db: () => Kysely<any>): Promise<void> {
  const base = { proc: c.proc, g: c.groupId, m: memberId(), topic: r.topic, p: r.p, o: r.o, v: r.v };
  history.write({ e: 'deliver', t: Date.now(), ...base, ...(r.k !== undefined ? { k: r.k } : {}) });
  try {
    if (r.v.includes('poison')) throw new Error(`chaos: poison record ${r.v}`);
    if (c.exactlyOnce) await effect(c, db(), r.v);
    if (c.hang && r.v === c.hang.value && !existsSync(c.hang.marker)) {
      writeFileSync(c.hang.marker, String(process.pid));
      const t = Date.now();
      history.write({ e: 'fault', t, kind: 'hung-handler', targets: [c.proc], affects: 'consumers', until: t + c.hang.ms, detail: `handler of ${r.v} idle in its transaction for ${c.hang.ms} ms` });
      await sleep(c.hang.ms);
    }
    if (c.handlerDelayMs > 0) await sleep(c.handlerDelayMs);
  } catch (error) {
    history.write({ e: 'handler-error', t: Date.now(), ...base });
    throw error;
  }
}

function watch(c: ConsumerConfig, consumer: Consumer): void {
  const m = () => consumer.memberId ?? '?';
  const base = () => ({ t: Date.now(), proc: c.proc, g: c.groupId, m: m() });
  consumer.on(consumer.events.GROUP_JOIN, () => {
    history.write({ e: 'join', ...base() });
    reply({ type: 'member', memberId: m() });
  });
  consumer.on(consumer.events.REBALANCING, (e) => history.write({ e: 'rebalance', ...base(), detail: JSON.stringify(e.payload) }));
  consumer.on(consumer.events.COMMIT_OFFSETS, (e) => {
    const payload = e.payload as { topics: Array<{ topic: string; partitions: Array<{ partition: number; offset: string }> }> };
    for (const t of payload.topics) for (const p of t.partitions) history.write({ e: 'commit', ...base(), topic: t.topic, p: p.partition, o: Number(p.offset) });
  });
  consumer.on(consumer.events.CRASH, (e) => {
    const payload = e.payload as { error: Error; restart: boolean };
    const error = payload.error as (Error & { code?: string; cause?: unknown }) | undefined;
    const where = payload.restart ? '' : ` | ${(error?.stack ?? '').split('\n').slice(1, 7).map((l) => l.trim()).join(' < ')} | cause: ${String((error?.cause as Error | undefined)?.stack ?? error?.cause ?? '').split('\n').slice(0, 4).join(' < ')}`;
    history.write({ e: 'crash', ...base(), detail: `${payload.restart ? 'restart' : 'fatal'}: ${error?.message ?? String(error)} (${error?.name}${error?.code ? ` ${error.code}` : ''})${where}`.slice(0, 1500) });
  });
  consumer.on(consumer.events.DEAD_LETTER, (e) => {
    const payload = e.payload as { topic: string; partition: number; offset: string };
    history.write({ e: 'dlq', ...base(), topic: payload.topic, p: payload.partition, o: Number(payload.offset) });
  });
  consumer.on(consumer.events.STOP, () => history.write({ e: 'stop', ...base() }));
}

async function runConsumer(c: ConsumerConfig): Promise<void> {
  const failure = c.deadLetterTopic ? { onFailure: 'dead-letter' as const, deadLetterTopic: c.deadLetterTopic } : {};
  const options = {
    sessionTimeout: c.sessionTimeout,
    heartbeatInterval: c.heartbeatInterval,
    maxRecordsPerFetch: c.maxRecordsPerFetch,
    maxWaitTimeInMs: 500,
    retry: { retries: 2, initialRetryTime: 20, maxRetryTime: 100 },
    ...failure,
  };
  if (c.typed) {
    // The typed layer: records are decoded (msgpack) and validated before any handler runs.
    let memberId = '?';
    const topic = typedTopic(c.topics[0]!, c.typed.partitions);
    annals.register(
      defineSubscriber({
        groupId: c.groupId,
        topics: [topic],
        fromBeginning: true,
        ...options,
        handlers: [
          on(ChaosEvent, async (event, ctx) => {
            const md = ctx.metadata;
            await handle(c, () => memberId, { topic: md.topic, p: md.partition, o: Number(md.offset), v: event.id, k: event.k }, () => ctx.tx.db as Kysely<any>);
          }),
        ],
      }),
    );
    history.write({ e: 'join', t: Date.now(), proc: c.proc, g: c.groupId, m: c.proc });
    memberId = c.proc;
    await annals.start();
    return;
  }
  const consumer = annals.consumer({ groupId: c.groupId, ...options });
  watch(c, consumer);
  await consumer.subscribe({ topics: [...c.topics], fromBeginning: true });
  await consumer.run({
    eachMessage: async ({ topic, partition, message, tx }) => {
      const key = message.key ? message.key.toString() : undefined;
      await handle(c, () => consumer.memberId ?? '?', { topic, p: partition, o: Number(message.offset), v: valueText(message.value), ...(key !== undefined ? { k: key } : {}) }, () => tx.db);
    },
  });
}

async function runRebuilder(c: RebuilderConfig): Promise<number> {
  annals.register(
    seenProjection({
      topic: c.topic,
      partitions: c.partitions,
      schema: c.schema,
      batchSize: c.batchSize,
      delayMs: c.delayMs,
      onEvent: (event, ctx) => {
        const md = ctx.metadata;
        history.write({ e: 'deliver', t: Date.now(), proc: c.proc, g: SEEN_GROUP, m: c.proc, topic: md.topic, p: md.partition, o: Number(md.offset), v: event.id, k: event.k });
      },
    }),
  );
  const result = await annals.projections.rebuild(SEEN_PROJECTION, {
    onProgress: (p) => reply({ type: 'progress', eventsDone: p.eventsDone, eventsTotal: p.eventsTotal }),
  });
  return result.events;
}

try {
  if (config.role === 'cleaner') {
    // Connecting starts the cleaner loop; it runs until the harness stops or kills this process.
    await annals.connect();
    reply({ type: 'ready' });
  } else if (config.role === 'rebuilder') {
    reply({ type: 'ready' });
    const events = await runRebuilder(config);
    reply({ type: 'done', sent: events });
    await shutdown(0);
  } else if (config.role === 'producer') {
    reply({ type: 'ready' });
    const sent = await runProducers(config);
    reply({ type: 'done', sent });
    await shutdown(0);
  } else {
    await runConsumer(config);
    reply({ type: 'ready' });
  }
} catch (error) {
  history.write({ e: 'note', t: Date.now(), proc: config.proc, detail: `worker failed: ${String((error as Error)?.stack ?? error)}`.slice(0, 2000) });
  reply({ type: 'error', message: String((error as Error)?.stack ?? error) });
  await shutdown(1);
}
