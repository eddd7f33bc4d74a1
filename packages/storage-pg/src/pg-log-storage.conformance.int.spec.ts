/**
 * `PgLogStorage` against the storage conformance suite of `@annals/testing` — the same suite
 * `InMemoryLogStorage` passes. Every test gets a fresh schema (migrated on connect) in this spec
 * file's database, dropped after the test.
 */
import { randomBytes } from 'node:crypto';
import { describeLogStorageConformance, useTestDatabase } from '@annals/testing';
import { PgLogStorage } from './pg-log-storage.js';

const database = useTestDatabase();

describeLogStorageConformance('PgLogStorage', async () => {
  const schema = `conf_${randomBytes(6).toString('hex')}`;
  const storage = new PgLogStorage({ connectionString: database.connectionString, schema });
  return {
    storage,
    cleanup: async () => {
      await storage.disconnect();
      // The whole database is dropped after the file; schemas need no separate cleanup.
    },
  };
});
