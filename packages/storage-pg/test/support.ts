/** Shared helpers of storage-pg's integration tests. */
import { Annals } from '@annals/core';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll } from 'vitest';
import { PgLogStorage, type PgLogStorageInput } from '../src/index.js';
import { useTestDatabase } from '@annals/testing';

/** This spec file's fresh database (created in beforeAll, dropped in afterAll unless a test failed). */
export const database = useTestDatabase();

const cleanups: Array<() => Promise<void>> = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => {});
});

/** A fresh schema's storage in this file's database; disconnected after the file. */
export function freshStorage<DB = unknown>(input: Partial<PgLogStorageInput> = {}): PgLogStorage<DB> {
  const storage = new PgLogStorage<DB>({
    connectionString: database.connectionString,
    schema: `t_${randomBytes(5).toString('hex')}`,
    ...input,
  } as PgLogStorageInput);
  cleanups.push(() => storage.disconnect());
  return storage;
}

/** A client over a fresh schema; disconnected after the file. */
export function freshAnnals<DB = unknown>(input: Partial<PgLogStorageInput> = {}): Annals<import('kysely').Kysely<DB>> {
  const annals = new Annals({ clientId: 'test', storage: freshStorage<DB>(input), retry: { retries: 8, initialRetryTime: 50, maxRetryTime: 1000 } });
  cleanups.push(() => annals.disconnect());
  return annals;
}

/** A plain pg client on this file's database; closed after the file. */
export async function adminClient(): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: database.connectionString });
  await client.connect();
  cleanups.push(() => client.end());
  return client;
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
