import { PgLogStorage, type PgLogStorageInput } from './pg-log-storage.js';

/**
 * The Postgres log at a connection string or in a pool you own.
 *
 * @example
 * ```ts
 * const annals = new Annals({ clientId: 'app', storage: postgres({ connectionString: process.env.DATABASE_URL }) });
 * // or, with your own pool (Annals never ends it):
 * const annals = new Annals({ clientId: 'app', storage: postgres<Database>({ pool }) });
 * ```
 */
export function postgres<DB = unknown>(input: PgLogStorageInput): PgLogStorage<DB> {
  return new PgLogStorage<DB>(input);
}
