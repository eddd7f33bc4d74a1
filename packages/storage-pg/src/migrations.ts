/**
 * Versioned schema migrations, applied with Kysely's Migrator.
 *
 * Migrations run under a session advisory lock on one connection, so several processes starting
 * at once apply them exactly once (Kysely's own lock table is created with `IF NOT EXISTS`
 * statements that race under concurrency; the advisory lock serialises everything, including
 * `CREATE SCHEMA`). Names sort in apply order. Never edit a released migration: add a new one.
 */
import { Kysely, sql } from 'kysely';
import { Migrator, type Migration } from 'kysely/migration';
import { quoteIdent } from './internal/ident.js';

type AnyDb = Kysely<any>;

function migrations(schema: string): Record<string, Migration> {
  const s = quoteIdent(schema);
  const t = (name: string) => sql.raw(`${s}.${quoteIdent(name)}`);
  return {
    '0001_log': {
      async up(db: AnyDb) {
        await sql`CREATE TABLE ${t('topics')} (
          name        text PRIMARY KEY,
          partitions  integer NOT NULL CHECK (partitions > 0),
          config      jsonb NOT NULL,
          created_at  timestamptz NOT NULL DEFAULT now()
        )`.execute(db);
        // One head row per partition: appends lock it, so they commit in offset order.
        await sql`CREATE TABLE ${t('partitions')} (
          topic             text NOT NULL REFERENCES ${t('topics')} (name) ON DELETE CASCADE,
          partition         integer NOT NULL,
          next_offset       bigint NOT NULL DEFAULT 0,
          log_start_offset  bigint NOT NULL DEFAULT 0,
          PRIMARY KEY (topic, partition)
        )`.execute(db);
        await sql`CREATE TABLE ${t('records')} (
          topic        text NOT NULL,
          partition    integer NOT NULL,
          "offset"     bigint NOT NULL,
          "timestamp"  timestamptz NOT NULL,
          key          bytea,
          value        bytea,
          headers      bytea,
          PRIMARY KEY (topic, partition, "offset")
        )`.execute(db);
        await sql`CREATE SEQUENCE ${t('producer_ids')}`.execute(db);
        await sql`CREATE TABLE ${t('transactional_ids')} (
          transactional_id  text PRIMARY KEY,
          producer_id       bigint NOT NULL,
          epoch             integer NOT NULL,
          updated_at        timestamptz NOT NULL DEFAULT now()
        )`.execute(db);
        // Idempotent producers: the last batch written per (producer, partition).
        await sql`CREATE TABLE ${t('producer_state')} (
          producer_id     bigint NOT NULL,
          topic           text NOT NULL,
          partition       integer NOT NULL,
          base_sequence   integer NOT NULL,
          last_sequence   integer NOT NULL,
          base_offset     bigint NOT NULL,
          updated_at      timestamptz NOT NULL DEFAULT now(),
          PRIMARY KEY (producer_id, topic, partition)
        )`.execute(db);
      },
      async down(db: AnyDb) {
        for (const name of ['producer_state', 'transactional_ids', 'records', 'partitions', 'topics']) {
          await sql`DROP TABLE ${t(name)}`.execute(db);
        }
        await sql`DROP SEQUENCE ${t('producer_ids')}`.execute(db);
      },
    },
    '0002_consumer_groups': {
      async up(db: AnyDb) {
        await sql`CREATE TABLE ${t('group_members')} (
          group_id            text NOT NULL,
          member_id           text NOT NULL,
          client_id           text NOT NULL,
          client_host         text NOT NULL,
          topics              text[] NOT NULL,
          session_timeout_ms  integer NOT NULL,
          backend_pid         integer NOT NULL,
          application_name    text NOT NULL,
          joined_at           timestamptz NOT NULL DEFAULT now(),
          heartbeat_at        timestamptz NOT NULL DEFAULT now(),
          PRIMARY KEY (group_id, member_id)
        )`.execute(db);
        // The generation survives releases: the next owner's claim bumps it, fencing the last one.
        await sql`CREATE TABLE ${t('partition_owners')} (
          group_id    text NOT NULL,
          topic       text NOT NULL,
          partition   integer NOT NULL,
          member_id   text,
          generation  bigint NOT NULL,
          claimed_at  timestamptz NOT NULL DEFAULT now(),
          PRIMARY KEY (group_id, topic, partition)
        )`.execute(db);
        await sql`CREATE TABLE ${t('group_offsets')} (
          group_id          text NOT NULL,
          topic             text NOT NULL,
          partition         integer NOT NULL,
          committed_offset  bigint NOT NULL,
          metadata          text,
          committed_at      timestamptz NOT NULL DEFAULT now(),
          PRIMARY KEY (group_id, topic, partition)
        )`.execute(db);
      },
      async down(db: AnyDb) {
        for (const name of ['group_offsets', 'partition_owners', 'group_members']) await sql`DROP TABLE ${t(name)}`.execute(db);
      },
    },
  };
}

/** The migration names, in order. */
export function migrationNames(): string[] {
  return Object.keys(migrations('x')).sort();
}

/** Advisory-lock key for migrations of one schema (stable across processes). */
function lockKey(schema: string): bigint {
  // FNV-1a 64-bit of the schema name, folded into a signed bigint.
  let h = 0xcbf29ce484222325n;
  for (const byte of Buffer.from(`annals:migrate:${schema}`)) {
    h ^= BigInt(byte);
    h = (h * 0x100000001b3n) & 0xffffffffffffffffn;
  }
  return BigInt.asIntN(64, h);
}

export interface MigrateResult {
  readonly applied: string[];
}

/**
 * Applies every pending migration to `schema`, creating it if needed. Safe to call from several
 * processes at once. `target` stops at a named migration (for tests).
 */
export async function migrateToLatest(db: AnyDb, schema: string, target?: string): Promise<MigrateResult> {
  return db.connection().execute(async (conn) => {
    const key = lockKey(schema);
    await sql`SELECT pg_advisory_lock(${key})`.execute(conn);
    try {
      await sql`CREATE SCHEMA IF NOT EXISTS ${sql.raw(quoteIdent(schema))}`.execute(conn);
      const migrator = new Migrator({
        db: conn,
        provider: { getMigrations: async () => migrations(schema) },
        migrationTableSchema: schema,
        migrationTableName: 'annals_migration',
        migrationLockTableName: 'annals_migration_lock',
      });
      const { error, results } = target ? await migrator.migrateTo(target) : await migrator.migrateToLatest();
      if (error) throw error;
      return { applied: (results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName) };
    } finally {
      await sql`SELECT pg_advisory_unlock(${key})`.execute(conn);
    }
  });
}

/** Rolls back the last applied migration (tests and emergencies). */
export async function migrateDown(db: AnyDb, schema: string): Promise<void> {
  const migrator = new Migrator({
    db,
    provider: { getMigrations: async () => migrations(schema) },
    migrationTableSchema: schema,
    migrationTableName: 'annals_migration',
    migrationLockTableName: 'annals_migration_lock',
  });
  const { error } = await migrator.migrateDown();
  if (error) throw error;
}
