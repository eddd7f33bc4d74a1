/**
 * SQL plans of projections, kept together: bookkeeping (`projections`, `projection_versions`),
 * the fence and swap locks, the versioned read-model tables and their views, documents.
 *
 * ## Exclusion between live batches, rebuild batches and the swap
 * Every batch of a projection version first share-locks the version's row (`fenceStatement`)
 * and holds it to commit. The swap takes the projection's row and its active version's row for
 * update (`lockProjectionStatement`, `lockVersionStatement`): it waits for that version's batches
 * in flight, and the batches after it find the version retired. A rebuild's batches also check
 * that their rebuild still owns the version (`owner`), so one that lost its session lock (a
 * zombie) cannot write after its successor claimed the version. The rebuild lock itself is a
 * session advisory lock (`tryLockRebuildStatement`), which Postgres releases when the session dies.
 */
import { quoteIdent } from './internal/ident.js';
import type { Statement } from './plans.js';

export interface ProjectionTables {
  readonly schema: string;
  readonly projections: string;
  readonly versions: string;
}

export function projectionTables(schema: string): ProjectionTables {
  const q = (name: string) => `${quoteIdent(schema)}.${quoteIdent(name)}`;
  return Object.freeze({ schema, projections: q('projections'), versions: q('projection_versions') });
}

/** `schema.table` (as `tableName` returns it) quoted part by part. */
export function qualified(name: string): string {
  const dot = name.indexOf('.');
  return dot < 0 ? quoteIdent(name) : `${quoteIdent(name.slice(0, dot))}.${quoteIdent(name.slice(dot + 1))}`;
}

const VERSION_COLUMNS = `name, version, status, owner, read_schema, tables, documents,
  (extract(epoch FROM created_at) * 1000)::float8 AS created_at,
  (extract(epoch FROM activated_at) * 1000)::float8 AS activated_at,
  (extract(epoch FROM retired_at) * 1000)::float8 AS retired_at`;

export function describeStatement(t: ProjectionTables, names: readonly string[] | undefined): Statement {
  return {
    text: `SELECT p.name, p.active_version, v.version, v.status, v.owner, v.read_schema, v.tables, v.documents,
        (extract(epoch FROM v.created_at) * 1000)::float8 AS created_at,
        (extract(epoch FROM v.activated_at) * 1000)::float8 AS activated_at,
        (extract(epoch FROM v.retired_at) * 1000)::float8 AS retired_at
      FROM ${t.projections} p LEFT JOIN ${t.versions} v ON v.name = p.name
      WHERE $1::text[] IS NULL OR p.name = ANY($1::text[])
      ORDER BY p.name, v.version`,
    values: [names ? [...names] : null],
  };
}

export function ensureProjectionStatement(t: ProjectionTables, name: string): Statement {
  return { text: `INSERT INTO ${t.projections} (name) VALUES ($1) ON CONFLICT (name) DO NOTHING`, values: [name] };
}

export function insertVersionStatement(
  t: ProjectionTables,
  v: { name: string; version: number; schema: string; tables: readonly string[]; documents: readonly string[] },
): Statement {
  return {
    text: `INSERT INTO ${t.versions} (name, version, status, read_schema, tables, documents)
      VALUES ($1, $2, 'building', $3, $4::text[], $5::text[])
      ON CONFLICT (name, version) DO NOTHING
      RETURNING ${VERSION_COLUMNS}`,
    values: [v.name, v.version, v.schema, [...v.tables], [...v.documents]],
  };
}

/** Another projection already using one of these read-model tables in the schema (they would collide). */
export function tableOwnerStatement(t: ProjectionTables, name: string, schema: string, tables: readonly string[]): Statement {
  return {
    text: `SELECT name, array(SELECT unnest(tables || documents) INTERSECT SELECT unnest($3::text[])) AS shared
      FROM ${t.versions} WHERE read_schema = $2 AND name <> $1 AND (tables || documents) && $3::text[] LIMIT 1`,
    values: [name, schema, [...tables]],
  };
}

export function selectVersionStatement(t: ProjectionTables, name: string, version: number): Statement {
  return { text: `SELECT ${VERSION_COLUMNS} FROM ${t.versions} WHERE name = $1 AND version = $2`, values: [name, version] };
}

/** The version's row, share-locked to the end of the batch's transaction. */
export function fenceStatement(t: ProjectionTables, name: string, version: number): Statement {
  return { text: `SELECT status, owner FROM ${t.versions} WHERE name = $1 AND version = $2 FOR SHARE`, values: [name, version] };
}

export function claimVersionStatement(t: ProjectionTables, name: string, version: number, owner: string): Statement {
  return {
    text: `UPDATE ${t.versions} SET owner = $3 WHERE name = $1 AND version = $2 AND status = 'building' RETURNING version`,
    values: [name, version, owner],
  };
}

