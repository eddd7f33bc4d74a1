/**
 * The projection port on PostgreSQL (`storage.projections` of a `PgLogStorage`). Statements are in
 * `plans-projections.ts`; those that belong to a batch run through the batch's Kysely handle
 * (`tx.db`), so they share its connection and transaction.
 *
 * Read models live in the projection's schema (default `public`): a version's tables are
 * `<table>_v<version>`, and the swap re-points a view `<table>` at the active version's table in
 * the swap's transaction, so readers always query one stable name.
 */
import {
  ConcurrentTransactionsError,
  InvalidOptionsError,
  type DocumentWrites,
  type ProjectionFence,
  type ProjectionLock,
  type ProjectionState,
  type ProjectionStore,
  type ProjectionVersionSpec,
  type ProjectionVersionState,
  type ProjectionVersionStatus,
} from '@annals/core';
import { CompiledQuery, type Kysely } from 'kysely';
import type pg from 'pg';
import { translatePgError } from './internal/pg-errors.js';
import type { Statement } from './plans.js';
import * as plans from './plans-projections.js';

interface VersionRow {
  name: string;
  version: number;
  status: ProjectionVersionStatus;
  owner: string | null;
  read_schema: string;
  tables: string[];
  documents: string[];
  created_at: number;
  activated_at: number | null;
  retired_at: number | null;
}

function versionState(r: VersionRow): ProjectionVersionState {
  return {
    name: r.name,
    version: r.version,
    status: r.status,
    owner: r.owner,
    schema: r.read_schema,
    tables: r.tables,
    documents: r.documents,
    createdAt: Math.floor(r.created_at),
    activatedAt: r.activated_at === null ? null : Math.floor(r.activated_at),
    retiredAt: r.retired_at === null ? null : Math.floor(r.retired_at),
  };
}

/** What the store needs from `PgLogStorage`. */
export interface PgProjectionStoreHost {
  readonly schema: string;
  readonly pool: pg.Pool;
  acquireClient(): Promise<pg.PoolClient>;
}

export class PgProjectionStore<DB> implements ProjectionStore<Kysely<DB>> {
  readonly #host: PgProjectionStoreHost;
  readonly #t: plans.ProjectionTables;

  constructor(host: PgProjectionStoreHost) {
    this.#host = host;
    this.#t = plans.projectionTables(host.schema);
  }

