/**
 * One process of the consumer-group benchmark (groups.ts): either a consumer-group member
 * (`annals.consumer`, no-op / exactly-once / slow handler) or a raw reader (keyset SELECTs on one
 * connection, optionally with the same write and an offset upsert per batch in one transaction).
 * Members start paused and report their assignment, so the parent starts the clock only once the
 * group is stable; they report progress, and the first delivery of every partition they take.
 */
import { performance } from 'node:perf_hooks';
import { Annals, type Consumer } from '@annals/core';
import { postgres } from '@annals/storage-pg';
import type { Kysely } from 'kysely';
import pg from 'pg';

export type GroupMode = 'noop' | 'tx' | 'slow';

export interface MemberInit {
  readonly cmd: 'member';
  readonly url: string;
  readonly schema: string;
  readonly topic: string;
  readonly groupId: string;
  readonly mode: GroupMode;
  readonly sessionTimeout: number;
  readonly heartbeatInterval: number;
  /** Stop counting (and report done) after this many records in all; the parent decides the end. */
  readonly effectsTable: string;
}

export interface RawInit {
  readonly cmd: 'raw';
  readonly url: string;
  readonly schema: string;
  readonly topic: string;
  readonly partitions: readonly number[];
  /** Records to read per partition (the raw side reads exactly what the members read). */
  readonly perPartition: readonly number[];
  readonly mode: 'read' | 'tx';
  readonly fetchSize: number;
  readonly effectsTable: string;
  readonly groupId: string;
}

export type ToGroupChild = MemberInit | RawInit | { readonly cmd: 'go' } | { readonly cmd: 'stop' };

export type FromGroupChild =
  | { readonly kind: 'ready' }
  | { readonly kind: 'assigned'; readonly partitions: number[] }
  | { readonly kind: 'progress'; readonly count: number; readonly first: number; readonly last: number }
  | { readonly kind: 'first'; readonly partition: number; readonly at: number }
  | { readonly kind: 'done'; readonly count: number; readonly first: number; readonly last: number; readonly cpuMs: number }
  | { readonly kind: 'error'; readonly message: string };

/** Wall-clock milliseconds with sub-millisecond resolution, comparable across processes. */
export const wallNow = (): number => performance.timeOrigin + performance.now();

/** This process's CPU time (user + system), ms. */
const cpuMs = (): number => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

const send = (m: FromGroupChild): void => {
  if (process.connected) process.send!(m);
};

async function member(init: MemberInit): Promise<void> {
  const annals = new Annals({
    clientId: `bench-member-${process.pid}`,
    storage: postgres({ connectionString: init.url, schema: init.schema, migrate: false, poolSize: 4 }),
  });
  const consumer: Consumer<Kysely<any>> = annals.consumer({
    groupId: init.groupId,
    sessionTimeout: init.sessionTimeout,
    heartbeatInterval: init.heartbeatInterval,
  }) as Consumer<Kysely<any>>;
  let count = 0;
  let first = 0;
  let last = 0;
  let cpuAtFirst = 0;
  let cpuAtLast = 0;
  const seen = new Set<number>();
  const delivered = (partition: number) => {
    const at = wallNow();
    if (count === 0) {
      first = at;
      cpuAtFirst = cpuMs();
    }
    last = at;
    count++;
    if ((count & 1023) === 0) cpuAtLast = cpuMs();
    if (!seen.has(partition)) {
      seen.add(partition);
      send({ kind: 'first', partition, at });
    }
  };
  let slowTick = 0;
  await consumer.connect();
  await consumer.subscribe({ topic: init.topic, fromBeginning: true });
  consumer.pause([{ topic: init.topic }]);
  const effects = init.effectsTable; // schema.table
  await consumer.run({
    eachMessage:
      init.mode === 'tx'
        ? async ({ partition, message, tx }) => {
            await tx.db.insertInto(effects).values({ grp: init.groupId, partition, offset: message.offset }).execute();
            delivered(partition);
          }
        : init.mode === 'slow'
          ? async ({ partition }) => {
              delivered(partition);
              if (++slowTick % 20 === 0) await new Promise((r) => setTimeout(r, 2));
            }
          : async ({ partition }) => {
              delivered(partition);
            },
  });
  let lastAssigned = '';
  const poll = setInterval(() => {
    const partitions = consumer.assignment().map((tp) => tp.partition);
    const key = partitions.join(',');
    if (key !== lastAssigned) {
      lastAssigned = key;
      send({ kind: 'assigned', partitions });
    }
    send({ kind: 'progress', count, first, last });
  }, 50);
  process.on('message', (m: ToGroupChild) => {
    if (m.cmd === 'go') consumer.resume([{ topic: init.topic }]);
    if (m.cmd === 'stop') {
      clearInterval(poll);
      void (async () => {
        await consumer.disconnect();
        await annals.disconnect();
        send({ kind: 'done', count, first, last, cpuMs: cpuAtLast - cpuAtFirst });
        process.exit(0);
      })();
    }
  });
  send({ kind: 'ready' });
}

