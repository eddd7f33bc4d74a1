/**
 * Projections on a real PostgreSQL:
 * - a rebuild under live load, killed (SIGKILL) midway and resumed by another process, ends with
 *   a read model equal (checksum) to one built incrementally, and every event's side effect was
 *   published exactly once — by the live version before the swap, by the new one after it, never
 *   during the replay;
 * - a rebuild that lost its lock (a zombie) cannot write once another took the version over;
 * - versioned SQL tables made by `setup`, written through `tx.db`, read through a view the swap
 *   re-points (even when the new version's columns differ);
 * - given/when/then on PostgreSQL.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import {
  Annals,
  IllegalGenerationError,
  defineProjection,
  on,
  type ProjectionContext,
  type RebuildProgress,
  type RebuildResult,
} from '@annals/core';
import { event, given } from '@annals/testing';
import { sql, type Kysely } from 'kysely';
import { afterEach, describe, expect, it } from 'vitest';
import type { PgLogStorage } from '../src/index.js';
import { OrderPlaced, SideEffect, orders, sideEffects, totalsProjection } from './fixtures/projection-defs.mjs';
import { adminClient, database, freshAnnals, freshStorage, sleep } from './support.js';

const REBUILDER = fileURLToPath(new URL('./fixtures/projection-rebuilder.mjs', import.meta.url));

interface Rebuilder {
  readonly child: ChildProcess;
  readonly progress: RebuildProgress[];
  result?: RebuildResult;
  error?: string;
  exited: boolean;
}

const children: Rebuilder[] = [];
afterEach(() => {
  for (const c of children.splice(0)) if (!c.exited) c.child.kill('SIGKILL');
});

function spawnRebuilder(schema: string, version: number, mode: 'rebuild' | 'rebuild-then-live', batchSize: number): Rebuilder {
  const child = fork(REBUILDER, [database.connectionString, schema, String(version), mode, String(batchSize)], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    execArgv: [],
  });
  const r: Rebuilder = { child, progress: [], exited: false };
  child.on('message', (m: { type: string; progress?: RebuildProgress; result?: RebuildResult; error?: string }) => {
    if (m.type === 'progress') r.progress.push(m.progress!);
    if (m.type === 'rebuilt') r.result = m.result!;
    if (m.type === 'error') r.error = m.error!;
  });
  child.on('exit', () => (r.exited = true));
  children.push(r);
  return r;
}

async function waitFor(what: string, condition: () => boolean | Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
    await sleep(25);
  }
}

type Totals = { orders: number; cents: number };

/** Places orders in transactions of up to 500, keeping the expected read model. */
class OrderDesk {
  readonly expected = new Map<string, Totals>();
  readonly ids: string[] = [];
  #next = 0;
  constructor(readonly annals: Annals<Kysely<unknown>>) {}
  async place(count: number): Promise<void> {
    for (let done = 0; done < count; ) {
      const n = Math.min(500, count - done);
      const batch = Array.from({ length: n }, () => {
        const i = this.#next++;
        return { orderId: `o-${i}`, customerId: `c-${(i * 7919) % 97}`, cents: 1 + (i % 1000) };
      });
      await this.annals.transaction(async (tx) => {
        for (const o of batch) await tx.publish(orders, OrderPlaced, o);
      });
      for (const o of batch) {
        const t = this.expected.get(o.customerId) ?? { orders: 0, cents: 0 };
        this.expected.set(o.customerId, { orders: t.orders + 1, cents: t.cents + o.cents });
        this.ids.push(o.orderId);
      }
      done += n;
    }
  }
}

/** md5 of a document table's rows in id order: equal read models have equal checksums. */
async function checksum(table: string): Promise<string> {
  const client = await adminClient();
  const { rows } = await client.query(`SELECT md5(coalesce(string_agg(id || '=' || doc::text, ',' ORDER BY id COLLATE "C"), '')) AS sum, count(*)::int AS n FROM ${table}`);
  return `${rows[0].sum}/${rows[0].n}`;
}

