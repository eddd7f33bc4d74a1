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
    '0003_aggregates': {
      async up(db: AnyDb) {
        // Loading a stream reads the records of one key: this index makes that cost the stream's
        // length, not the partition's. Keyless records (most non-aggregate traffic) stay out of it.
        await sql`CREATE INDEX records_stream_idx ON ${t('records')} (topic, partition, key, "offset") WHERE key IS NOT NULL`.execute(db);
        // Per stream: its version up to last_offset (a cache of the count of its records, kept
        // under the partition's head lock; records after last_offset are counted on top), and the
        // partition it lives in.
        await sql`CREATE TABLE ${t('stream_versions')} (
          topic        text NOT NULL REFERENCES ${t('topics')} (name) ON DELETE CASCADE,
          key          bytea NOT NULL,
          partition    integer NOT NULL,
          version      bigint NOT NULL,
          last_offset  bigint NOT NULL,
          PRIMARY KEY (topic, key)
        )`.execute(db);
        // One snapshot per aggregate type and stream: the state after `version` events.
        await sql`CREATE TABLE ${t('stream_snapshots')} (
          name            text NOT NULL,
          topic           text NOT NULL REFERENCES ${t('topics')} (name) ON DELETE CASCADE,
          key             bytea NOT NULL,
          schema_version  integer NOT NULL,
          version         bigint NOT NULL,
          "offset"        bigint NOT NULL,
          state           bytea NOT NULL,
          taken_at        timestamptz NOT NULL DEFAULT now(),
          PRIMARY KEY (name, topic, key)
        )`.execute(db);
      },
      async down(db: AnyDb) {
        for (const name of ['stream_snapshots', 'stream_versions']) await sql`DROP TABLE ${t(name)}`.execute(db);
        await sql`DROP INDEX ${t('records_stream_idx')}`.execute(db);
      },
    },
    '0004_retention': {
      async up(db: AnyDb) {
        // Segments: each topic's records live in a table of their own, range-partitioned by
        // (partition, offset) into segments of `segment.records` offsets. Retention drops whole
        // segments (DETACH CONCURRENTLY + DROP), as Kafka deletes segment files. See
        // docs/architecture.md ("Retention and compaction").
        const lit = `'${schema}'`; // a validated [a-z0-9_] name: safe as a literal
        await sql`ALTER TABLE ${t('topics')} ADD COLUMN id integer GENERATED ALWAYS AS IDENTITY UNIQUE`.execute(db);
        await sql`ALTER TABLE ${t('partitions')}
          ADD COLUMN cleaned_offset bigint NOT NULL DEFAULT 0,
          ADD COLUMN log_start_reason text,
          ADD COLUMN log_start_changed_at timestamptz`.execute(db);
        await sql`CREATE TABLE ${t('segments')} (
          topic        text NOT NULL REFERENCES ${t('topics')} (name) ON DELETE CASCADE,
          partition    integer NOT NULL,
          base_offset  bigint NOT NULL,
          end_offset   bigint NOT NULL,
          table_name   text NOT NULL UNIQUE,
          created_at   timestamptz NOT NULL DEFAULT now(),
          PRIMARY KEY (topic, partition, base_offset)
        )`.execute(db);
        // A sparse time index kept by the cleaner: at database time `at`, the log end was `offset`,
        // so every record below `offset` was appended at or before `at`. Retention and the
        // compaction lag are judged against it: by the database clock, and never early.
        await sql`CREATE TABLE ${t('time_index')} (
          topic      text NOT NULL REFERENCES ${t('topics')} (name) ON DELETE CASCADE,
          partition  integer NOT NULL,
          at         timestamptz NOT NULL,
          "offset"   bigint NOT NULL,
          PRIMARY KEY (topic, partition, at)
        )`.execute(db);

        await sql.raw(`CREATE FUNCTION ${s}.ensure_topic_table(p_topic text) RETURNS text LANGUAGE plpgsql AS $fn$
DECLARE
  t_id integer;
  t_name text;
BEGIN
  SELECT id INTO t_id FROM ${s}.topics WHERE name = p_topic;
  IF t_id IS NULL THEN
    RAISE EXCEPTION 'topic % does not exist', p_topic USING ERRCODE = 'P0002';
  END IF;
  t_name := 'records_t' || t_id;
  IF to_regclass(format('%I.%I', ${lit}, t_name)) IS NULL THEN
    EXECUTE format('CREATE TABLE %I.%I (LIKE %I.records INCLUDING DEFAULTS) PARTITION BY RANGE (partition, "offset")', ${lit}, t_name, ${lit});
    EXECUTE format('ALTER TABLE %I.records ATTACH PARTITION %I.%I FOR VALUES IN (%L)', ${lit}, ${lit}, t_name, p_topic);
  END IF;
  RETURN t_name;
END $fn$`).execute(db);

        // Creates the segments of one partition up to and including the one holding p_upto.
        // Serialised per topic; the catalog row and the DDL commit together.
        await sql.raw(`CREATE FUNCTION ${s}.ensure_segments(p_topic text, p_partition integer, p_upto bigint, p_size bigint) RETURNS integer LANGUAGE plpgsql AS $fn$
DECLARE
  t_name text;
  base bigint;
  seg text;
  made integer := 0;
BEGIN
  PERFORM pg_advisory_xact_lock(hashtextextended(${lit} || '/segments/' || p_topic, 0));
  t_name := ${s}.ensure_topic_table(p_topic);
  SELECT coalesce(max(end_offset), 0) INTO base FROM ${s}.segments WHERE topic = p_topic AND partition = p_partition;
  WHILE base <= p_upto LOOP
    seg := t_name || '_p' || p_partition || '_' || base;
    EXECUTE format('CREATE TABLE %I.%I (LIKE %I.records INCLUDING DEFAULTS)', ${lit}, seg, ${lit});
    EXECUTE format('ALTER TABLE %I.%I ATTACH PARTITION %I.%I FOR VALUES FROM (%s, %s) TO (%s, %s)',
      ${lit}, t_name, ${lit}, seg, p_partition, base, p_partition, base + p_size);
    INSERT INTO ${s}.segments (topic, partition, base_offset, end_offset, table_name)
      VALUES (p_topic, p_partition, base, base + p_size, seg);
    base := base + p_size;
    made := made + 1;
  END LOOP;
  RETURN made;
END $fn$`).execute(db);

        // Every topic's config names its segment size from now on (new topics store every key).
        await sql`UPDATE ${t('topics')} SET config = config || '{"segment.records": 100000}'::jsonb WHERE NOT config ? 'segment.records'`.execute(db);

        // Move the records into the segmented layout.
        const legacyIndexes = await sql<{ indexname: string; indexdef: string }>`
          SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = ${schema} AND tablename = 'records'`.execute(db);
        await sql`ALTER TABLE ${t('records')} RENAME TO records_legacy`.execute(db);
        for (const ix of legacyIndexes.rows) {
          await sql`ALTER INDEX ${sql.raw(`${s}.${quoteIdent(ix.indexname)}`)} RENAME TO ${sql.raw(quoteIdent(`${ix.indexname}_legacy`))}`.execute(db);
        }
        await sql`CREATE TABLE ${t('records')} (LIKE ${t('records_legacy')} INCLUDING DEFAULTS) PARTITION BY LIST (topic)`.execute(db);
        await sql`ALTER TABLE ${t('records')} ADD PRIMARY KEY (topic, partition, "offset")`.execute(db);
        for (const ix of legacyIndexes.rows) {
          if (ix.indexname === 'records_pkey') continue;
          // Other indexes (e.g. the aggregates' key index) move over as they were.
          const def = ix.indexdef.replace(` ON ${schema}.records_legacy `, ` ON ${schema}.records `).replace(` ON ONLY ${schema}.records_legacy `, ` ON ${schema}.records `);
          await sql.raw(def.replace(/ ON (ONLY )?[^ ]+ USING /, ` ON ${s}.records USING `)).execute(db);
        }
        const topics = await sql<{ name: string; partitions: number; config: Record<string, unknown> }>`
          SELECT name, partitions, config FROM ${t('topics')} ORDER BY name`.execute(db);
        for (const topic of topics.rows) {
          const size = Number(topic.config['segment.records'] ?? 100_000);
          const heads = await sql<{ partition: number; next_offset: string }>`
            SELECT partition, next_offset::text AS next_offset FROM ${t('partitions')} WHERE topic = ${topic.name}`.execute(db);
          for (const h of heads.rows) {
            await sql`SELECT ${sql.raw(`${s}.ensure_segments`)}(${topic.name}, ${h.partition}, ${BigInt(h.next_offset) + BigInt(size)}, ${size})`.execute(db);
          }
        }
        await sql`INSERT INTO ${t('records')} SELECT * FROM ${t('records_legacy')}`.execute(db);
        await sql`DROP TABLE ${t('records_legacy')}`.execute(db);
      },
      async down() {
        throw new Error('0004_retention cannot be rolled back: the segmented layout holds the records.');
      },
    },
    '0005_projections': {
      async up(db: AnyDb) {
        // One row per projection: the read-model version readers are served from.
        await sql`CREATE TABLE ${t('projections')} (
          name            text PRIMARY KEY,
          active_version  integer,
          updated_at      timestamptz NOT NULL DEFAULT now()
        )`.execute(db);
        // One row per read-model version: batches share-lock it (the fence), a swap locks it for update.
        await sql`CREATE TABLE ${t('projection_versions')} (
          name          text NOT NULL REFERENCES ${t('projections')} (name) ON DELETE CASCADE,
          version       integer NOT NULL,
          status        text NOT NULL CHECK (status IN ('building', 'active', 'retired')),
          owner         text,
          read_schema   text NOT NULL,
          tables        text[] NOT NULL,
          documents     text[] NOT NULL,
          created_at    timestamptz NOT NULL DEFAULT now(),
          activated_at  timestamptz,
          retired_at    timestamptz,
          PRIMARY KEY (name, version)
        )`.execute(db);
      },
      async down(db: AnyDb) {
        for (const name of ['projection_versions', 'projections']) await sql`DROP TABLE ${t(name)}`.execute(db);
      },
    },
    '0006_cleaner': {
      async up(db: AnyDb) {
        // How far compaction has cleaned each partition. Kept off the partition's head row, which
        // appends lock: the cleaner never waits on a producer, nor a producer on the cleaner.
        await sql`ALTER TABLE ${t('partitions')} DROP COLUMN cleaned_offset`.execute(db);
        await sql`CREATE TABLE ${t('partition_cleaning')} (
          topic           text NOT NULL,
          partition       integer NOT NULL,
          cleaned_offset  bigint NOT NULL,
          cleaned_at      timestamptz NOT NULL DEFAULT now(),
          PRIMARY KEY (topic, partition),
          FOREIGN KEY (topic, partition) REFERENCES ${t('partitions')} (topic, partition) ON DELETE CASCADE
        )`.execute(db);
        // Tombstones, so that removing them after delete.retention.ms costs their number, not the log's.
        await sql`CREATE INDEX records_tombstones_idx ON ${t('records')} (topic, partition, "offset") WHERE value IS NULL`.execute(db);
      },
      async down(db: AnyDb) {
        await sql`DROP INDEX ${t('records_tombstones_idx')}`.execute(db);
        await sql`DROP TABLE ${t('partition_cleaning')}`.execute(db);
        await sql`ALTER TABLE ${t('partitions')} ADD COLUMN cleaned_offset bigint NOT NULL DEFAULT 0`.execute(db);
      },
    },
    '0007_schema_registry': {
      async up(db: AnyDb) {
        // One row per (event type, version), written once and never updated: the registry's
        // immutability is the table's only write path (INSERT … ON CONFLICT DO NOTHING).
        await sql`CREATE TABLE ${t('schema_registry')} (
          event_type     text NOT NULL CHECK (char_length(event_type) BETWEEN 1 AND 255),
          version        integer NOT NULL CHECK (version > 0),
          fingerprint    text NOT NULL CHECK (fingerprint ~ '^sha256:[0-9a-f]{64}$'),
          schema         jsonb NOT NULL,
          registered_by  text,
          registered_at  timestamptz NOT NULL DEFAULT now(),
          PRIMARY KEY (event_type, version)
        )`.execute(db);
      },
      async down(db: AnyDb) {
        await sql`DROP TABLE ${t('schema_registry')}`.execute(db);
      },
    },
    '0008_stream_marks': {
      async up(db: AnyDb) {
        // Two marks on the head row, kept by expected-version appends only (plain appends never
        // touch them), so that a stream append can prove, without reading the records, that no
        // record it has not counted carries its key: `stream_end` is the log end right after the
        // last expected-version append; every record not counted by a stream counter lies below
        // `plain_end`, or at or above `stream_end`. See plans-aggregates.ts. Existing partitions
        // start at (0, 0), which sends their next stream append to the records, as before.
        await sql`ALTER TABLE ${t('partitions')}
          ADD COLUMN stream_end bigint NOT NULL DEFAULT 0,
          ADD COLUMN plain_end bigint NOT NULL DEFAULT 0`.execute(db);
        // The records of one key in one partition from an offset on: their count and last offset.
        // A function, so that the statements calling it only when the marks cannot rule such
        // records out are planned without a scan of every segment of the records table.
        await sql.raw(`CREATE FUNCTION ${s}.stream_tail(p_topic text, p_partition integer, p_key bytea, p_from bigint) RETURNS bigint[]
LANGUAGE plpgsql STABLE AS $fn$
BEGIN
  RETURN (SELECT ARRAY[count(*), max(r."offset")] FROM ${s}.records r
    WHERE r.topic = p_topic AND r.partition = p_partition AND r.key = p_key AND r."offset" >= p_from);
END $fn$`).execute(db);
      },
      async down(db: AnyDb) {
        await sql.raw(`DROP FUNCTION ${s}.stream_tail(text, integer, bytea, bigint)`).execute(db);
        await sql`ALTER TABLE ${t('partitions')} DROP COLUMN stream_end, DROP COLUMN plain_end`.execute(db);
      },
    },
    '0009_watch_leases': {
      async up(db: AnyDb) {
        // Until when a watcher (a reader waiting for new records) wants wake-ups for the partition.
        // Watchers renew it; appends read it from the head row they update (its latest version,
        // under the lock) and send a wake-up after their commit only while it is live. NULL: never
        // watched. See docs/architecture.md, "Wake-ups".
        await sql`ALTER TABLE ${t('partitions')} ADD COLUMN watched_until timestamptz`.execute(db);
      },
      async down(db: AnyDb) {
        await sql`ALTER TABLE ${t('partitions')} DROP COLUMN watched_until`.execute(db);
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
