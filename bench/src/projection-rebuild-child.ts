/**
 * One side of the projection-rebuild benchmark, in a process of its own so its peak RSS is its
 * own: `raw` reads the topic's records with keyset SELECTs; `rebuild` rebuilds a projection (a
 * document per customer, upserted) over the same records. Reports over IPC.
 */
import { Annals, defineProjection, on } from '@annals/core';
import { postgres } from '@annals/storage-pg';
import pg from 'pg';
import { BenchOrderPlaced, REBUILD_TOPIC, rebuildTopic, type RebuildChildInput, type RebuildChildResult } from './projection-rebuild.js';

async function raw(input: RebuildChildInput): Promise<RebuildChildResult> {
  const client = new pg.Client({ connectionString: input.url });
  await client.connect();
  const table = `"${input.schema}".records`;
  let count = 0;
  const t0 = performance.now();
  for (let p = 0; p < input.partitions; p++) {
    let offset = 0;
    for (;;) {
      const { rows } = await client.query<{ offset: string }>(
        `SELECT "offset", "timestamp", key, value, headers FROM ${table} WHERE topic = $1 AND partition = $2 AND "offset" >= $3 ORDER BY "offset" LIMIT ${input.fetchSize}`,
        [REBUILD_TOPIC, p, offset],
      );
      count += rows.length;
      if (rows.length < input.fetchSize) break;
      offset = Number(rows[rows.length - 1]!.offset) + 1;
    }
  }
  const elapsedMs = performance.now() - t0;
  await client.end();
  return { events: count, elapsedMs, maxRssKb: process.resourceUsage().maxRSS };
}

async function rebuild(input: RebuildChildInput): Promise<RebuildChildResult> {
  const annals = new Annals({ clientId: 'bench-rebuild', storage: postgres({ connectionString: input.url, schema: input.schema, migrate: false, poolSize: 8 }) });
  const topic = rebuildTopic(input.partitions);
  annals.register(
    defineProjection({
      name: 'bench-totals',
      version: input.version,
      topics: [topic],
      schema: input.schema,
      documents: ['bench_totals'],
      autoRebuild: false,
      batchSize: input.batchSize,
      handlers: [
        on(BenchOrderPlaced, (order, ctx) =>
          ctx.documents<{ cents: number; orders: number }>('bench_totals').update(order.customerId, (t) => ({ cents: (t?.cents ?? 0) + order.cents, orders: (t?.orders ?? 0) + 1 })),
        ),
      ],
    }),
  );
  const t0 = performance.now();
  const result = await annals.projections.rebuild('bench-totals');
  const elapsedMs = performance.now() - t0;
  if (input.version > 1) await annals.projections.dropVersion('bench-totals', input.version - 1);
  await annals.disconnect();
  return { events: result.events, elapsedMs, maxRssKb: process.resourceUsage().maxRSS };
}

process.once('message', (input: RebuildChildInput) => {
  (input.mode === 'raw' ? raw(input) : rebuild(input)).then(
    (result) => process.send!({ ok: true, result }, () => process.exit(0)),
    (error: unknown) => process.send!({ ok: false, error: error instanceof Error ? (error.stack ?? error.message) : String(error) }, () => process.exit(1)),
  );
});