describe('rebuild', () => {
  it('under live load, killed midway and resumed: the rebuilt read model equals the incremental one, every side effect exactly once', async () => {
    const annals = freshAnnals();
    const schema = (annals.storage as PgLogStorage).schema;
    await annals.admin().createTopics({ topics: [orders, sideEffects] });
    // Version 1 serves live from an empty log, so it publishes a side effect for every event.
    const live = annals.register(totalsProjection({ version: 1, schema, publish: true }));
    // The reference: the same read model kept incrementally the whole time, in a schema of its own.
    await annals.transaction(async (tx) => void (await sql`CREATE SCHEMA ${sql.id(`${schema}_ref`)}`.execute(tx.db)));
    annals.register(totalsProjection({ name: 'reference', version: 1, schema: `${schema}_ref` }));
    await annals.start();
    await waitFor('both projections live', async () => (await annals.projections.status()).every((s) => s.state === 'live'));

    const desk = new OrderDesk(annals);
    await desk.place(20_000);
    // Live load for the whole rebuild.
    let loading = true;
    const load = (async () => {
      while (loading) {
        await desk.place(40);
        await sleep(15);
      }
    })();

    try {
      // A first rebuilder is killed once it has committed part of the replay.
      const first = spawnRebuilder(schema, 2, 'rebuild', 500);
      await waitFor('a third of the replay', () => first.progress.some((p) => p.phase === 'replaying' && p.eventsDone > 0 && p.eventsDone >= p.eventsTotal / 3) || first.exited);
      first.child.kill('SIGKILL');
      await waitFor('the first rebuilder to die', () => first.exited);
      expect(first.result).toBeUndefined();
      const midway = (await annals.projections.status(['totals']))[0]!;
      const v2 = midway.versions.find((v) => v.version === 2)!;
      expect(v2.status).toBe('building');
      const checkpointed = v2.checkpoint.reduce((n, c) => n + Number(c.offset ?? 0), 0);
      expect(checkpointed).toBeGreaterThan(0);
      expect(v2.lag).toBeGreaterThan(0);
      expect(midway.activeVersion).toBe(1);

      // A second one resumes from the checkpoint, swaps, and serves version 2 live.
      const second = spawnRebuilder(schema, 2, 'rebuild-then-live', 500);
      await waitFor('the rebuild to finish', () => second.result !== undefined || second.error !== undefined || second.exited, 90_000);
      expect(second.error).toBeUndefined();
      expect(second.result).toMatchObject({ projection: 'totals', version: 2, previousVersion: 1, swapped: true });
      expect(second.progress[0]!.eventsDone).toBeGreaterThanOrEqual(checkpointed);
      expect(second.progress.at(-1)!.phase).toBe('done');
      expect(second.progress.at(-1)!.suppressedPublishes).toBeGreaterThan(0);
      expect(second.progress.some((p) => p.phase === 'replaying' && p.eventsPerSecond > 0 && p.etaMs !== null)).toBe(true);
      // Version 1's runner here stands down at the swap.
      await waitFor('version 1 superseded', async () => (await annals.projections.status(['totals']))[0]!.state === 'superseded');
      expect(live.error()).toBeUndefined();
    } finally {
      loading = false;
      await load;
    }
    await waitFor('version 2 and the reference caught up', async () => {
      const status = await annals.projections.status();
      return status.every((s) => s.lag === 0) && status.find((s) => s.name === 'totals')!.activeVersion === 2;
    });

    const total = desk.ids.length;
    expect(await checksum(`"${schema}".totals_v2`)).toBe(await checksum(`"${schema}_ref".totals_v1`));
    const docs = await annals.projections.documents<Totals>('totals', 'totals');
    expect(docs).toEqual([...desk.expected].sort(([a], [b]) => (a < b ? -1 : 1)));
    // Readers query the view, which now shows version 2.
    const client = await adminClient();
    expect((await client.query(`SELECT count(*)::int AS n FROM "${schema}".totals`)).rows[0].n).toBe(docs.length);

    // Side effects: one per event — none missing, none twice, none from the replay.
    const effects = new Map<string, number>();
    const byVersion = new Map<number, number>();
    for (let offset = 0n; ; ) {
      const { messages } = await annals.fetch(sideEffects.name, 0, offset, { maxRecords: 5000 });
      if (messages.length === 0) break;
      for (const m of messages) {
        const e = annals.decode(sideEffects, 0, m).payload as { orderId: string; version: number };
        effects.set(e.orderId, (effects.get(e.orderId) ?? 0) + 1);
        byVersion.set(e.version, (byVersion.get(e.version) ?? 0) + 1);
      }
      offset = BigInt(messages.at(-1)!.offset) + 1n;
    }
    expect([...effects.values()].filter((n) => n !== 1)).toEqual([]);
    expect(effects.size).toBe(total);
    expect(byVersion.get(1)).toBeGreaterThan(0);
    expect((byVersion.get(1) ?? 0) + (byVersion.get(2) ?? 0)).toBe(total);
    void SideEffect;
  }, 180_000);

  it('a rebuild that lost its lock cannot write once another took the version over', async () => {
    const first = freshAnnals();
    const schema = (first.storage as PgLogStorage).schema;
    await first.admin().createTopics({ topics: [orders] });
    const desk = new OrderDesk(first);
    await desk.place(3_000);
    first.register(totalsProjection({ version: 1, schema, batchSize: 100, rebuildConcurrency: 1, delayMs: 1 }));
    const progress: RebuildProgress[] = [];
    const zombie = first.projections.rebuild('totals', { onProgress: (p) => progress.push(p) });
    zombie.catch(() => {});
    await waitFor('the first rebuild to commit a batch', () => progress.some((p) => p.eventsDone > 0));

    // Its session dies (as a partitioned network would kill it); its process goes on.
    const client = await adminClient();
    const key = await client.query(`SELECT hashtextextended($1, 0)::text AS k`, [`annals:projection:${schema}:totals`]);
    const killed = await client.query(
      `SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted AND ((classid::bigint << 32) | objid::bigint)::text = $1`,
      [key.rows[0].k],
    );
    expect(killed.rows.length).toBe(1);

    const second = new Annals({ clientId: 'second', storage: freshStorage({ schema, migrate: false }) });
    second.register(totalsProjection({ version: 1, schema, batchSize: 500 }));
    const result = await second.projections.rebuild('totals');
    expect(result).toMatchObject({ version: 1, swapped: true });
    const failure = await zombie.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(failure).toBeInstanceOf(IllegalGenerationError);
    expect(await second.projections.documents<Totals>('totals', 'totals')).toEqual([...desk.expected].sort(([a], [b]) => (a < b ? -1 : 1)));
    await second.disconnect();
  }, 60_000);
});

