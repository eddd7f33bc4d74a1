/**
 * `PgLogStorage` against the storage conformance suite of `@annals/testing` — the same suite
 * `InMemoryLogStorage` passes. Every test gets a fresh schema (migrated on connect) in the
 * database named by DATABASE_URL, dropped after the test.
 */
import { randomBytes } from 'node:crypto';
import { describeLogStorageConformance } from '@annals/testing';
import pg from 'pg';
import { PgLogStorage } from './pg-log-storage.js';

const connectionString = process.env['DATABASE_URL'] ?? 'postgres://postgres@127.0.0.1:5432/test';

describeLogStorageConformance('PgLogStorage', async () => {
  const schema = `conf_${randomBytes(6).toString('hex')}`;
  const storage = new PgLogStorage({ connectionString, schema });
  return {
    storage,
    cleanup: async () => {
      await storage.disconnect();
      const client = new pg.Client({ connectionString });
      client.on('error', () => {});
      await client.connect();
      try {
        await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      } finally {
        await client.end();
      }
    },
  };
});
