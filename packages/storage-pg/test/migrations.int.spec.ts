/** Schema migrations: each one applies and rolls back, concurrent starts migrate once, and the resulting schema is pinned. */
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { PgLogStorage, migrateDown, migrateToLatest, migrationNames } from '../src/index.js';
import { adminClient, database } from './support.js';

async function tablesOf(client: pg.Client, schema: string): Promise<string[]> {
  const { rows } = await client.query(`SELECT table_name FROM information_schema.tables WHERE table_schema = $1 ORDER BY 1`, [schema]);
  return rows.map((r) => r.table_name);
}

/** A fresh schema name, a Kysely over a pool of its own (destroyed afterwards) and the admin client. */
async function withMigrationDb(fn: (m: { schema: string; db: Kysely<unknown>; client: pg.Client }) => Promise<void>): Promise<void> {
  const schema = `m_${randomBytes(4).toString('hex')}`;
  const pool = new pg.Pool({ connectionString: database.connectionString });
  const db = new Kysely<unknown>({ dialect: new PostgresDialect({ pool }) });
  const client = await adminClient();
  try {
    await fn({ schema, db, client });
  } finally {
    await db.destroy();
  }
}

async function columnsOf(client: pg.Client, schema: string, table: string): Promise<string[]> {
  const { rows } = await client.query(`SELECT column_name FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2 ORDER BY 1`, [schema, table]);
  return rows.map((r) => r.column_name);
}