  async #run<R>(db: Kysely<DB>, s: Statement): Promise<R[]> {
    try {
      const result = await db.executeQuery<R>(CompiledQuery.raw(s.text, s.values));
      return result.rows as R[];
    } catch (error) {
      throw translatePgError(error);
    }
  }

  async #query<R extends pg.QueryResultRow>(s: Statement): Promise<R[]> {
    try {
      return (await this.#host.pool.query<R>(s.text, s.values)).rows;
    } catch (error) {
      throw translatePgError(error);
    }
  }

  tableName(schema: string, table: string, version: number): string {
    return `${schema}.${table}_v${version}`;
  }

  readName(schema: string, table: string): string {
    return `${schema}.${table}`;
  }

  async describe(names?: readonly string[]): Promise<ProjectionState[]> {
    const rows = await this.#query<VersionRow & { active_version: number | null }>(plans.describeStatement(this.#t, names));
    const out = new Map<string, { name: string; activeVersion: number | null; versions: ProjectionVersionState[] }>();
    for (const r of rows) {
      let p = out.get(r.name);
      if (!p) out.set(r.name, (p = { name: r.name, activeVersion: r.active_version, versions: [] }));
      if (r.version !== null) p.versions.push(versionState(r));
    }
    return [...out.values()];
  }

  async prepareVersion(db: Kysely<DB>, spec: ProjectionVersionSpec): Promise<{ state: ProjectionVersionState; created: boolean }> {
    await this.#run(db, plans.ensureProjectionStatement(this.#t, spec.name));
    const names = [...spec.documents, ...spec.tables];
    if (names.length > 0) {
      const [other] = await this.#run<{ name: string; shared: string[] }>(db, plans.tableOwnerStatement(this.#t, spec.name, spec.schema, names));
      if (other) {
        throw new InvalidOptionsError(
          `Projection "${spec.name}" cannot use table(s) ${other.shared.join(', ')} in schema ${spec.schema}: projection "${other.name}" uses them. Rename them, or give one projection another schema.`,
        );
      }
    }
    const inserted = await this.#run<VersionRow>(db, plans.insertVersionStatement(this.#t, spec));
    if (inserted[0]) {
      if (spec.documents.length > 0 || spec.tables.length > 0) await this.#run(db, plans.createSchemaStatement(spec.schema));
      for (const table of spec.documents) {
        await this.#run(db, plans.createDocumentTableStatement(this.tableName(spec.schema, table, spec.version)));
      }
      return { state: versionState(inserted[0]), created: true };
    }
    const existing = await this.#run<VersionRow>(db, plans.selectVersionStatement(this.#t, spec.name, spec.version));
    return { state: versionState(existing[0]!), created: false };
  }

  async fence(db: Kysely<DB>, name: string, version: number): Promise<ProjectionFence | undefined> {
    const rows = await this.#run<{ status: ProjectionVersionStatus; owner: string | null }>(db, plans.fenceStatement(this.#t, name, version));
    return rows[0];
  }

  async claimVersion(db: Kysely<DB>, name: string, version: number, owner: string): Promise<boolean> {
    return (await this.#run(db, plans.claimVersionStatement(this.#t, name, version, owner))).length === 1;
  }

  async lockForSwap(db: Kysely<DB>, name: string): Promise<{ activeVersion: number | null }> {
    const rows = await this.#run<{ active_version: number | null }>(db, plans.lockProjectionStatement(this.#t, name));
    const activeVersion = rows[0]?.active_version ?? null;
    // Waits for the active version's batches in flight; the ones after the swap find it retired.
    if (activeVersion !== null) await this.#run(db, plans.lockVersionStatement(this.#t, name, activeVersion));
    return { activeVersion };
  }

  async activate(db: Kysely<DB>, name: string, version: number): Promise<void> {
    const [versions, projection] = plans.activateStatements(this.#t, name, version);
    const rows = await this.#run<{ version: number; read_schema: string; tables: string[]; documents: string[] }>(db, versions);
    await this.#run(db, projection);
    const active = rows.find((r) => r.version === version);
    if (!active) throw new InvalidOptionsError(`Projection "${name}" has no version ${version} to activate.`);
    for (const table of [...active.documents, ...active.tables]) {
      for (const s of plans.viewStatements(this.readName(active.read_schema, table), this.tableName(active.read_schema, table, version))) {
        await this.#run(db, s);
      }
    }
  }

  async tryLockRebuild(name: string): Promise<ProjectionLock> {
    const client = await this.#host.acquireClient();
    let acquired = false;
    try {
      const s = plans.tryLockRebuildStatement(this.#t, name);
      acquired = (await client.query<{ acquired: boolean }>(s.text, s.values)).rows[0]!.acquired;
    } catch (error) {
      client.release(error instanceof Error ? error : true);
      throw translatePgError(error);
    }
    if (!acquired) {
      client.release();
      return { acquired: false };
    }
    let released = false;
    return {
      acquired: true,
      release: async () => {
        if (released) return;
        released = true;
        const s = plans.unlockRebuildStatement(this.#t, name);
        try {
          await client.query(s.text, s.values);
          client.release();
        } catch (error) {
          // The session is gone, and its lock with it.
          client.release(error instanceof Error ? error : true);
        }
      },
    };
  }

  async loadDocuments(db: Kysely<DB>, table: string, ids: readonly string[], options: { readonly lock?: boolean } = {}): Promise<Map<string, unknown>> {
    const rows = await this.#run<{ id: string; doc: unknown }>(db, plans.loadDocumentsStatement(table, ids, options.lock ?? true));
    return new Map(rows.map((r) => [r.id, r.doc]));
  }

  async writeDocuments(db: Kysely<DB>, table: string, writes: DocumentWrites): Promise<void> {
    const json = (docs: ReadonlyArray<readonly [string, unknown]>) => {
      const out: Record<string, unknown> = {};
      for (const [id, doc] of docs) out[id] = doc;
      return JSON.stringify(out);
    };
    if (writes.upserts.length > 0) await this.#run(db, plans.upsertDocumentsStatement(table, json(writes.upserts)));
    if (writes.inserts.length > 0) {
      const inserted = await this.#run(db, plans.insertDocumentsStatement(table, json(writes.inserts)));
      if (inserted.length !== writes.inserts.length) {
        throw new ConcurrentTransactionsError(
          `${writes.inserts.length - inserted.length} document(s) of ${table} were created by a concurrent transaction after this batch read them; the batch is retried.`,
        );
      }
    }
    if (writes.deletes.length > 0) await this.#run(db, plans.deleteDocumentsStatement(table, writes.deletes));
  }

  async readDocuments(table: string): Promise<Array<[string, unknown]>> {
    const rows = await this.#query<{ id: string; doc: unknown }>(plans.readDocumentsStatement(table));
    return rows.map((r) => [r.id, r.doc]);
  }

  async dropVersion(name: string, version: number): Promise<void> {
    const client = await this.#host.acquireClient();
    let broken: unknown;
    try {
      await client.query('BEGIN');
      const s = plans.deleteVersionStatement(this.#t, name, version);
      const { rows } = await client.query<{ read_schema: string; tables: string[]; documents: string[] }>(s.text, s.values);
      const row = rows[0];
      if (!row) throw new InvalidOptionsError(`Projection "${name}" has no retired version ${version} (only a retired version can be dropped).`);
      for (const table of [...row.documents, ...row.tables]) {
        const d = plans.dropTableStatement(this.tableName(row.read_schema, table, version));
        await client.query(d.text, d.values);
      }
      await client.query('COMMIT');
    } catch (error) {
      await client.query('ROLLBACK').catch((e: unknown) => (broken = e));
      throw error instanceof InvalidOptionsError ? error : translatePgError(error);
    } finally {
      client.release(broken instanceof Error ? broken : undefined);
    }
  }
}
