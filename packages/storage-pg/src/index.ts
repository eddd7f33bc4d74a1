/**
 * @annals/storage-pg — the Annals log in PostgreSQL, and the embedded PostgreSQL default.
 * The export list is written out by name: anything not listed here is internal.
 */
export { PgLogStorage } from './pg-log-storage.js';
export type { PgLogStorageInput } from './pg-log-storage.js';
export { postgres } from './postgres.js';
export { PgSchemaRegistry } from './pg-schema-registry.js';
export { migrateToLatest, migrateDown, migrationNames } from './migrations.js';
export type { MigrateResult } from './migrations.js';
export { EmbeddedPostgres, embeddedPostgres } from './embedded-postgres.js';
export type { EmbeddedPostgresStorageInput } from './embedded-postgres.js';
export { EmbeddedPostgresServer, resolveEmbeddedPostgresOptions } from './embedded/index.js';
export type { EmbeddedPostgresInput, EmbeddedPostgresOptions, PgConnectionInfo, PostgresSettingValue } from './embedded/index.js';
