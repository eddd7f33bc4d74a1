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

describe('migrations', () => {
  it('applies each migration in order, and each rolls back', async () => {
    const schema = `m_${randomBytes(4).toString('hex')}`;
    const pool = new pg.Pool({ connectionString: database.connectionString });
    const db = new Kysely<unknown>({ dialect: new PostgresDialect({ pool }) });
    const client = await adminClient();
    try {
      expect(migrationNames()).toEqual(['0001_log', '0002_consumer_groups']);
      expect((await migrateToLatest(db, schema, '0001_log')).applied).toEqual(['0001_log']);
      expect(await tablesOf(client, schema)).toEqual(['annals_migration', 'annals_migration_lock', 'partitions', 'producer_state', 'records', 'topics', 'transactional_ids']);
      expect((await migrateToLatest(db, schema)).applied).toEqual(['0002_consumer_groups']);
      expect(await tablesOf(client, schema)).toContain('partition_owners');
      expect((await migrateToLatest(db, schema)).applied).toEqual([]);
      await migrateDown(db, schema);
      expect(await tablesOf(client, schema)).not.toContain('partition_owners');
      await migrateDown(db, schema);
      expect(await tablesOf(client, schema)).toEqual(['annals_migration', 'annals_migration_lock']);
    } finally {
      await db.destroy();
    }
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