async function raw(init: RawInit): Promise<void> {
  const client = new pg.Client({ connectionString: init.url });
  client.on('error', () => {});
  await client.connect();
  send({ kind: 'ready' });
  await new Promise<void>((resolve) => process.once('message', (m: ToGroupChild) => m.cmd === 'go' && resolve()));
  const records = `"${init.schema}".records`;
  const [schema, table] = init.effectsTable.split('.') as [string, string];
  const effects = `"${schema}"."${table}"`;
  const offsets = `"${init.schema}".raw_offsets`;
  let count = 0;
  const t0 = wallNow();
  const cpu0 = cpuMs();
  for (let i = 0; i < init.partitions.length; i++) {
    const p = init.partitions[i]!;
    const want = init.perPartition[i]!;
    let offset = 0;
    let read = 0;
    while (read < want) {
      const limit = Math.min(init.fetchSize, want - read);
      if (init.mode === 'tx') await client.query('BEGIN');
      const { rows } = await client.query<{ offset: string }>(
        `SELECT "offset", "timestamp", key, value, headers FROM ${records} WHERE topic = $1 AND partition = $2 AND "offset" >= $3 ORDER BY "offset" LIMIT ${limit}`,
        [init.topic, p, offset],
      );
      if (rows.length === 0) {
        if (init.mode === 'tx') await client.query('ROLLBACK');
        break;
      }
      if (init.mode === 'tx') {
        // The same write as the exactly-once handler (one INSERT per record), then the offset, one commit.
        for (const r of rows) {
          await client.query(`INSERT INTO ${effects} (grp, partition, "offset") VALUES ($1, $2, $3)`, [init.groupId, p, r.offset]);
        }
        await client.query(
          `INSERT INTO ${offsets} (grp, topic, partition, committed_offset) VALUES ($1, $2, $3, $4)
ON CONFLICT (grp, topic, partition) DO UPDATE SET committed_offset = EXCLUDED.committed_offset`,
          [init.groupId, init.topic, p, Number(rows[rows.length - 1]!.offset) + 1],
        );
        await client.query('COMMIT');
      }
      read += rows.length;
      offset = Number(rows[rows.length - 1]!.offset) + 1;
    }
    count += read;
  }
  const t1 = wallNow();
  const cpu = cpuMs() - cpu0;
  await client.end();
  send({ kind: 'done', count, first: t0, last: t1, cpuMs: cpu });
  process.exit(0);
}

// The orchestrator went away (interrupted run): do not linger as a group member.
process.on('disconnect', () => process.exit(1));

process.once('message', (m: ToGroupChild) => {
  const run = m.cmd === 'member' ? member(m) : m.cmd === 'raw' ? raw(m) : Promise.reject(new Error(`unexpected first message ${m.cmd}`));
  run.catch((error: unknown) => {
    send({ kind: 'error', message: error instanceof Error ? (error.stack ?? error.message) : String(error) });
    setTimeout(() => process.exit(1), 100);
  });
});