describe('SQL read models', () => {
  interface DB {
    customer_totals: { customer_id: string; cents: number; orders?: number };
  }

  const sqlTotals = (schema: string, version: number) =>
    defineProjection({
      name: 'sql-totals',
      version,
      schema,
      topics: [orders],
      tables: ['customer_totals'],
      consumer: { heartbeatInterval: 100, maxWaitTimeInMs: 100 },
      // Version 2 adds a column: its table is new, the view is re-pointed at the swap.
      setup: async ({ db, table }) => {
        await sql`CREATE TABLE ${sql.table(table('customer_totals'))} (customer_id text PRIMARY KEY, cents bigint NOT NULL ${version >= 2 ? sql`, orders int NOT NULL` : sql``})`.execute(db as Kysely<DB>);
      },
      handlers: [
        on(OrderPlaced, async (order, ctx: ProjectionContext<Kysely<DB>>) => {
          const t = sql.table(ctx.table('customer_totals'));
          if (version >= 2) {
            await sql`INSERT INTO ${t} (customer_id, cents, orders) VALUES (${order.customerId}, ${order.cents}, 1)
              ON CONFLICT (customer_id) DO UPDATE SET cents = ${t}.cents + excluded.cents, orders = ${t}.orders + 1`.execute(ctx.tx.db);
          } else {
            await sql`INSERT INTO ${t} (customer_id, cents) VALUES (${order.customerId}, ${order.cents})
              ON CONFLICT (customer_id) DO UPDATE SET cents = ${t}.cents + excluded.cents`.execute(ctx.tx.db);
          }
        }),
      ],
    });

  it('setup creates each version’s tables; handlers write through tx.db; the view follows the swap', async () => {
    const annals = freshAnnals<DB>();
    const schema = (annals.storage as PgLogStorage).schema;
    await annals.admin().createTopics({ topics: [orders] });
    const desk = new OrderDesk(annals as Annals<Kysely<unknown>>);
    await desk.place(300);
    annals.register(sqlTotals(schema, 1));
    await annals.start();
    await waitFor('v1 live and caught up', async () => (await annals.projections.status())[0]!.lag === 0 && (await annals.projections.status())[0]!.state === 'live');
    expect(await annals.projections.readName('sql-totals', 'customer_totals')).toBe(`${schema}.customer_totals`);
    const client = await adminClient();
    const read = async () => (await client.query(`SELECT * FROM "${schema}".customer_totals ORDER BY customer_id`)).rows;
    expect((await read())[0]).toEqual({ customer_id: expect.any(String), cents: expect.any(String) });
    expect((await read()).reduce((n, r) => n + Number(r.cents), 0)).toBe([...desk.expected.values()].reduce((n, t) => n + t.cents, 0));

    const next = new Annals({ clientId: 'next', storage: freshStorage<DB>({ schema, migrate: false }) });
    next.register(sqlTotals(schema, 2));
    await next.projections.rebuild('sql-totals');
    const rows = await read();
    expect(rows.map((r) => ({ customer_id: r.customer_id, cents: Number(r.cents), orders: r.orders }))).toEqual(
      [...desk.expected].sort(([a], [b]) => (a < b ? -1 : 1)).map(([customer_id, t]) => ({ customer_id, cents: t.cents, orders: t.orders })),
    );
    await next.disconnect();
  }, 60_000);
});

describe('given/when/then on PostgreSQL', () => {
  it('runs a projection specification on a real store', async () => {
    const storage = freshStorage();
    const schema = storage.schema;
    await given(
      event(orders, OrderPlaced, { orderId: 'o-1', customerId: 'c-1', cents: 100 }),
      event(orders, OrderPlaced, { orderId: 'o-2', customerId: 'c-1', cents: 50 }),
    )
      .when(totalsProjection({ version: 1, schema, publish: true }), { storage, topics: [sideEffects] })
      .and(event(orders, OrderPlaced, { orderId: 'o-3', customerId: 'c-2', cents: 7 }))
      .then({
        documents: { totals: { 'c-1': { orders: 2, cents: 150 }, 'c-2': { orders: 1, cents: 7 } } },
        published: [{ type: 'side.effect', payload: { orderId: 'o-3', version: 1 } }],
      });
  });
});
