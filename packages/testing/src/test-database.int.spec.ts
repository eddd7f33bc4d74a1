import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createTestDatabase, useTestDatabase } from './harness.js';

const first = useTestDatabase();
const second = useTestDatabase({ label: 'second' });

async function query<R extends pg.QueryResultRow>(connectionString: string, sql: string, params: unknown[] = []) {
  const client = new pg.Client({ connectionString });
  await client.connect();
  try {
    return (await client.query<R>(sql, params)).rows;
  } finally {
    await client.end();
  }
}

async function exists(name: string): Promise<boolean> {
  const rows = await query(inject('annalsAdminUrl'), 'select 1 from pg_database where datname = $1', [name]);
  return rows.length === 1;
}

describe('useTestDatabase', () => {
  it('names the database after the spec file, or the label', () => {
    expect(first.name).toMatch(/^annals_t_test_database_[0-9a-z]{8}$/);
    expect(second.name).toMatch(/^annals_t_second_[0-9a-z]{8}$/);
    expect(first.connectionString).toContain(`/${first.name}`);
  });

  it('gives each call its own database, which exists while the tests run', async () => {
    expect(first.name).not.toBe(second.name);
    expect(await exists(first.name)).toBe(true);
    expect(await exists(second.name)).toBe(true);
    expect(await query(first.connectionString, 'select current_database() as db')).toEqual([{ db: first.name }]);
    expect(await query(second.connectionString, 'select current_database() as db')).toEqual([{ db: second.name }]);
  });

  it('creates the database fresh: no tables, and one database does not see the other', async () => {
    const tables = "select count(*)::int as n from information_schema.tables where table_schema = 'public'";
    expect(await query(first.connectionString, tables)).toEqual([{ n: 0 }]);
    await query(first.connectionString, 'create table only_in_first (id int)');
    expect(await query(first.connectionString, tables)).toEqual([{ n: 1 }]);
    expect(await query(second.connectionString, tables)).toEqual([{ n: 0 }]);
  });
});

describe('useTestDatabase inside a describe', () => {
  const scoped = useTestDatabase({ label: 'scoped' });
  let names: string[] = [];
  beforeAll(() => {
    names = [scoped.name];
  });
  afterAll(async () => {
    // afterAll hooks run as a stack: this one runs before useTestDatabase's, which drops it.
    expect(await exists(names[0] ?? '')).toBe(true);
  });

  it('has its own database next to the file-level ones', () => {
    expect(new Set([first.name, second.name, scoped.name]).size).toBe(3);
  });
});

describe('createTestDatabase', () => {
  it('creates a database that disposing drops, ending open connections', async () => {
    let name: string;
    {
      await using db = await createTestDatabase(inject('annalsAdminUrl'), 'Odd "label"; drop database x --');
      name = db.name;
      expect(name).toMatch(/^annals_t_odd_label_drop_database_x_[0-9a-z]{8}$/);
      expect(await exists(name)).toBe(true);
      const open = new pg.Client({ connectionString: db.connectionString });
      open.on('error', () => undefined); // it is terminated by DROP DATABASE ... WITH (FORCE)
      await open.connect();
    }
    expect(await exists(name)).toBe(false);
  });

  it('drop is idempotent', async () => {
    const db = await createTestDatabase(inject('annalsAdminUrl'), 'twice');
    await Promise.all([db.drop(), db.drop()]);
    await db.drop();
    expect(await exists(db.name)).toBe(false);
  });
});
