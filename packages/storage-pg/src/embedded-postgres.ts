import { EmbeddedPostgresServer, type EmbeddedPostgresInput, type PgConnectionInfo } from './embedded/index.js';
import { PgLogStorage, type PgLogStorageInput } from './pg-log-storage.js';

/** Options of {@link embeddedPostgres}: the server's options plus the log's. */
export interface EmbeddedPostgresStorageInput
  extends EmbeddedPostgresInput,
    Pick<PgLogStorageInput, 'schema' | 'poolSize' | 'migrate' | 'connectionTimeoutMs' | 'wakeupIntervalMs'> {}

/**
 * The Annals log on a real PostgreSQL started from node (binaries from the npm registry). The
 * server starts on `connect()` (or `start()`) and stops on `disconnect()`, on process exit and on
 * SIGINT/SIGTERM.
 */
export class EmbeddedPostgres<DB = unknown> extends PgLogStorage<DB> {
  /** The server this storage runs. */
  readonly server: EmbeddedPostgresServer;

  constructor(input: EmbeddedPostgresStorageInput = {}) {
    const { schema, poolSize, migrate, connectionTimeoutMs, wakeupIntervalMs, ...serverInput } = input;
    const server = new EmbeddedPostgresServer(serverInput);
    super({
      connectionStringProvider: async () => (await server.start()).connectionString,
      ...(schema === undefined ? {} : { schema }),
      ...(poolSize === undefined ? {} : { poolSize }),
      ...(migrate === undefined ? {} : { migrate }),
      ...(connectionTimeoutMs === undefined ? {} : { connectionTimeoutMs }),
      ...(wakeupIntervalMs === undefined ? {} : { wakeupIntervalMs }),
    });
    this.server = server;
  }

  override get description(): string {
    return `embedded postgres (schema ${this.schema})`;
  }

  /** Starts the server (idempotent) and returns what `postgres({ connectionString })` needs to connect. */
  start(): Promise<PgConnectionInfo> {
    return this.server.start();
  }

  /** Closes the pool, then stops the server. Idempotent. */
  override async disconnect(): Promise<void> {
    await super.disconnect();
    await this.server.stop();
  }
}

/**
 * A log on an embedded PostgreSQL: no installed server needed. Pass it as `storage`, or call
 * `start()` for a connection string to use elsewhere.
 *
 * @example
 * ```ts
 * const storage = process.env.DATABASE_URL
 *   ? postgres({ connectionString: process.env.DATABASE_URL })
 *   : embeddedPostgres({ persistent: true }); // data kept in ./.annals/pgdata
 * const annals = new Annals({ clientId: 'demo', storage });
 * ```
 */
export function embeddedPostgres<DB = unknown>(input: EmbeddedPostgresStorageInput = {}): EmbeddedPostgres<DB> {
  return new EmbeddedPostgres<DB>(input);
}
