/**
 * The projection part of the storage port: what the projection runtime (`framework/`) needs from a
 * store besides the log. `PgLogStorage` and `InMemoryLogStorage` expose it as `storage.projections`.
 *
 * A projection keeps one or more **versions** of its read model. Each version has its own tables
 * (`<table>_v<version>`) and its own consumer group (`projection:<name>:v<version>`), whose
 * committed offsets are the version's checkpoint. A version is `building` while a rebuild replays
 * the log into it, `active` once it serves readers, `retired` after a newer one took over. At most
 * one version of a projection is active; the swap that activates one retires the previous one in
 * the same transaction, and re-points the names readers use (Postgres: a view per table).
 *
 * Exclusion, which the runtime relies on:
 * - `fence` share-locks a version's row for the rest of the transaction of a batch; `lockForSwap`
 *   takes the projection's rows for update. So a swap waits for the batches in flight of the
 *   versions it changes, and the batches after it see the new statuses: a retired version never
 *   commits a write after the swap, and a building one never commits as live.
 * - `tryLockRebuild` is a session lock: one rebuild of a projection at a time, across processes,
 *   released by the database when the process holding it dies.
 * - `claimVersion` records the rebuild that owns a building version; `fence` returns the owner, so
 *   a rebuild that lost its lock (a zombie) fails its next batch instead of writing twice.
 */

/** The life of a read-model version. */
export type ProjectionVersionStatus = 'building' | 'active' | 'retired';

/** What a version of a projection is made of. */
export interface ProjectionVersionSpec {
  readonly name: string;
  readonly version: number;
  /** The schema holding the read model (Postgres); stores without schemas ignore it. */
  readonly schema: string;
  /** Tables the application creates in its `setup` hook (names without the version suffix). */
  readonly tables: readonly string[];
  /** Document tables the store creates: `id text` → a JSON document. */
  readonly documents: readonly string[];
}

export interface ProjectionVersionState extends ProjectionVersionSpec {
  readonly status: ProjectionVersionStatus;
  /** The rebuild that owns a building version, if one claimed it. */
  readonly owner: string | null;
  readonly createdAt: number;
  readonly activatedAt: number | null;
  readonly retiredAt: number | null;
}

export interface ProjectionState {
  readonly name: string;
  readonly activeVersion: number | null;
  /** Every version the store knows, ascending. */
  readonly versions: readonly ProjectionVersionState[];
}

/** A version's row as a batch sees it under its share lock. */
export interface ProjectionFence {
  readonly status: ProjectionVersionStatus;
  readonly owner: string | null;
}

/** The result of trying to take a projection's rebuild lock: losing the race is expected. */
export type ProjectionLock = { readonly acquired: true; release(): Promise<void> } | { readonly acquired: false };

/** The final state of the documents a batch touched. */
export interface DocumentWrites {
  /** Documents that existed when loaded (and are locked since), or were written blind (`set`): insert or replace. */
  readonly upserts: ReadonlyArray<readonly [id: string, document: unknown]>;
  /**
   * Documents that did not exist when loaded: insert them, and throw a retriable
   * `ConcurrentTransactionsError` if another transaction created one meanwhile (its update would
   * otherwise be lost); the batch is then retried.
   */
  readonly inserts: ReadonlyArray<readonly [id: string, document: unknown]>;
  readonly deletes: readonly string[];
}

/**
 * Projection bookkeeping and read-model storage. Methods taking `db` run in that transaction (the
 * `db` of a storage transaction or of a consumer's batch transaction).
 */
export interface ProjectionStore<TDb = unknown> {
  /**
   * The name handlers use for a read-model table of one version (`ctx.table(...)`), e.g.
   * `public.order_totals_v3` for Postgres (Kysely and `sql.table` accept it as it is).
   */
  tableName(schema: string, table: string, version: number): string;
  /** The name readers use for the active version of a table (Postgres: the view). */
  readName(schema: string, table: string, activeVersion: number): string;
  /** The state of the named projections (all when omitted), from committed data. */
  describe(names?: readonly string[]): Promise<ProjectionState[]>;
  /**
   * Registers a version if the store does not know it — status `building`, its document tables
   * created — and returns its state. `created` is true when this call registered it: the caller
   * runs the application's `setup` in the same transaction, so it runs once per version.
   */
  prepareVersion(db: TDb, spec: ProjectionVersionSpec): Promise<{ state: ProjectionVersionState; created: boolean }>;
  /** The version's row, share-locked until the transaction ends; `undefined` if unknown. */
  fence(db: TDb, name: string, version: number): Promise<ProjectionFence | undefined>;
  /** Makes `owner` the owner of a building version (fencing any earlier owner). False when it is not building. */
  claimVersion(db: TDb, name: string, version: number, owner: string): Promise<boolean>;
  /** Locks the projection and its active version for a swap; returns the active version. */
  lockForSwap(db: TDb, name: string): Promise<{ activeVersion: number | null }>;
  /** Activates `version`, retires the previously active one and re-points the readers' names. */
  activate(db: TDb, name: string, version: number): Promise<void>;
  /** Tries to take the projection's rebuild lock (a session lock). */
  tryLockRebuild(name: string): Promise<ProjectionLock>;
  /**
   * The documents of `ids` that exist, locked for update to the end of the transaction (in id
   * order), so concurrent batches updating one document serialise instead of losing an update.
   * `lock: false` skips the locks, for a writer that knows it is alone (a rebuild replaying one
   * partition at a time into a version nobody else writes).
   */
  loadDocuments(db: TDb, table: string, ids: readonly string[], options?: { readonly lock?: boolean }): Promise<Map<string, unknown>>;
  /** Writes the final state of a batch's documents, in the transaction. */
  writeDocuments(db: TDb, table: string, writes: DocumentWrites): Promise<void>;
  /** Every committed document of a table, sorted by id (tests, checksums, tools). */
  readDocuments(table: string): Promise<Array<[string, unknown]>>;
  /** Drops a retired version's tables and forgets it. */
  dropVersion(name: string, version: number): Promise<void>;
}
