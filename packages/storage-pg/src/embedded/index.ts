export { EmbeddedPostgresServer, resolveEmbeddedPostgresOptions } from './embedded-server.js';
export type {
  EmbeddedPostgresInput,
  EmbeddedPostgresOptions,
  PgConnectionInfo,
  PostgresSettingValue,
} from './embedded-server.js';