export function lockProjectionStatement(t: ProjectionTables, name: string): Statement {
  return { text: `SELECT active_version FROM ${t.projections} WHERE name = $1 FOR UPDATE`, values: [name] };
}

export function lockVersionStatement(t: ProjectionTables, name: string, version: number): Statement {
  return { text: `SELECT version FROM ${t.versions} WHERE name = $1 AND version = $2 FOR UPDATE`, values: [name, version] };
}

/** Activates `version` and retires the active one; returns the new active version's row. */
export function activateStatements(t: ProjectionTables, name: string, version: number): [Statement, Statement] {
  return [
    {
      text: `UPDATE ${t.versions} SET
          status = CASE WHEN version = $2 THEN 'active' ELSE 'retired' END,
          owner = CASE WHEN version = $2 THEN NULL ELSE owner END,
          activated_at = CASE WHEN version = $2 THEN now() ELSE activated_at END,
          retired_at = CASE WHEN version = $2 THEN retired_at ELSE now() END
        WHERE name = $1 AND (version = $2 OR status = 'active')
        RETURNING version, read_schema, tables, documents`,
      values: [name, version],
    },
    { text: `UPDATE ${t.projections} SET active_version = $2, updated_at = now() WHERE name = $1`, values: [name, version] },
  ];
}

export function deleteVersionStatement(t: ProjectionTables, name: string, version: number): Statement {
  return { text: `DELETE FROM ${t.versions} WHERE name = $1 AND version = $2 AND status = 'retired' RETURNING read_schema, tables, documents`, values: [name, version] };
}

/** A session lock per projection: one rebuild at a time. */
export function tryLockRebuildStatement(t: ProjectionTables, name: string): Statement {
  return { text: `SELECT pg_try_advisory_lock(hashtextextended($1, 0)) AS acquired`, values: [`annals:projection:${t.schema}:${name}`] };
}

export function unlockRebuildStatement(t: ProjectionTables, name: string): Statement {
  return { text: `SELECT pg_advisory_unlock(hashtextextended($1, 0))`, values: [`annals:projection:${t.schema}:${name}`] };
}

// ---- read models ---------------------------------------------------------------------------------

export function createSchemaStatement(schema: string): Statement {
  return { text: `CREATE SCHEMA IF NOT EXISTS ${quoteIdent(schema)}`, values: [] };
}

export function createDocumentTableStatement(physical: string): Statement {
  return { text: `CREATE TABLE IF NOT EXISTS ${qualified(physical)} (id text PRIMARY KEY, doc jsonb NOT NULL)`, values: [] };
}

/** Re-points the readers' view (`schema.table`) at one version's table, in the swap's transaction. */
export function viewStatements(view: string, physical: string): Statement[] {
  return [
    { text: `DROP VIEW IF EXISTS ${qualified(view)}`, values: [] },
    { text: `CREATE VIEW ${qualified(view)} AS SELECT * FROM ${qualified(physical)}`, values: [] },
  ];
}

export function dropTableStatement(physical: string): Statement {
  return { text: `DROP TABLE IF EXISTS ${qualified(physical)}`, values: [] };
}

/** Loads documents locked for update, in id order (concurrent batches lock in one order). */
export function loadDocumentsStatement(physical: string, ids: readonly string[], lock: boolean): Statement {
  return { text: `SELECT id, doc FROM ${qualified(physical)} WHERE id = ANY($1::text[])${lock ? ' ORDER BY id FOR UPDATE' : ''}`, values: [[...ids]] };
}

/** Upserts every document of one JSON object `{ id: document }`: one parameter, parsed once by the server. */
export function upsertDocumentsStatement(physical: string, documentsJson: string): Statement {
  return {
    text: `INSERT INTO ${qualified(physical)} (id, doc) SELECT key, value FROM jsonb_each($1::jsonb)
      ON CONFLICT (id) DO UPDATE SET doc = EXCLUDED.doc`,
    values: [documentsJson],
  };
}

/** Inserts documents that did not exist when loaded; returns the ids inserted (a missing one was created meanwhile). */
export function insertDocumentsStatement(physical: string, documentsJson: string): Statement {
  return {
    text: `INSERT INTO ${qualified(physical)} (id, doc) SELECT key, value FROM jsonb_each($1::jsonb) ON CONFLICT (id) DO NOTHING RETURNING id`,
    values: [documentsJson],
  };
}

export function deleteDocumentsStatement(physical: string, ids: readonly string[]): Statement {
  return { text: `DELETE FROM ${qualified(physical)} WHERE id = ANY($1::text[])`, values: [[...ids]] };
}

export function readDocumentsStatement(physical: string): Statement {
  return { text: `SELECT id, doc FROM ${qualified(physical)} ORDER BY id COLLATE "C"`, values: [] };
}