describe('migrations', () => {
  it('applies each migration in order; the early ones roll back', async () => {
    await withMigrationDb(async ({ schema, db, client }) => {
      const names = migrationNames();
      expect(names.slice(0, 3)).toEqual(['0001_log', '0002_consumer_groups', '0003_aggregates']);
      expect(names).toContain('0004_retention');
      expect(names).toContain('0005_projections');
      expect(names).toContain('0006_cleaner');
      expect(names).toContain('0007_schema_registry');
      expect(names).toContain('0008_stream_marks');
      expect((await migrateToLatest(db, schema, '0001_log')).applied).toEqual(['0001_log']);
      expect(await tablesOf(client, schema)).toEqual(['annals_migration', 'annals_migration_lock', 'partitions', 'producer_state', 'records', 'topics', 'transactional_ids']);
      expect((await migrateToLatest(db, schema, '0002_consumer_groups')).applied).toEqual(['0002_consumer_groups']);
      expect(await tablesOf(client, schema)).toContain('partition_owners');
      await migrateDown(db, schema);
      expect(await tablesOf(client, schema)).not.toContain('partition_owners');
      await migrateDown(db, schema);
      expect(await tablesOf(client, schema)).toEqual(['annals_migration', 'annals_migration_lock']);
      expect((await migrateToLatest(db, schema)).applied).toEqual(names);
      expect(await tablesOf(client, schema)).toEqual(expect.arrayContaining(['segments', 'time_index', 'partition_owners', 'projections', 'projection_versions', 'schema_registry']));
      expect((await migrateToLatest(db, schema)).applied).toEqual([]);
    });
  });

  it('0003_aggregates adds the stream tables and the partial (topic, partition, key, offset) index, rolls back, and its index survives the move to segments', async () => {
    await withMigrationDb(async ({ schema, db, client }) => {
      const streamIndexes = async () =>
        (
          await client.query(`SELECT tablename, indexdef FROM pg_indexes WHERE schemaname = $1 AND indexdef LIKE '%(topic, partition, key, "offset")%' ORDER BY tablename`, [schema])
        ).rows as Array<{ tablename: string; indexdef: string }>;
      await migrateToLatest(db, schema, '0003_aggregates');
      expect(await tablesOf(client, schema)).toEqual(expect.arrayContaining(['stream_versions', 'stream_snapshots']));
      expect((await streamIndexes()).map((i) => [i.tablename, /WHERE \(key IS NOT NULL\)/.test(i.indexdef)])).toEqual([['records', true]]);
      await migrateDown(db, schema);
      expect(await tablesOf(client, schema)).not.toContain('stream_versions');
      expect(await streamIndexes()).toEqual([]);
      await migrateToLatest(db, schema, '0003_aggregates');
      await client.query(`INSERT INTO "${schema}".topics (name, partitions, config) VALUES ('old', 1, '{}')`);
      await client.query(`INSERT INTO "${schema}".partitions (topic, partition, next_offset) VALUES ('old', 0, 2)`);
      await client.query(`INSERT INTO "${schema}".records (topic, partition, "offset", "timestamp", key, value) VALUES ('old', 0, 0, now(), 'k', 'a'), ('old', 0, 1, now(), 'k', 'b')`);
      await migrateToLatest(db, schema);
      const after = await streamIndexes();
      expect(after.map((i) => i.tablename)).toEqual(expect.arrayContaining(['records', 'records_t1', 'records_t1_p0_0']));
      expect(after.every((i) => /WHERE \(key IS NOT NULL\)/.test(i.indexdef))).toBe(true);
      const storage = new PgLogStorage({ connectionString: database.connectionString, schema });
      await storage.connect();
      try {
        expect((await storage.readStream('old', 0, Buffer.from('k'))).records.map((r) => Buffer.from(r.value!).toString())).toEqual(['a', 'b']);
      } finally {
        await storage.disconnect();
      }
    });
  });

  it('0006_cleaner moves the cleaned offset off the head row, indexes tombstones on every segment, and rolls back', async () => {
    await withMigrationDb(async ({ schema, db, client }) => {
      const columns = () => columnsOf(client, schema, 'partitions');
      const tombstoneIndexes = async () =>
        (await client.query(`SELECT tablename FROM pg_indexes WHERE schemaname = $1 AND indexdef LIKE '%WHERE (value IS NULL)%' ORDER BY 1`, [schema])).rows.map((r) => r.tablename);
      await migrateToLatest(db, schema, '0005_projections');
      await client.query(`INSERT INTO "${schema}".topics (name, partitions, config) VALUES ('t', 1, '{"segment.records": 1000}')`);
      await client.query(`INSERT INTO "${schema}".partitions (topic, partition) VALUES ('t', 0)`);
      await client.query(`SELECT "${schema}".ensure_segments('t', 0, 1500, 1000)`);
      expect(await columns()).toContain('cleaned_offset');
      expect(await tombstoneIndexes()).toEqual([]);
      await migrateToLatest(db, schema, '0006_cleaner');
      expect(await columns()).not.toContain('cleaned_offset');
      expect(await tablesOf(client, schema)).toContain('partition_cleaning');
      expect(await tombstoneIndexes()).toEqual(['records', 'records_t1', 'records_t1_p0_0', 'records_t1_p0_1000']);
      await migrateDown(db, schema);
      expect(await columns()).toContain('cleaned_offset');
      expect(await tablesOf(client, schema)).not.toContain('partition_cleaning');
      expect(await tombstoneIndexes()).toEqual([]);
    });
  });

  it('moves records written before the segmented layout into segments, offsets unchanged', async () => {
    await withMigrationDb(async ({ schema, db, client }) => {
      await migrateToLatest(db, schema, '0002_consumer_groups');
      await client.query(`INSERT INTO "${schema}".topics (name, partitions, config) VALUES ('old', 2, '{}')`);
      await client.query(`INSERT INTO "${schema}".partitions (topic, partition, next_offset) VALUES ('old', 0, 3), ('old', 1, 0)`);
      await client.query(
        `INSERT INTO "${schema}".records (topic, partition, "offset", "timestamp", value) SELECT 'old', 0, g, now(), convert_to('v' || g, 'UTF8') FROM generate_series(0, 2) g`,
      );
      await migrateToLatest(db, schema);
      const storage = new PgLogStorage({ connectionString: database.connectionString, schema });
      await storage.connect();
      try {
        const fetched = await storage.fetch('old', 0, 0n, { maxRecords: 10, maxBytes: 1 << 20 });
        expect(fetched.records.map((r) => [r.offset, Buffer.from(r.value!).toString()])).toEqual([
          [0n, 'v0'],
          [1n, 'v1'],
          [2n, 'v2'],
        ]);
        const [appended] = await storage.append([{ topic: 'old', partition: 0, records: [{ key: null, value: Buffer.from('v3'), headers: null, timestamp: null }] }]);
        expect(appended!.baseOffset).toBe(3n);
        const segments = await client.query(`SELECT partition, base_offset::int, end_offset::int FROM "${schema}".segments ORDER BY 1, 2`);
        expect(segments.rows).toEqual([
          { partition: 0, base_offset: 0, end_offset: 100000 },
          { partition: 0, base_offset: 100000, end_offset: 200000 },
          { partition: 1, base_offset: 0, end_offset: 100000 },
          { partition: 1, base_offset: 100000, end_offset: 200000 },
        ]);
      } finally {
        await storage.disconnect();
      }
    });
  });

  it('0007_schema_registry adds the registry table (fingerprint checked by the database) and rolls back', async () => {
    await withMigrationDb(async ({ schema, db, client }) => {
      await migrateToLatest(db, schema);
      expect(await tablesOf(client, schema)).toContain('schema_registry');
      const bad = await client
        .query(`INSERT INTO "${schema}".schema_registry (event_type, version, fingerprint, schema) VALUES ('e', 1, 'md5:x', '{}')`)
        .catch((e: { code?: string }) => e.code);
      expect(bad).toBe('23514'); // check_violation
      await migrateDown(db, schema); // 0009
      await migrateDown(db, schema); // 0008
      await migrateDown(db, schema);
      expect(await tablesOf(client, schema)).not.toContain('schema_registry');
      expect((await migrateToLatest(db, schema)).applied).toEqual(['0007_schema_registry', '0008_stream_marks', '0009_watch_leases']);
    });
  });

  it('0008_stream_marks adds the head marks (0 on existing partitions) and stream_tail, and rolls back', async () => {
    await withMigrationDb(async ({ schema, db, client }) => {
      const columns = () => columnsOf(client, schema, 'partitions');
      const tail = async () => (await client.query(`SELECT to_regprocedure($1) AS f`, [`"${schema}".stream_tail(text, integer, bytea, bigint)`])).rows[0].f;
      await migrateToLatest(db, schema, '0007_schema_registry');
      await client.query(`INSERT INTO "${schema}".topics (name, partitions, config) VALUES ('t', 1, '{}')`);
      await client.query(`INSERT INTO "${schema}".partitions (topic, partition, next_offset) VALUES ('t', 0, 42)`);
      expect(await columns()).not.toContain('stream_end');
      expect((await migrateToLatest(db, schema, '0008_stream_marks')).applied).toEqual(['0008_stream_marks']);
      expect(await columns()).toEqual(expect.arrayContaining(['stream_end', 'plain_end']));
      const { rows } = await client.query(`SELECT next_offset, stream_end, plain_end FROM "${schema}".partitions WHERE topic = 't'`);
      // A head with records and marks (0, 0): every record lies at or above stream_end, so the next
      // stream append reads the records rather than trusting a counter.
      expect(rows[0]).toEqual({ next_offset: '42', stream_end: '0', plain_end: '0' });
      expect(await tail()).not.toBeNull();
      await migrateDown(db, schema);
      expect(await columns()).not.toContain('stream_end');
      expect(await tail()).toBeNull();
    });
  });

  it('0009_watch_leases adds the watch lease (NULL: never watched) and rolls back', async () => {
    await withMigrationDb(async ({ schema, db, client }) => {
      const columns = () => columnsOf(client, schema, 'partitions');
      await migrateToLatest(db, schema, '0008_stream_marks');
      await client.query(`INSERT INTO "${schema}".topics (name, partitions, config) VALUES ('t', 1, '{}')`);
      await client.query(`INSERT INTO "${schema}".partitions (topic, partition, next_offset) VALUES ('t', 0, 7)`);
      expect(await columns()).not.toContain('watched_until');
      expect((await migrateToLatest(db, schema)).applied).toEqual(['0009_watch_leases']);
      const { rows } = await client.query(`SELECT next_offset, watched_until FROM "${schema}".partitions WHERE topic = 't'`);
      expect(rows[0]).toEqual({ next_offset: '7', watched_until: null });
      await migrateDown(db, schema);
      expect(await columns()).not.toContain('watched_until');
      expect((await client.query(`SELECT next_offset FROM "${schema}".partitions`)).rows).toEqual([{ next_offset: '7' }]);
    });
  });

  it('migrates exactly once when many processes start at the same moment', async () => {
    const schema = `m_${randomBytes(4).toString('hex')}`;
    const storages = Array.from({ length: 6 }, () => new PgLogStorage({ connectionString: database.connectionString, schema }));
    try {
      await Promise.all(storages.map((s) => s.connect()));
      const client = await adminClient();
      const { rows } = await client.query(`SELECT name FROM "${schema}".annals_migration ORDER BY name`);
      expect(rows.map((r) => r.name)).toEqual(migrationNames());
    } finally {
      await Promise.all(storages.map((s) => s.disconnect()));
    }
  });

  it('produces the pinned schema (change it only with a new migration)', async () => {
    const schema = `m_${randomBytes(4).toString('hex')}`;
    const storage = new PgLogStorage({ connectionString: database.connectionString, schema });
    await storage.connect();
    await storage.disconnect();
    const client = await adminClient();
    const { rows } = await client.query(
      `SELECT table_name, column_name, data_type, is_nullable, column_default
       FROM information_schema.columns WHERE table_schema = $1 AND table_name NOT LIKE 'annals_migration%'
       ORDER BY table_name, ordinal_position`,
      [schema],
    );
    const keys = await client.query(
      `SELECT tc.table_name, string_agg(kcu.column_name, ',' ORDER BY kcu.ordinal_position) AS columns
       FROM information_schema.table_constraints tc JOIN information_schema.key_column_usage kcu
         ON kcu.constraint_name = tc.constraint_name AND kcu.table_schema = tc.table_schema
       WHERE tc.table_schema = $1 AND tc.constraint_type = 'PRIMARY KEY' AND tc.table_name NOT LIKE 'annals_migration%'
       GROUP BY tc.table_name ORDER BY 1`,
      [schema],
    );
    const describe = rows.map((r) => `${r.table_name}.${r.column_name} ${r.data_type}${r.is_nullable === 'NO' ? ' not null' : ''}${r.column_default ? ` default ${String(r.column_default).replace(schema, '<schema>')}` : ''}`);
    expect({ columns: describe, primaryKeys: keys.rows.map((r) => `${r.table_name}(${r.columns})`) }).toMatchSnapshot();
  });
});
