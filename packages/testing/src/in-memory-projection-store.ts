/**
 * The projection port in memory (`storage.projections` of an `InMemoryLogStorage`).
 *
 * Bookkeeping lives in two tables of the storage's `InMemoryDatabase` — `annals.projections` and
 * `annals.projection_versions` — so it commits with the batch that changes it, as in Postgres.
 * Read-model tables are plain tables named `<table>_v<version>` (there are no schemas and no
 * views: readers use `annals.projections.readName(...)` or `documents(...)`). The rebuild lock is
 * in-process. What memory cannot give is the row locks: a fence is checked when the batch starts,
 * not held to its commit, so a live batch racing a swap in the same process may still commit to
 * the version being retired. The Postgres store holds the lock.
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
} from '@annals/core';
import type { InMemoryDatabase, TableSchema } from './in-memory-log-storage.js';

const PROJECTIONS = 'annals.projections';
const VERSIONS = 'annals.projection_versions';

interface ProjectionRow {
  readonly name: string;
  readonly activeVersion: number | null;
}

type Untyped = InMemoryDatabase<Record<string, any>>;
const untyped = (db: InMemoryDatabase<any>): Untyped => db as Untyped;

export class InMemoryProjectionStore<DB extends TableSchema> implements ProjectionStore<InMemoryDatabase<DB>> {
  readonly #db: () => InMemoryDatabase<DB>;
  readonly #now: () => number;
  readonly #locks = new Set<string>();

  constructor(db: () => InMemoryDatabase<DB>, now: () => number) {
    this.#db = db;
    this.#now = now;
  }

  tableName(_schema: string, table: string, version: number): string {
    return `${table}_v${version}`;
  }

  readName(schema: string, table: string, activeVersion: number): string {
    return this.tableName(schema, table, activeVersion);
  }

  async describe(names?: readonly string[]): Promise<ProjectionState[]> {
    const db = untyped(this.#db());
    const projections = db.tables.get(PROJECTIONS).values() as ProjectionRow[];
    const versions = db.tables.get(VERSIONS).values() as ProjectionVersionState[];
    return projections
      .filter((p) => !names || names.includes(p.name))
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
      .map((p) => ({
        name: p.name,
        activeVersion: p.activeVersion,
        versions: versions.filter((v) => v.name === p.name).sort((a, b) => a.version - b.version),
      }));
  }

  async prepareVersion(db: InMemoryDatabase<DB>, spec: ProjectionVersionSpec): Promise<{ state: ProjectionVersionState; created: boolean }> {
    const t = untyped(db).tables;
    if (!t.get(PROJECTIONS).has(spec.name)) t.get(PROJECTIONS).set(spec.name, { name: spec.name, activeVersion: null } satisfies ProjectionRow);
    const names = new Set([...spec.documents, ...spec.tables]);
    for (const other of t.get(VERSIONS).values() as ProjectionVersionState[]) {
      const shared = [...other.documents, ...other.tables].filter((n) => names.has(n));
      if (other.name !== spec.name && shared.length > 0) {
        throw new InvalidOptionsError(`Projection "${spec.name}" cannot use table(s) ${shared.join(', ')}: projection "${other.name}" uses them. Rename them.`);
      }
    }
    const key = `${spec.name}/${spec.version}`;
    const existing = t.get(VERSIONS).get(key) as ProjectionVersionState | undefined;
    if (existing) return { state: existing, created: false };
    const state: ProjectionVersionState = {
      name: spec.name,
      version: spec.version,
      schema: spec.schema,
      tables: [...spec.tables],
      documents: [...spec.documents],
      status: 'building',
      owner: null,
      createdAt: this.#now(),
      activatedAt: null,
      retiredAt: null,
    };
    t.get(VERSIONS).set(key, state);
    return { state, created: true };
  }

  async fence(db: InMemoryDatabase<DB>, name: string, version: number): Promise<ProjectionFence | undefined> {
    const row = untyped(db).tables.get(VERSIONS).get(`${name}/${version}`) as ProjectionVersionState | undefined;
    return row ? { status: row.status, owner: row.owner } : undefined;
  }

  async claimVersion(db: InMemoryDatabase<DB>, name: string, version: number, owner: string): Promise<boolean> {
    const versions = untyped(db).tables.get(VERSIONS);
    const row = versions.get(`${name}/${version}`) as ProjectionVersionState | undefined;
    if (!row || row.status !== 'building') return false;
    versions.set(`${name}/${version}`, { ...row, owner });
    return true;
  }

  async lockForSwap(db: InMemoryDatabase<DB>, name: string): Promise<{ activeVersion: number | null }> {
    const row = untyped(db).tables.get(PROJECTIONS).get(name) as ProjectionRow | undefined;
    return { activeVersion: row?.activeVersion ?? null };
  }

  async activate(db: InMemoryDatabase<DB>, name: string, version: number): Promise<void> {
    const t = untyped(db).tables;
    const now = this.#now();
    for (const [key, row] of t.get(VERSIONS).entries() as Array<[string, ProjectionVersionState]>) {
      if (row.name !== name) continue;
      if (row.version === version) t.get(VERSIONS).set(key, { ...row, status: 'active', activatedAt: now });
      else if (row.status === 'active') t.get(VERSIONS).set(key, { ...row, status: 'retired', retiredAt: now });
    }
    t.get(PROJECTIONS).set(name, { name, activeVersion: version } satisfies ProjectionRow);
  }

  async tryLockRebuild(name: string): Promise<ProjectionLock> {
    if (this.#locks.has(name)) return { acquired: false };
    this.#locks.add(name);
    let released = false;
    return {
      acquired: true,
      release: async () => {
        if (released) return;
        released = true;
        this.#locks.delete(name);
      },
    };
  }

  async loadDocuments(db: InMemoryDatabase<DB>, table: string, ids: readonly string[]): Promise<Map<string, unknown>> {
    const t = untyped(db).tables.get(table);
    const out = new Map<string, unknown>();
    for (const id of ids) {
      const doc = t.get(id);
      if (doc !== undefined) out.set(id, doc);
    }
    return out;
  }

  async writeDocuments(db: InMemoryDatabase<DB>, table: string, writes: DocumentWrites): Promise<void> {
    const t = untyped(db).tables.get(table);
    for (const [id, doc] of writes.upserts) t.set(id, doc);
    for (const [id, doc] of writes.inserts) {
      if (t.has(id)) throw new ConcurrentTransactionsError(`Document ${id} of ${table} was created by a concurrent transaction after this batch read it; the batch is retried.`);
      t.set(id, doc);
    }
    for (const id of writes.deletes) t.delete(id);
  }

  async readDocuments(table: string): Promise<Array<[string, unknown]>> {
    return untyped(this.#db())
      .tables.get(table)
      .entries()
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  }

  async dropVersion(name: string, version: number): Promise<void> {
    const t = untyped(this.#db()).tables;
    const row = t.get(VERSIONS).get(`${name}/${version}`) as ProjectionVersionState | undefined;
    if (!row) throw new InvalidOptionsError(`Projection "${name}" has no version ${version}.`);
    if (row.status !== 'retired') throw new InvalidOptionsError(`Projection "${name}" version ${version} is ${row.status}; only a retired version can be dropped.`);
    for (const table of [...row.documents, ...row.tables]) {
      const physical = t.get(this.tableName(row.schema, table, version));
      for (const key of physical.keys()) physical.delete(key);
    }
    t.get(VERSIONS).delete(`${name}/${version}`);
  }
}
