/**
 * `InMemoryLogStorage`: the storage port in memory, for users' unit tests. It is a real log, not a
 * mock: it passes the same conformance suite as `PgLogStorage`.
 *
 * ## Design note
 *
 * The invariant kept here is the port's: per partition, offsets are dense and records become
 * visible in offset order; an append (of any number of partitions, with everything else done in
 * the same storage transaction) is visible all at once or not at all, and one that rolls back
 * takes no offset.
 *
 * It is kept the way the Postgres store keeps it, with per-partition locks instead of head rows:
 *
 * - Every write runs in a transaction (a plain `append` is a transaction of its own). An append
 *   first validates everything it can without waiting (topics, partitions, duplicates, sequence
 *   numbers present), then takes the lock of every partition it touches, in (topic, partition)
 *   order, and holds them until its transaction ends — exactly as Postgres holds the head row.
 *   Offsets are assigned at append time under the lock (`end of the committed log + what this
 *   transaction already staged`), so the base offsets `tx.append` returns are final.
 * - Staged records, producer sequence state and `tx.db` writes live in the transaction until it
 *   ends. Commit re-checks fencing and that the partitions still exist, then applies everything in
 *   one synchronous step (no `await` in between), so no reader can observe half of a commit.
 *   Rollback drops the stage; since the lock was held, nobody took offsets after the dropped ones,
 *   so no gap is left.
 * - Waiting on locks is FIFO, and a lock wait that would close a cycle (two transactions that
 *   appended to partitions in crossed order) is refused with a retriable
 *   `ConcurrentTransactionsError`, as Postgres' deadlock detector does, instead of hanging.
 * - Fencing: Postgres makes `initProducer` wait for a transaction that checked the fence (a share
 *   lock); here `initProducer` never waits and the fence is checked again at commit, so a zombie
 *   transaction that was fenced while open never commits.
 * - Deferred transactions begin on first use; a savepoint captures the stage and, when its
 *   callback throws, restores it and frees the partitions locked since (as Postgres' ROLLBACK TO
 *   SAVEPOINT releases the row locks taken after it).
 * - Consumer groups: a member owns a partition while its session holds the claim (Postgres: a
 *   session advisory lock); each claim bumps the partition's generation. A fenced offset commit
 *   checks member and generation when it is made and again at commit, so a member that lost a
 *   partition never commits an offset for it — and the appends and `tx.db` writes of its
 *   transaction roll back with it. Heartbeats expire silent members by the store clock, and an
 *   expired member's session is lost at once (its claims freed, `onLost` called).
 * - Byte arrays are copied in and out: a caller mutating its buffer after `append`, or a record it
 *   fetched, never changes the log. `tx.db` rows are copied with `structuredClone` likewise.
 *
 * `acks` is accepted and ignored (memory has no durability levels).
 * - The cleaner (`storage.cleaner`, driven by `annals.cleaner`) keeps the Postgres store's rules:
 *   time notes by the store clock, retention by `retention.ms` and `retention.bytes` (whole
 *   segments of `segment.records` offsets, sized by the bytes `maxBytes` counts), compaction that
 *   leaves gaps, tombstones removed after `delete.retention.ms`. One lease per store.
 */
import { randomUUID } from 'node:crypto';
import {
  CleanerLeaseLostError,
  ConcurrentTransactionsError,
  DEFAULT_TOPIC_CONFIG,
  GroupNotEmptyError,
  IllegalGenerationError,
  InvalidOptionsError,
  InvalidPartitionsError,
  InvalidTransactionStateError,
  NotConnectedError,
  OutOfOrderSequenceError,
  ProducerFencedError,
  TopicAlreadyExistsError,
  TransactionTimeoutError,
  UnknownTopicOrPartitionError,
  resolveTopicConfig,
  validateTopicName,
  type AppendListener,
  type AppendOptions,
  type CleanerStorage,
  type CleanPassOptions,
  type CleanPassReport,
  type LogStartReason,
  type PartitionCleanReport,
  type AppendRecord,
  type CommitFence,
  type CommittedOffset,
  type DeferredTransaction,
  type FetchLimits,
  type FetchResult,
  type GroupDescription,
  type GroupPartitionState,
  type GroupSession,
  type GroupSessionEvents,
  type LagQuery,
  type LagSnapshot,
  type LiveMember,
  type LogStorage,
  type MemberMetadata,
  type OffsetCommit,
  type PartitionClaim,
  type PartitionAppend,
  type PartitionAppendResult,
  type PartitionWatermarks,
  type ProducerIdentity,
  type StorageTransaction,
  type StorageTransactionOptions,
  type StoredHeaders,
  type StoredRecord,
  type TopicConfig,
  type TopicDescription,
  type TopicSpec,
  type SnapshotWrite,
  type StreamAppendResult,
  type StreamExpectation,
  type StreamReadOptions,
  type StreamSlice,
} from '@annals/core';
import { InMemoryProjectionStore } from './in-memory-projection-store.js';
import { InMemorySchemaRegistry } from './in-memory-schema-registry.js';
import { InMemoryStreams, type StreamCounter } from './in-memory-streams.js';

// ---- InMemoryDatabase ------------------------------------------------------------------------

/**
 * The row types of an {@link InMemoryDatabase}: table name → row type. Rows may be anything
 * `structuredClone` can copy (plain objects, arrays, primitives, `Date`, `Map`, typed arrays…);
 * class instances come back as plain objects.
 *
 * @example
 * ```ts
 * interface Tables { orders: { id: string; totalCents: number }; counters: number }
 * const storage = new InMemoryLogStorage<Tables>();
 * ```
 */
export type TableSchema = object;

/** The default {@link TableSchema}: any table name, rows typed `any` (convenient in tests). */
export type UntypedTables = Record<string, any>;

/**
 * One table of an {@link InMemoryDatabase}: a map from string keys to rows.
 *
 * Rows are copied with `structuredClone` on `set` and on every read, as a database would: mutating
 * a row you read changes nothing until you `set` it back. In a transaction, reads see the
 * committed rows overlaid with the transaction's own writes, and writes are staged until commit.
 */
export interface InMemoryTable<Row> {
  /** The row at `key`, or `undefined`. */
  get(key: string): Row | undefined;
  /** True when a row exists at `key`. */
  has(key: string): boolean;
  /** Inserts or replaces the row at `key`. */
  set(key: string, row: Row): void;
  /** Deletes the row at `key`; true when there was one. */
  delete(key: string): boolean;
  /** Every `[key, row]`, in insertion order (new keys of a transaction last). A snapshot. */
  entries(): Array<[string, Row]>;
  /** Every key, in the order of {@link InMemoryTable.entries}. */
  keys(): string[];
  /** Every row, in the order of {@link InMemoryTable.entries}. */
  values(): Row[];
  /** The number of rows. */
  readonly size: number;
}

/** The tables of an {@link InMemoryDatabase}. A table exists as soon as it is named (empty). */
export interface InMemoryTables<DB extends TableSchema> {
  /** The table called `name`. Cheap: a handle, not a copy. */
  get<K extends keyof DB & string>(name: K): InMemoryTable<DB[K]>;
  /** Names of the tables that hold at least one row, in creation order. */
  names(): string[];
}

const DELETED: unique symbol = Symbol('deleted');
type Rows = Map<string, Map<string, unknown>>;
type StagedRows = Map<string, Map<string, unknown>>;

/** @internal The storage's handle on a transactional view: commit or discard its staged writes. */
interface DatabaseTransaction<DB extends TableSchema> {
  readonly view: InMemoryDatabase<DB>;
  commit(): void;
  discard(): void;
  /** A copy of the staged writes (for a savepoint), and putting one back. */
  save(): StagedRows;
  restore(saved: StagedRows | undefined): void;
}

// Assigned in InMemoryDatabase's static block: the storage's private access to transactional views.
let beginDatabaseTransaction: <DB extends TableSchema>(db: InMemoryDatabase<DB>) => DatabaseTransaction<DB>;

/**
 * A small transactional key/value store: what `tx.db` is in a transaction of an
 * {@link InMemoryLogStorage}, so a handler's own writes commit (or roll back) together with its
 * appends — the in-memory stand-in for the Kysely handle `PgLogStorage` gives.
 *
 * - `db.tables.get(name)` is an {@link InMemoryTable}: `get`, `has`, `set`, `delete`, `entries`,
 *   `keys`, `values`, `size`.
 * - On the storage's own database (`storage.db`) writes apply at once: use it to seed state and to
 *   assert on committed state. On `tx.db`, writes are staged and applied when the transaction
 *   commits; reads see committed rows plus the transaction's own writes (read committed). Two
 *   transactions writing the same key: the last to commit wins.
 * - Rows are copied in and out with `structuredClone`.
 * - A `tx.db` used after its transaction ended throws `InvalidTransactionStateError`.
 *
 * @example
 * ```ts
 * await storage.transaction(async (tx) => {
 *   tx.db.tables.get('orders').set('o-1', { id: 'o-1', totalCents: 1250 });
 *   await tx.append([{ topic: 'orders', partition: 0, records: [record] }]);
 * });
 * expect(storage.db.tables.get('orders').get('o-1')).toEqual({ id: 'o-1', totalCents: 1250 });
 * ```
 */
export class InMemoryDatabase<DB extends TableSchema = UntypedTables> {
  #rows: Rows = new Map();
  /** `undefined`: writes apply at once. Otherwise: this transaction's writes (`DELETED` marks a delete). */
  #staged: StagedRows | undefined;
  #ended = false;

  /** The tables. */
  readonly tables: InMemoryTables<DB>;

  /** An empty database whose writes apply at once (the storage creates one unless given one). */
  constructor() {
    this.tables = Object.freeze({
      get: <K extends keyof DB & string>(name: K) => this.#table<DB[K]>(name),
      names: () => this.#names(),
    });
  }

  /** True for a transaction's view (`tx.db`): writes are staged until commit. */
  get inTransaction(): boolean {
    return this.#staged !== undefined;
  }

  /**
   * Every table with at least one row, as plain objects (`{ table: { key: row } }`), copied.
   * Handy with `toEqual` in tests.
   */
  snapshot(): { [K in keyof DB & string]?: Record<string, DB[K]> } {
    const out: Record<string, Record<string, unknown>> = {};
    for (const name of this.#names()) out[name] = Object.fromEntries(this.#entries(name));
    return out as { [K in keyof DB & string]?: Record<string, DB[K]> };
  }

  #check(): void {
    if (this.#ended) {
      throw new InvalidTransactionStateError('This tx.db belongs to a transaction that has ended: use it only inside the transaction callback.');
    }
  }

  #table<Row>(name: string): InMemoryTable<Row> {
    if (typeof name !== 'string' || name.length === 0) throw new InvalidOptionsError('A table name must be a non-empty string.');
    const self = this;
    return Object.freeze({
      get: (key: string) => self.#get(name, key) as Row | undefined,
      has: (key: string) => self.#has(name, key),
      set: (key: string, row: Row) => self.#set(name, key, row),
      delete: (key: string) => self.#delete(name, key),
      entries: () => self.#entries(name) as Array<[string, Row]>,
      keys: () => self.#entries(name).map(([k]) => k),
      values: () => self.#entries(name).map(([, v]) => v as Row),
      get size() {
        return self.#entries(name, false).length;
      },
    });
  }

  #raw(table: string, key: string): { found: boolean; value: unknown } {
    this.#check();
    const staged = this.#staged?.get(table);
    if (staged?.has(key)) {
      const v = staged.get(key);
      return v === DELETED ? { found: false, value: undefined } : { found: true, value: v };
    }
    const committed = this.#rows.get(table);
    return committed?.has(key) ? { found: true, value: committed.get(key) } : { found: false, value: undefined };
  }

  #get(table: string, key: string): unknown {
    const { found, value } = this.#raw(table, key);
    return found ? structuredClone(value) : undefined;
  }

  #has(table: string, key: string): boolean {
    return this.#raw(table, key).found;
  }

  #set(table: string, key: string, row: unknown): void {
    this.#check();
    if (typeof key !== 'string') throw new InvalidOptionsError(`Keys of table "${table}" must be strings, got ${typeof key}.`);
    const copy = structuredClone(row);
    const target = this.#staged ?? this.#rows;
    let t = target.get(table);
    if (!t) target.set(table, (t = new Map()));
    t.set(key, copy);
  }

  #delete(table: string, key: string): boolean {
    const existed = this.#has(table, key);
    if (this.#staged) {
      let t = this.#staged.get(table);
      if (!t) this.#staged.set(table, (t = new Map()));
      t.set(key, DELETED);
    } else {
      this.#rows.get(table)?.delete(key);
    }
    return existed;
  }

  #entries(table: string, clone = true): Array<[string, unknown]> {
    this.#check();
    const out: Array<[string, unknown]> = [];
    const staged = this.#staged?.get(table);
    const committed = this.#rows.get(table);
    if (committed) {
      for (const [k, v] of committed) {
        const s = staged?.has(k) ? staged.get(k) : v;
        if (s !== DELETED) out.push([k, s]);
      }
    }
    if (staged) {
      for (const [k, v] of staged) if (v !== DELETED && !committed?.has(k)) out.push([k, v]);
    }
    return clone ? out.map(([k, v]) => [k, structuredClone(v)]) : out;
  }

  #names(): string[] {
    this.#check();
    const names = new Set([...this.#rows.keys(), ...(this.#staged?.keys() ?? [])]);
    return [...names].filter((n) => this.#entries(n, false).length > 0);
  }

  #commit(): void {
    this.#check();
    for (const [table, writes] of this.#staged ?? []) {
      let t = this.#rows.get(table);
      if (!t) this.#rows.set(table, (t = new Map()));
      for (const [k, v] of writes) {
        if (v === DELETED) t.delete(k);
        else t.set(k, v);
      }
    }
    this.#ended = true;
  }

  static {
    beginDatabaseTransaction = <DB extends TableSchema>(db: InMemoryDatabase<DB>): DatabaseTransaction<DB> => {
      const view = new InMemoryDatabase<DB>();
      view.#rows = db.#rows;
      view.#staged = new Map();
      return {
        view,
        commit: () => view.#commit(),
        discard: () => {
          view.#ended = true;
        },
        // Staged rows are never mutated in place (set stores a fresh clone), so copying the maps is enough.
        save: () => new Map([...view.#staged!].map(([table, rows]) => [table, new Map(rows)])),
        restore: (saved) => {
          view.#staged = new Map([...(saved ?? [])].map(([table, rows]) => [table, new Map(rows)]));
        },
      };
    };
  }
}

// ---- options ---------------------------------------------------------------------------------

/** Options of {@link InMemoryLogStorage}. */
export interface InMemoryLogStorageInput<DB extends TableSchema = UntypedTables> {
  /**
   * The store's clock, in milliseconds since the epoch: the timestamp of records appended with
   * `timestamp: null`, and the clock transaction timeouts are measured with. Inject one to test
   * time-based behaviour deterministically.
   * @default Date.now
   */
  readonly now?: () => number;
  /**
   * The database `tx.db` writes into (and `storage.db` exposes). Pass one to share it.
   * @default a new, empty InMemoryDatabase
   */
  readonly database?: InMemoryDatabase<DB>;
  /** What `description` says. @default 'in-memory' */
  readonly description?: string;
}

interface ResolvedOptions<DB extends TableSchema> {
  readonly now: () => number;
  readonly database: InMemoryDatabase<DB>;
  readonly description: string;
}

function resolveOptions<DB extends TableSchema>(input: InMemoryLogStorageInput<DB>): ResolvedOptions<DB> {
  if (input.now !== undefined && typeof input.now !== 'function') {
    throw new InvalidOptionsError(`now must be a function returning milliseconds since the epoch, got ${typeof input.now}.`);
  }
  if (input.database !== undefined && !(input.database instanceof InMemoryDatabase)) {
    throw new InvalidOptionsError('database must be an InMemoryDatabase.');
  }
  if (input.database?.inTransaction) throw new InvalidOptionsError("database must be a storage's database, not a transaction's tx.db.");
  return Object.freeze({
    now: input.now ?? Date.now,
    database: input.database ?? new InMemoryDatabase<DB>(),
    description: input.description ?? 'in-memory',
  });
}

// ---- the log ---------------------------------------------------------------------------------

interface LogRecord {
  readonly timestamp: number;
  readonly key: Buffer | null;
  readonly value: Buffer | null;
  readonly headers: Readonly<Record<string, Buffer>>;
  /** Key + value + header names and values, in bytes (what `maxBytes` counts). */
  readonly size: number;
}

class PartitionLog {
  /** The log start offset: `records[0]` has this offset. */
  start = 0;
  /** By offset from `start`; `null` where compaction removed a record (offsets never move). */
  readonly records: Array<LogRecord | null> = [];
  /** The cleaner's time notes: at store time `at`, the log end was `offset`. */
  readonly timeNotes: Array<{ readonly at: number; readonly offset: number }> = [];
  /** Compaction has examined every offset below this. */
  cleaned = 0;
  logStartReason: LogStartReason | null = null;
  constructor(
    readonly topic: string,
    readonly partition: number,
  ) {}
  get logStartOffset(): bigint {
    return BigInt(this.start);
  }
  get logEndOffset(): bigint {
    return BigInt(this.start + this.records.length);
  }
  /** The first record at or after `offset` whose timestamp is ≥ `timestamp`, as an offset; else the log end. */
  offsetForTimestamp(timestamp: number, from = this.start): bigint {
    for (let i = Math.max(0, from - this.start); i < this.records.length; i++) {
      const r = this.records[i];
      if (r && r.timestamp >= timestamp) return BigInt(this.start + i);
    }
    return this.logEndOffset;
  }
  /** The first record at or after `offset`, if any. */
  firstFrom(offset: number): LogRecord | null {
    for (let i = Math.max(0, offset - this.start); i < this.records.length; i++) {
      const r = this.records[i];
      if (r) return r;
    }
    return null;
  }
  /** Moves the log start to `offset` (never back, never past the end), dropping what is below. */
  truncate(offset: number, reason: LogStartReason): boolean {
    const target = Math.min(offset, this.start + this.records.length);
    if (target <= this.start) return false;
    this.records.splice(0, target - this.start);
    this.start = target;
    this.logStartReason = reason;
    return true;
  }
  /** The largest noted offset whose note is at or before `at`, if any. */
  notedBefore(at: number): number | null {
    let best: number | null = null;
    for (const n of this.timeNotes) if (n.at <= at && (best === null || n.offset > best)) best = n.offset;
    return best;
  }
}

interface TopicState {
  readonly name: string;
  readonly partitions: PartitionLog[];
  config: TopicConfig;
}

interface SequenceState {
  readonly baseSequence: number;
  readonly lastSequence: number;
  readonly baseOffset: bigint;
}

const partitionKey = (topic: string, partition: number): string => `${topic}\u0000${partition}`;
const sequenceKey = (producerId: bigint, topic: string, partition: number): string => `${producerId}\u0000${topic}\u0000${partition}`;

// ---- partition locks -------------------------------------------------------------------------

interface LockOwner {
  readonly name: string;
  readonly held: Set<string>;
  waitingFor: string | undefined;
  /** Set once the owner's transaction ended: it may take no more locks. */
  closedBy: unknown;
}

interface LockWaiter {
  readonly owner: LockOwner;
  readonly grant: () => void;
  readonly fail: (error: unknown) => void;
}

/**
 * Exclusive, FIFO, re-entrant locks on partition keys, held by transactions. A wait that would
 * close a cycle is refused (the requester is the deadlock's victim, as in Postgres).
 */
class PartitionLocks {
  readonly #holders = new Map<string, LockOwner>();
  readonly #queues = new Map<string, LockWaiter[]>();

  /** Takes `keys` (already sorted) for `owner`, waiting in turn. */
  async acquire(owner: LockOwner, keys: readonly string[]): Promise<void> {
    for (const key of keys) {
      if (owner.closedBy !== undefined) {
        // Ended while a lock was being handed to it: give back what it got meanwhile.
        this.release(owner);
        throw owner.closedBy;
      }
      const holder = this.#holders.get(key);
      if (holder === owner) continue;
      if (holder === undefined) {
        this.#holders.set(key, owner);
        owner.held.add(key);
        continue;
      }
      if (this.#waitsFor(holder, owner)) {
        const [topic, partition] = key.split('\u0000');
        throw new ConcurrentTransactionsError(
          `Deadlock: ${owner.name} waited for partition ${partition} of topic "${topic}", held by ${holder.name}, which waits for a partition ${owner.name} holds. ` +
            `${owner.name} was rolled back; retry it.`,
          { topic: topic!, partition: Number(partition) },
        );
      }
      owner.waitingFor = key;
      try {
        await new Promise<void>((grant, fail) => {
          let queue = this.#queues.get(key);
          if (!queue) this.#queues.set(key, (queue = []));
          queue.push({ owner, grant, fail });
        });
      } finally {
        owner.waitingFor = undefined;
      }
    }
    if (owner.closedBy !== undefined) {
      this.release(owner);
      throw owner.closedBy;
    }
  }

  /** True when `from` waits, directly or through other waiters, for a lock `target` holds. */
  #waitsFor(from: LockOwner, target: LockOwner): boolean {
    const seen = new Set<LockOwner>();
    let current: LockOwner | undefined = from;
    while (current !== undefined && !seen.has(current)) {
      if (current === target) return true;
      seen.add(current);
      current = current.waitingFor === undefined ? undefined : this.#holders.get(current.waitingFor);
    }
    return false;
  }

  /** Ends `owner`: its wait (if any) rejects with `error`, and everything it holds is released. */
  close(owner: LockOwner, error: unknown): void {
    owner.closedBy ??= error;
    const key = owner.waitingFor;
    if (key !== undefined) {
      const queue = this.#queues.get(key) ?? [];
      const i = queue.findIndex((w) => w.owner === owner);
      if (i >= 0) queue.splice(i, 1)[0]!.fail(error);
    }
    this.release(owner);
  }

  /** Releases every lock `owner` holds, handing each to its first waiter. */
  release(owner: LockOwner): void {
    this.releaseKeys(owner, [...owner.held]);
  }

  /** Releases some of `owner`'s locks (a savepoint rolled back past them). */
  releaseKeys(owner: LockOwner, keys: readonly string[]): void {
    for (const key of keys) {
      if (!owner.held.delete(key)) continue;
      const queue = this.#queues.get(key);
      const next = queue?.shift();
      if (queue?.length === 0) this.#queues.delete(key);
      if (next) {
        this.#holders.set(key, next.owner);
        next.owner.held.add(key);
        next.grant();
      } else {
        this.#holders.delete(key);
      }
    }
  }
}

// ---- transactions ----------------------------------------------------------------------------

type Fence = NonNullable<AppendOptions['fence']>;

interface StagedOffset {
  readonly groupId: string;
  readonly topic: string;
  readonly partition: number;
  readonly offset: bigint;
  readonly metadata: string | null;
}

interface OffsetFence {
  readonly groupId: string;
  readonly fence: CommitFence;
  readonly commits: ReadonlyArray<{ readonly topic: string; readonly partition: number }>;
}

/** What a transaction needs from its storage (the storage's private operations, bound). */
interface TransactionEngine<DB extends TableSchema> {
  database(): InMemoryDatabase<DB>;
  readonly locks: PartitionLocks;
  now(): number;
  assertConnected(): void;
  appendIn(txn: InMemoryTransaction<DB>, appends: readonly PartitionAppend[], options: AppendOptions): Promise<PartitionAppendResult[]>;
  commitOffsetsIn(txn: InMemoryTransaction<DB>, groupId: string, commits: readonly OffsetCommit[], fence: CommitFence | undefined): void;
  appendToStreamsIn(txn: InMemoryTransaction<DB>, appends: readonly PartitionAppend[], streams: readonly StreamExpectation[]): Promise<StreamAppendResult>;
  readStreamIn(txn: InMemoryTransaction<DB>, topic: string, partition: number, key: Uint8Array, options: StreamReadOptions | undefined): StreamSlice;
  /** Last checks, then applies everything in one synchronous step. Throws (applying nothing) on a failed check. */
  apply(txn: InMemoryTransaction<DB>): void;
}

let transactionCounter = 0;

/**
 * One storage transaction. It begins on first use (`db`, `append`, `commitOffsets`) and holds
 * everything it wrote in its stage until `commit()` applies it all at once or `rollback()` drops it.
 */
class InMemoryTransaction<DB extends TableSchema> implements DeferredTransaction<InMemoryDatabase<DB>> {
  readonly owner: LockOwner;
  /** Staged records per partition, in staging order. */
  readonly staged = new Map<PartitionLog, LogRecord[]>();
  sequences = new Map<string, SequenceState>();
  readonly fences: Fence[] = [];
  offsets = new Map<string, StagedOffset>();
  readonly offsetFences: OffsetFence[] = [];
  /** Staged stream counters (in-memory-streams.ts), applied with the records at commit. */
  streamCounters = new Map<string, StreamCounter>();
  readonly #engine: TransactionEngine<DB>;
  readonly #timeoutMs: number | undefined;
  readonly #started: number;
  #state: 'open' | 'committing' | 'committed' | 'rolled back' = 'open';
  #begun = false;
  /** Why the store rolled it back (deadlock, timeout) while its user still held it. */
  #abortedBy: unknown;
  /** Operations run one after the other, as statements on one connection do. */
  #chain: Promise<unknown> = Promise.resolve();
  #db: DatabaseTransaction<DB> | undefined;
  #timer: NodeJS.Timeout | undefined;

  constructor(engine: TransactionEngine<DB>, options: StorageTransactionOptions) {
    this.#engine = engine;
    this.#timeoutMs = options.timeoutMs;
    this.#started = engine.now();
    this.owner = { name: `transaction #${++transactionCounter}`, held: new Set(), waitingFor: undefined, closedBy: undefined };
  }

  get begun(): boolean {
    return this.#begun;
  }

  get db(): InMemoryDatabase<DB> {
    this.#assertUsable();
    this.#begin();
    this.#db ??= beginDatabaseTransaction(this.#engine.database());
    return this.#db.view;
  }

  append(appends: readonly PartitionAppend[], options?: AppendOptions): Promise<PartitionAppendResult[]> {
    if (appends.length === 0) return Promise.resolve([]);
    return this.#enqueue(() => {
      this.#begin();
      return this.#engine.appendIn(this, appends, options ?? {});
    });
  }

  commitOffsets(groupId: string, commits: readonly OffsetCommit[], fence?: CommitFence): Promise<void> {
    if (commits.length === 0) return Promise.resolve();
    return this.#enqueue(() => {
      this.#begin();
      this.#engine.commitOffsetsIn(this, groupId, commits, fence);
    });
  }

  appendToStreams(appends: readonly PartitionAppend[], streams: readonly StreamExpectation[]): Promise<StreamAppendResult> {
    if (appends.length === 0 && streams.length === 0) return Promise.resolve({ appends: [], streams: [] });
    return this.#enqueue(() => {
      this.#begin();
      return this.#engine.appendToStreamsIn(this, appends, streams);
    });
  }

  readStream(topic: string, partition: number, key: Uint8Array, options?: StreamReadOptions): Promise<StreamSlice> {
    return this.#enqueue(() => this.#engine.readStreamIn(this, topic, partition, key, options));
  }

  async savepoint<T>(fn: () => Promise<T>): Promise<T> {
    this.#assertUsable();
    await this.#chain;
    const restore = this.#mark();
    try {
      return await fn();
    } catch (error) {
      await this.#chain;
      if (this.#abortedBy === undefined && this.#state === 'open') restore();
      throw error;
    }
  }

  async commit(): Promise<void> {
    if (this.#state !== 'open') throw new InvalidTransactionStateError(`This transaction has already ${this.#state === 'committing' ? 'begun to commit' : 'ended'}.`);
    this.#state = 'committing';
    if (!this.#begun) {
      this.#state = 'committed';
      return;
    }
    try {
      await this.#chain; // operations the user started but did not await
      if (this.#abortedBy !== undefined) throw this.#abortedBy;
      if (this.#timeoutMs !== undefined && this.#engine.now() - this.#started > this.#timeoutMs) throw timeoutError(this.#timeoutMs);
      this.#engine.apply(this);
      this.#db?.commit();
      this.#state = 'committed';
    } catch (error) {
      this.#discard();
      this.#state = 'rolled back';
      throw error;
    } finally {
      this.#end();
    }
  }

  async rollback(): Promise<void> {
    if (this.#state !== 'open') return;
    this.#state = 'rolled back';
    this.#discard();
    this.#end();
  }

  /** The store rolls the transaction back under its user (deadlock victim, timeout). */
  abort(cause: unknown): void {
    if (this.#abortedBy !== undefined || (this.#state !== 'open' && this.#state !== 'committing')) return;
    this.#abortedBy = cause;
    this.#discard();
    this.#end(cause);
  }

  /** Inside an operation: fails if the store rolled the transaction back meanwhile. */
  assertNotAborted(): void {
    if (this.#abortedBy !== undefined) throw this.#abortedBy;
  }

  #assertUsable(): void {
    this.assertNotAborted();
    if (this.#state !== 'open') {
      throw new InvalidTransactionStateError(`This transaction has ${this.#state === 'committing' ? 'begun to commit' : 'ended'}; its handle cannot be used any more.`);
    }
  }

  #begin(): void {
    this.assertNotAborted();
    if (this.#state === 'committed' || this.#state === 'rolled back') {
      throw new InvalidTransactionStateError(`This transaction has ${this.#state === 'committed' ? 'committed' : 'rolled back'}; its handle cannot be used any more.`);
    }
    if (this.#begun) return;
    this.#engine.assertConnected();
    this.#begun = true;
    if (this.#timeoutMs !== undefined) {
      // Backstop, as Postgres' idle_in_transaction_session_timeout: a forgotten transaction frees its partitions.
      const timeoutMs = this.#timeoutMs;
      this.#timer = setTimeout(() => this.abort(timeoutError(timeoutMs)), Math.max(0, timeoutMs));
      this.#timer.unref();
    }
  }

  #enqueue<T>(op: () => Promise<T> | T): Promise<T> {
    try {
      this.#assertUsable();
    } catch (error) {
      return Promise.reject(error);
    }
    const run = this.#chain.then(op);
    this.#chain = run.catch(() => {});
    return run;
  }

  /** Captures the stage; the returned function restores it and frees partitions locked since. */
  #mark(): () => void {
    const lengths = new Map([...this.staged].map(([log, records]) => [log, records.length]));
    const sequences = new Map(this.sequences);
    const fences = this.fences.length;
    const offsets = new Map(this.offsets);
    const offsetFences = this.offsetFences.length;
    const streamCounters = new Map(this.streamCounters);
    const rows = this.#db?.save();
    const held = new Set(this.owner.held);
    return () => {
      for (const [log, records] of [...this.staged]) {
        const length = lengths.get(log);
        if (length === undefined) this.staged.delete(log);
        else records.length = length;
      }
      this.sequences = sequences;
      this.fences.length = fences;
      this.offsets = offsets;
      this.offsetFences.length = offsetFences;
      this.streamCounters = streamCounters;
      this.#db?.restore(rows);
      this.#engine.locks.releaseKeys(
        this.owner,
        [...this.owner.held].filter((k) => !held.has(k)),
      );
    };
  }

  #discard(): void {
    this.staged.clear();
    this.sequences.clear();
    this.offsets.clear();
    this.streamCounters.clear();
    this.#db?.discard();
  }

  #end(cause?: unknown): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#engine.locks.close(this.owner, cause ?? new InvalidTransactionStateError('The transaction has ended.'));
  }
}

function timeoutError(timeoutMs: number): TransactionTimeoutError {
  return new TransactionTimeoutError(`The transaction stayed open longer than its timeout (${timeoutMs} ms) and was rolled back.`);
}

// ---- consumer groups -------------------------------------------------------------------------

interface MemberState {
  readonly memberId: string;
  readonly clientId: string;
  readonly clientHost: string;
  readonly topics: readonly string[];
  readonly sessionTimeoutMs: number;
  readonly joinedAt: number;
  heartbeatAt: number;
  readonly session: InMemoryGroupSession;
}

interface GroupState {
  readonly members: Map<string, MemberState>;
  /** Per partition (`partitionKey`): its owning member (null once released) and generation. */
  readonly owners: Map<string, { memberId: string | null; generation: bigint }>;
  readonly offsets: Map<string, { readonly offset: bigint; readonly metadata: string | null; readonly committedAt: number }>;
  /** Per partition: the session holding it (Postgres: the session's advisory lock). */
  readonly claims: Map<string, InMemoryGroupSession>;
}

/** What a group session needs from its storage. */
interface GroupEngine {
  heartbeat(session: InMemoryGroupSession): LiveMember[];
  claim(session: InMemoryGroupSession, topic: string, partition: number): PartitionClaim;
  release(session: InMemoryGroupSession, topic: string, partition: number): void;
  leave(session: InMemoryGroupSession): void;
}

/**
 * A member's session. Its lifetime bounds the member's ownership: when the member is expired (by
 * another member's heartbeat) the session is lost at once — its claims freed, `onLost` called —
 * as Postgres terminating the member's backend would.
 */
class InMemoryGroupSession implements GroupSession {
  readonly groupId: string;
  readonly memberId: string;
  readonly events: GroupSessionEvents;
  readonly topics: ReadonlySet<string>;
  /** Partition keys this session claimed. */
  readonly held = new Set<string>();
  lost: unknown;
  left = false;
  readonly #engine: GroupEngine;

  constructor(engine: GroupEngine, groupId: string, memberId: string, topics: readonly string[], events: GroupSessionEvents) {
    this.#engine = engine;
    this.groupId = groupId;
    this.memberId = memberId;
    this.topics = new Set(topics);
    this.events = events;
  }

  get live(): boolean {
    return this.lost === undefined && !this.left;
  }

  #check(): void {
    if (this.lost !== undefined) {
      throw new IllegalGenerationError(`Member ${this.memberId} lost its group session; it must rejoin.`, { groupId: this.groupId, cause: this.lost });
    }
    if (this.left) throw new IllegalGenerationError(`Member ${this.memberId} has left group "${this.groupId}"; it must rejoin.`, { groupId: this.groupId });
  }

  async heartbeat(): Promise<LiveMember[]> {
    this.#check();
    return this.#engine.heartbeat(this);
  }

  async claim(topic: string, partition: number): Promise<PartitionClaim> {
    this.#check();
    return this.#engine.claim(this, topic, partition);
  }

  async release(topic: string, partition: number): Promise<void> {
    this.#check();
    this.#engine.release(this, topic, partition);
  }

  async leave(): Promise<void> {
    if (this.left) return;
    this.#engine.leave(this);
  }
}

interface Watcher {
  readonly topics: ReadonlySet<string>;
  readonly listener: AppendListener;
}

/**
 * The storage port in memory: a real partitioned log with the same semantics as `PgLogStorage` —
 * dense offsets, atomic multi-partition appends, storage transactions with a transactional
 * key/value database (`tx.db`, an {@link InMemoryDatabase}), idempotent and transactional
 * producers, watches — for fast unit tests of code built on Annals. Nothing is persisted.
 *
 * `DB` types the tables of `tx.db` (table name → row type), as `PgLogStorage<DB>` types Kysely's.
 *
 * @example
 * ```ts
 * const storage = new InMemoryLogStorage({ now: () => clock });
 * const annals = new Annals({ clientId: 'test', storage });
 * await annals.admin().createTopics({ topics: [{ topic: 'orders', numPartitions: 3 }] });
 * ```
 */
export class InMemoryLogStorage<DB extends TableSchema = UntypedTables> implements LogStorage<InMemoryDatabase<DB>> {
  readonly #options: ResolvedOptions<DB>;
  readonly #topics = new Map<string, TopicState>();
  readonly #sequences = new Map<string, SequenceState>();
  readonly #transactionalIds = new Map<string, ProducerIdentity>();
  readonly #locks = new PartitionLocks();
  readonly #watchers = new Set<Watcher>();
  readonly #groups = new Map<string, GroupState>();
  #nextProducerId = 1n;
  #connected = false;

  /** Creates a store; call `connect()` before using it (as with any store). */
  constructor(input: InMemoryLogStorageInput<DB> = {}) {
    this.#options = resolveOptions(input);
  }

  /** What {@link InMemoryLogStorageInput.description} says (`'in-memory'` by default). */
  get description(): string {
    return this.#options.description;
  }

  /**
   * The committed state of the application's tables. Writes here apply at once (seed state with
   * them); reads see what transactions committed.
   *
   * @example
   * ```ts
   * expect(storage.db.tables.get('orders').get('o-1')).toEqual({ id: 'o-1', totalCents: 1250 });
   * ```
   */
  get db(): InMemoryDatabase<DB> {
    return this.#options.database;
  }

  #schemaRegistry: InMemorySchemaRegistry | undefined;

  /** The schema registry, in memory (see `in-memory-schema-registry.ts`). */
  get schemaRegistry(): InMemorySchemaRegistry {
    this.#schemaRegistry ??= new InMemorySchemaRegistry(() => this.now(), () => this.#connected);
    return this.#schemaRegistry;
  }

  #projections: InMemoryProjectionStore<DB> | undefined;
  #cleanerLeased = false;

  /** Retention and compaction, with the Postgres store's rules (see the module comment). One lease at a time. */
  readonly cleaner: CleanerStorage = {
    acquireCleaner: async () => {
      this.#assertConnected();
      if (this.#cleanerLeased) return null;
      this.#cleanerLeased = true;
      let released = false;
      let running = false;
      return {
        get lost() {
          return released;
        },
        clean: async (options) => {
          if (released) throw new CleanerLeaseLostError('This cleaner lease was released; acquire a new one.');
          if (running) throw new InvalidOptionsError('A cleaner pass is already running on this lease; wait for it to finish before starting another.');
          running = true;
          try {
            return this.#clean(options);
          } finally {
            running = false;
          }
        },
        release: async () => {
          if (released) return;
          released = true;
          this.#cleanerLeased = false;
        },
      };
    },
  };

  #clean(options: CleanPassOptions): CleanPassReport {
    this.#assertConnected();
    const started = performance.now();
    const now = options.now ?? this.now();
    const reports: PartitionCleanReport[] = [];
    const names = [...this.#topics.keys()].filter((n) => !options.topics || options.topics.includes(n)).sort();
    for (const name of names) {
      const topic = this.#topics.get(name)!;
      const config = topic.config;
      const policy = config['cleanup.policy'];
      for (const log of topic.partitions) {
        if (options.signal?.aborted) break;
        const end = log.start + log.records.length;
        const lastNote = log.timeNotes.at(-1)?.offset ?? -1;
        if ((config['retention.ms'] >= 0 || policy.includes('compact')) && end > log.start && end > lastNote) {
          log.timeNotes.push({ at: now, offset: end });
        }
        let movedBy: PartitionCleanReport['logStartMovedBy'] = null;
        let segmentsDropped = 0;
        if (policy.includes('delete')) {
          let target = log.start;
          let reason: 'retention.ms' | 'retention.bytes' | null = null;
          const cut = config['retention.ms'] >= 0 ? log.notedBefore(now - config['retention.ms']) : null;
          if (cut !== null && cut > target) {
            target = cut;
            reason = 'retention.ms';
          }
          const limit = config['retention.bytes'];
          if (limit >= 0) {
            const size = config['segment.records'];
            const segments: Array<{ end: number; bytes: number }> = [];
            for (let base = Math.floor(target / size) * size; base + size <= end; base += size) {
              let bytes = 0;
              for (let o = Math.max(base, log.start); o < base + size; o++) bytes += log.records[o - log.start]?.size ?? 0;
              segments.push({ end: base + size, bytes });
            }
            let total = segments.reduce((sum, seg) => sum + seg.bytes, 0);
            for (let o = segments.at(-1)?.end ?? target; o < end; o++) total += log.records[o - log.start]?.size ?? 0;
            for (const seg of segments) {
              if (total - seg.bytes < limit) break;
              total -= seg.bytes;
              if (seg.end > target) {
                target = seg.end;
                reason = 'retention.bytes';
                segmentsDropped++;
              }
            }
          }
          if (reason !== null && log.truncate(target, reason)) movedBy = reason;
        }
        let recordsCompacted = 0;
        let tombstonesRemoved = 0;
        if (policy.includes('compact')) {
          const upTo = config['min.compaction.lag.ms'] === 0 ? end : (log.notedBefore(now - config['min.compaction.lag.ms']) ?? 0);
          const from = Math.max(log.cleaned, log.start);
          if (from < upTo) {
            const latest = new Map<string, number>();
            for (let o = from; o < upTo; o++) {
              const r = log.records[o - log.start];
              if (r?.key) latest.set(r.key.toString('hex'), o);
            }
            for (let o = log.start; o < upTo; o++) {
              const r = log.records[o - log.start];
              if (!r?.key) continue;
              const last = latest.get(r.key.toString('hex'));
              if (last !== undefined && o < last) {
                log.records[o - log.start] = null;
                recordsCompacted++;
              }
            }
            log.cleaned = upTo;
          }
          const tombstoneCut = log.notedBefore(now - config['delete.retention.ms']);
          if (tombstoneCut !== null) {
            for (let o = log.start; o < Math.min(tombstoneCut, log.cleaned); o++) {
              const r = log.records[o - log.start];
              if (r && r.value === null) {
                log.records[o - log.start] = null;
                tombstonesRemoved++;
              }
            }
          }
        }
        // Notes no cutoff can use again: at or below the log start, or older than the one the
        // longest rule picks now (cutoffs only move forward).
        const rules: number[] = [];
        if (policy.includes('delete') && config['retention.ms'] >= 0) rules.push(config['retention.ms']);
        if (policy.includes('compact')) rules.push(config['min.compaction.lag.ms'], config['delete.retention.ms']);
        const horizon = rules.length === 0 ? null : Math.max(...rules);
        const oldestUseful = horizon === null ? Infinity : Math.max(-Infinity, ...log.timeNotes.filter((n) => n.at <= now - horizon).map((n) => n.at));
        const kept = log.timeNotes.filter((n) => n.offset > log.start && n.at >= oldestUseful);
        log.timeNotes.splice(0, log.timeNotes.length, ...kept);
        const report: PartitionCleanReport = {
          topic: name,
          partition: log.partition,
          logStartOffset: log.logStartOffset,
          logStartMovedBy: movedBy,
          recordsCompacted,
          tombstonesRemoved,
          recordsExpired: 0,
          segmentsDropped,
          cleanedOffset: BigInt(log.cleaned),
        };
        reports.push(report);
        options.onPartition?.(report);
      }
    }
    return { partitions: reports, durationMs: performance.now() - started };
  }

  /** Projection bookkeeping and document read models (see `in-memory-projection-store.ts`). */
  get projections(): InMemoryProjectionStore<DB> {
    this.#projections ??= new InMemoryProjectionStore(() => this.db, () => this.now());
    return this.#projections;
  }

  /** The store's clock (see {@link InMemoryLogStorageInput.now}). */
  now(): number {
    return this.#options.now();
  }

  /** Marks the store connected. Idempotent. Data survives `disconnect()`/`connect()`. */
  async connect(): Promise<void> {
    this.#connected = true;
  }

  /** Marks the store disconnected and drops every watch. Idempotent. The log is kept. */
  async disconnect(): Promise<void> {
    this.#connected = false;
    this.#watchers.clear();
  }

  /** `await using storage = …` disconnects at the end of the scope. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.disconnect();
  }

  #assertConnected(): void {
    if (!this.#connected) throw new NotConnectedError('The in-memory storage is not connected: call connect() first.');
  }

  #topic(name: string): TopicState {
    const topic = this.#topics.get(name);
    if (!topic) throw new UnknownTopicOrPartitionError(`Topic "${name}" does not exist.`, { topic: name });
    return topic;
  }

  #partition(topic: string, partition: number): PartitionLog {
    const log = this.#topics.get(topic)?.partitions[partition];
    if (!log || !Number.isInteger(partition)) {
      throw new UnknownTopicOrPartitionError(`Partition ${partition} of topic "${topic}" does not exist.`, { topic, partition });
    }
    return log;
  }

  // ---- admin -------------------------------------------------------------------------------

  /**
   * Creates topics, all or none: an existing name (or one listed twice) throws
   * `TopicAlreadyExistsError` and creates nothing. Names follow Kafka's rules (`InvalidTopicError`);
   * partition counts must be positive integers (`InvalidPartitionsError`); configs are validated
   * (`InvalidConfigError`).
   */
  async createTopics(specs: readonly TopicSpec[]): Promise<void> {
    this.#assertConnected();
    const names = new Set<string>();
    const resolved = specs.map((spec) => {
      validateTopicName(spec.name);
      if (this.#topics.has(spec.name) || names.has(spec.name)) {
        throw new TopicAlreadyExistsError(`Topic "${spec.name}" already exists. Nothing was created.`, { topic: spec.name });
      }
      names.add(spec.name);
      if (!Number.isSafeInteger(spec.partitions) || spec.partitions < 1) {
        throw new InvalidPartitionsError(`Topic "${spec.name}" needs a positive integer partition count, got ${spec.partitions}. Nothing was created.`, {
          topic: spec.name,
        });
      }
      return { name: spec.name, partitions: spec.partitions, config: resolveTopicConfig(spec.config, DEFAULT_TOPIC_CONFIG, spec.name) };
    });
    for (const spec of resolved) {
      this.#topics.set(spec.name, {
        name: spec.name,
        partitions: Array.from({ length: spec.partitions }, (_, p) => new PartitionLog(spec.name, p)),
        config: spec.config,
      });
    }
  }

  /**
   * Deletes topics with their records and producer state, all or none: an unknown name throws
   * `UnknownTopicOrPartitionError` and deletes nothing. A transaction still holding an append to a
   * deleted topic fails at commit.
   */
  async deleteTopics(names: readonly string[]): Promise<void> {
    this.#assertConnected();
    for (const name of names) this.#topic(name);
    const deleted = new Set(names);
    for (const name of deleted) this.#topics.delete(name);
    this.#streams.forgetTopics(deleted);
    for (const key of [...this.#sequences.keys()]) {
      const topic = key.split('\u0000')[1]!;
      if (deleted.has(topic)) this.#sequences.delete(key);
    }
  }

  /** Raises a topic's partition count to `count`; anything but an increase throws `InvalidPartitionsError`. */
  async createPartitions(topic: string, count: number): Promise<void> {
    this.#assertConnected();
    const state = this.#topic(topic);
    const current = state.partitions.length;
    if (!Number.isSafeInteger(count) || count <= current) {
      throw new InvalidPartitionsError(
        `Topic "${topic}" has ${current} partitions; createPartitions can only increase the count (asked for ${count}).`,
        { topic },
      );
    }
    for (let p = current; p < count; p++) state.partitions.push(new PartitionLog(topic, p));
  }

  /** Topic names, sorted. */
  async listTopics(): Promise<string[]> {
    this.#assertConnected();
    return [...this.#topics.keys()].sort();
  }

  /** Descriptions of the named topics (all topics when omitted), sorted by name; unknown names throw. */
  async describeTopics(names?: readonly string[]): Promise<TopicDescription[]> {
    this.#assertConnected();
    const selected = names === undefined ? [...this.#topics.keys()] : [...new Set(names)];
    const topics = selected.map((n) => this.#topic(n));
    return topics
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
      .map((t) => ({ name: t.name, partitions: t.partitions.length, config: t.config }));
  }

  /** Replaces a topic's config with `update(current)`, validated (`InvalidConfigError` changes nothing). */
  async alterTopicConfig(topic: string, update: (current: TopicConfig) => TopicConfig): Promise<TopicConfig> {
    this.#assertConnected();
    const state = this.#topic(topic);
    const next = resolveTopicConfig(update(state.config), DEFAULT_TOPIC_CONFIG, topic);
    state.config = next;
    return next;
  }

  /** Per partition, the log start offset and the log end offset. */
  async fetchWatermarks(topic: string): Promise<PartitionWatermarks[]> {
    this.#assertConnected();
    return this.#topic(topic).partitions.map((log) => ({ partition: log.partition, low: log.logStartOffset, high: log.logEndOffset }));
  }

  /** Per partition, the first offset whose timestamp is ≥ `timestamp`, or the log end offset. */
  async fetchOffsetsByTimestamp(topic: string, timestamp: number): Promise<Array<{ partition: number; offset: bigint }>> {
    this.#assertConnected();
    return this.#topic(topic).partitions.map((log) => ({ partition: log.partition, offset: log.offsetForTimestamp(timestamp) }));
  }

  /**
   * Moves partitions' log start offsets forward — never back, never past the log end; `-1n`
   * means the log end — and removes the records below them. All or none: an unknown topic or
   * partition throws `UnknownTopicOrPartitionError` and deletes nothing. Returns the new log start
   * offsets, by partition.
   */
  async deleteRecords(
    topic: string,
    partitions: ReadonlyArray<{ partition: number; offset: bigint }>,
  ): Promise<Array<{ partition: number; lowWatermark: bigint }>> {
    this.#assertConnected();
    const logs = partitions.map((p) => this.#partition(topic, p.partition));
    partitions.forEach((p, i) => {
      const log = logs[i]!;
      const end = log.start + log.records.length;
      const target = p.offset < 0n ? end : p.offset > BigInt(end) ? end : Number(p.offset);
      log.truncate(target, 'delete-records');
    });
    return [...new Set(logs)].sort((a, b) => a.partition - b.partition).map((log) => ({ partition: log.partition, lowWatermark: log.logStartOffset }));
  }

  // ---- producing -----------------------------------------------------------------------------

  /**
   * Registers a producer. Without a transactional id: a new producer id (increasing from 1),
   * epoch 0. With one: the id's producer id, with its epoch bumped (0 the first time) — which
   * fences every append and open transaction that carries an older epoch.
   */
  async initProducer(transactionalId?: string): Promise<ProducerIdentity> {
    this.#assertConnected();
    if (transactionalId === undefined) return { producerId: this.#nextProducerId++, epoch: 0 };
    const current = this.#transactionalIds.get(transactionalId);
    const next: ProducerIdentity = Object.freeze(
      current ? { producerId: current.producerId, epoch: current.epoch + 1 } : { producerId: this.#nextProducerId++, epoch: 0 },
    );
    this.#transactionalIds.set(transactionalId, next);
    return { ...next };
  }

  /**
   * Appends in a transaction of its own: every partition's records, or none. Validation errors
   * (`UnknownTopicOrPartitionError`, `OutOfOrderSequenceError`, `ProducerFencedError`,
   * `InvalidOptionsError`) write nothing. Waits for transactions holding these partitions.
   *
   * @example
   * ```ts
   * const [r] = await storage.append([{ topic: 'orders', partition: 0, records: [{ key: null, value, headers: null, timestamp: null }] }]);
   * r.baseOffset; // 0n for the first record
   * ```
   */
  async append(appends: readonly PartitionAppend[], options: AppendOptions = {}): Promise<PartitionAppendResult[]> {
    this.#assertConnected();
    if (appends.length === 0) return [];
    return this.transaction((tx) => tx.append(appends, options));
  }

  /**
   * A transaction that begins on first use (`db`, `append`, `commitOffsets`) and ends with
   * `commit()` or `rollback()`. `tx.append` takes the locks of its partitions until the
   * transaction ends, and its base offsets are final. `savepoint(fn)` rolls back only `fn`'s
   * writes (and frees partitions `fn` locked) when `fn` throws; taken before the transaction
   * began, it restores the empty stage and the transaction stays usable. With `timeoutMs`, a
   * transaction open longer than that (by the store clock, from creation) fails to commit with
   * `TransactionTimeoutError`; a timer frees its partitions at the deadline.
   *
   * @example
   * ```ts
   * const tx = storage.deferredTransaction();
   * try {
   *   for (const record of batch) await tx.savepoint(() => handle(record, tx));
   *   await tx.commitOffsets('payments', [{ topic: 'orders', partition: 0, offset: next }], fence);
   *   await tx.commit();
   * } catch (error) {
   *   await tx.rollback();
   *   throw error;
   * }
   * ```
   */
  deferredTransaction(options: StorageTransactionOptions = {}): DeferredTransaction<InMemoryDatabase<DB>> {
    this.#assertConnected();
    return new InMemoryTransaction<DB>(this.#engine, options);
  }

  /**
   * Runs `fn` in one storage transaction: its `tx.append`s, `tx.commitOffsets` and `tx.db` writes
   * are applied together when `fn` resolves, or dropped (taking no offsets) when it throws — the
   * error is rethrown. See {@link InMemoryLogStorage.deferredTransaction} for locks and timeouts.
   *
   * @example
   * ```ts
   * await storage.transaction(async (tx) => {
   *   tx.db.tables.get('orders').set('o-1', order);
   *   await tx.append([{ topic: 'orders', partition: 0, records: [record] }]);
   * });
   * ```
   */
  async transaction<T>(fn: (tx: StorageTransaction<InMemoryDatabase<DB>>) => Promise<T>, options: StorageTransactionOptions = {}): Promise<T> {
    const tx = this.deferredTransaction(options);
    let result: T;
    try {
      result = await fn(tx);
    } catch (error) {
      await tx.rollback();
      throw error;
    }
    await tx.commit();
    return result;
  }

  readonly #engine: TransactionEngine<DB> = {
    database: () => this.#options.database,
    locks: this.#locks,
    now: () => this.now(),
    assertConnected: () => this.#assertConnected(),
    appendIn: (txn, appends, options) => this.#appendIn(txn, appends, options),
    commitOffsetsIn: (txn, groupId, commits, fence) => this.#commitOffsetsIn(txn, groupId, commits, fence),
    appendToStreamsIn: (txn, appends, streams) => this.#streams.appendIn(txn, appends, streams),
    readStreamIn: (txn, topic, partition, key, options) => this.#streams.read(txn, topic, partition, key, options),
    apply: (txn) => this.#apply(txn),
  };

  /** Last checks (fences, partitions still there), then everything at once: nothing awaits in between. */
  #apply(txn: InMemoryTransaction<DB>): void {
    for (const fence of txn.fences) this.#checkFence(fence);
    for (const f of txn.offsetFences) this.#checkOffsetFence(f.groupId, f.fence, f.commits);
    for (const log of txn.staged.keys()) {
      if (this.#topics.get(log.topic)?.partitions[log.partition] !== log) {
        throw new UnknownTopicOrPartitionError(
          `Partition ${log.partition} of topic "${log.topic}" was deleted while the transaction was open. Nothing was written.`,
          { topic: log.topic, partition: log.partition },
        );
      }
    }
    for (const [log, records] of txn.staged) {
      log.records.push(...records);
    }
    for (const [key, state] of txn.sequences) this.#sequences.set(key, state);
    this.#streams.apply(txn);
    const committedAt = Math.floor(this.now());
    for (const o of txn.offsets.values()) {
      this.#group(o.groupId).offsets.set(partitionKey(o.topic, o.partition), { offset: o.offset, metadata: o.metadata, committedAt });
    }
    this.#notify([...txn.staged.keys()]);
  }

  #checkFence(fence: Fence): void {
    const current = this.#transactionalIds.get(fence.transactionalId);
    if (!current || current.producerId !== fence.producerId || current.epoch !== fence.epoch) {
      throw new ProducerFencedError(
        `Producer with transactionalId "${fence.transactionalId}" (epoch ${fence.epoch}) was fenced by a newer producer with the same id; this transaction was aborted.`,
      );
    }
  }

  async #appendIn(txn: InMemoryTransaction<DB>, appends: readonly PartitionAppend[], options: AppendOptions): Promise<PartitionAppendResult[]> {
    txn.assertNotAborted();
    this.#assertConnected();
    // Everything checkable without waiting, first: a bad append waits for nobody and writes nothing.
    const keys = new Set<string>();
    for (const a of appends) {
      const key = partitionKey(a.topic, a.partition);
      if (keys.has(key)) throw new InvalidOptionsError(`Append lists ${a.topic}[${a.partition}] twice; merge its records first.`);
      keys.add(key);
      if (options.producerId !== undefined && (!Number.isSafeInteger(a.baseSequence) || a.baseSequence! < 0)) {
        throw new InvalidOptionsError('An idempotent append needs a baseSequence (an integer ≥ 0) for every partition.', {
          topic: a.topic,
          partition: a.partition,
        });
      }
    }
    this.#resolveAppends(appends);
    const prepared = appends.map((a) => a.records.map((r) => prepareRecord(r, a)));

    const sorted = [...appends].sort((a, b) => (a.topic < b.topic ? -1 : a.topic > b.topic ? 1 : a.partition - b.partition));
    try {
      await this.#locks.acquire(
        txn.owner,
        sorted.map((a) => partitionKey(a.topic, a.partition)),
      );
    } catch (error) {
      if (error instanceof ConcurrentTransactionsError) txn.abort(error);
      throw error;
    }
    txn.assertNotAborted();
    // Under the locks: the topics may have changed while we waited.
    const logs = this.#resolveAppends(appends);
    if (options.fence) {
      this.#checkFence(options.fence);
      txn.fences.push({ ...options.fence });
    }

    const now = Math.floor(this.now());
    const results: PartitionAppendResult[] = [];
    const writes: Array<{ log: PartitionLog; records: LogRecord[]; sequence?: [string, SequenceState] }> = [];
    appends.forEach((a, i) => {
      const log = logs[i]!;
      const base = log.logEndOffset + BigInt(txn.staged.get(log)?.length ?? 0);
      if (options.producerId === undefined) {
        results.push({ topic: a.topic, partition: a.partition, baseOffset: base, duplicate: false });
        writes.push({ log, records: prepared[i]!.map((p) => p(now)) });
        return;
      }
      const seq = a.baseSequence!;
      const key = sequenceKey(options.producerId, a.topic, a.partition);
      const prev = txn.sequences.get(key) ?? this.#sequences.get(key);
      if (prev && seq === prev.baseSequence) {
        results.push({ topic: a.topic, partition: a.partition, baseOffset: prev.baseOffset, duplicate: true });
        return;
      }
      const expected = prev ? prev.lastSequence + 1 : 0;
      if (seq !== expected) {
        throw new OutOfOrderSequenceError(
          `Producer ${options.producerId} sent sequence ${seq} to ${a.topic}[${a.partition}], expected ${expected}. Records may be missing; recreate the producer.`,
          { topic: a.topic, partition: a.partition },
        );
      }
      results.push({ topic: a.topic, partition: a.partition, baseOffset: base, duplicate: false });
      writes.push({
        log,
        records: prepared[i]!.map((p) => p(now)),
        sequence: [key, { baseSequence: seq, lastSequence: seq + a.records.length - 1, baseOffset: base }],
      });
    });
    // Every check passed: stage.
    for (const w of writes) {
      let staged = txn.staged.get(w.log);
      if (!staged) txn.staged.set(w.log, (staged = []));
      staged.push(...w.records);
      if (w.sequence) txn.sequences.set(w.sequence[0], w.sequence[1]);
    }
    return results;
  }

  #resolveAppends(appends: readonly PartitionAppend[]): PartitionLog[] {
    return appends.map((a) => {
      try {
        return this.#partition(a.topic, a.partition);
      } catch {
        throw new UnknownTopicOrPartitionError(
          `Cannot append: partition ${a.partition} of topic "${a.topic}" does not exist. Nothing was written.`,
          { topic: a.topic, partition: a.partition },
        );
      }
    });
  }

  // ---- event-sourced streams (in-memory-streams.ts) ----------------------------------------------

  readonly #streams: InMemoryStreams<InMemoryTransaction<DB>> = new InMemoryStreams<InMemoryTransaction<DB>>({
    log: (topic, partition) => this.#partition(topic, partition),
    config: (topic) => this.#topic(topic).config,
    staged: (txn, log) => txn?.staged.get(log as PartitionLog) ?? [],
    validate: (appends) => {
      const keys = new Set<string>();
      for (const a of appends) {
        const key = partitionKey(a.topic, a.partition);
        if (keys.has(key)) throw new InvalidOptionsError(`Append lists ${a.topic}[${a.partition}] twice; merge its records first.`);
        keys.add(key);
      }
      this.#resolveAppends(appends);
    },
    lock: async (txn, partitions) => {
      txn.assertNotAborted();
      try {
        await this.#locks.acquire(
          txn.owner,
          partitions.map((p) => partitionKey(p.topic, p.partition)),
        );
      } catch (error) {
        if (error instanceof ConcurrentTransactionsError) txn.abort(error);
        throw error;
      }
      txn.assertNotAborted();
    },
    appendIn: (txn, appends) => (appends.length === 0 ? Promise.resolve([]) : this.#appendIn(txn, appends, {})),
    now: () => this.now(),
  });

  /**
   * Appends after checking, under the partitions' locks, that every stream is at its expected
   * version (`WrongExpectedVersionError` otherwise, writing nothing). See `stream-storage.ts`.
   */
  async appendToStreams(appends: readonly PartitionAppend[], streams: readonly StreamExpectation[], options: AppendOptions = {}): Promise<StreamAppendResult> {
    this.#assertConnected();
    if (streams.length === 0) return { appends: await this.append(appends, { acks: options.acks ?? -1 }), streams: [] };
    return this.transaction((tx) => tx.appendToStreams(appends, streams));
  }

  /** A stream's version, its snapshot (if asked for and present) and its records after it. */
  async readStream(topic: string, partition: number, key: Uint8Array, options: StreamReadOptions = {}): Promise<StreamSlice> {
    this.#assertConnected();
    return this.#streams.read(undefined, topic, partition, key, options);
  }

  async saveSnapshot(snapshot: SnapshotWrite): Promise<boolean> {
    this.#assertConnected();
    return this.#streams.saveSnapshot(snapshot);
  }

  async deleteSnapshots(name: string): Promise<number> {
    this.#assertConnected();
    return this.#streams.deleteSnapshots(name);
  }

  // ---- consumer groups -----------------------------------------------------------------------

  #group(groupId: string): GroupState {
    let group = this.#groups.get(groupId);
    if (!group) this.#groups.set(groupId, (group = { members: new Map(), owners: new Map(), offsets: new Map(), claims: new Map() }));
    return group;
  }

  /**
   * Joins `groupId` as a new member (id `<clientId>-<uuid>`) and tells the other members. The
   * session's heartbeats expire silent members by the store clock, so an injected clock drives
   * session timeouts in tests.
   */
  async joinGroup(groupId: string, member: MemberMetadata, events: GroupSessionEvents): Promise<GroupSession> {
    this.#assertConnected();
    if (typeof groupId !== 'string' || groupId.length === 0) throw new InvalidOptionsError('A group id must be a non-empty string.');
    if (!Number.isSafeInteger(member.sessionTimeoutMs) || member.sessionTimeoutMs < 1) {
      throw new InvalidOptionsError(`sessionTimeoutMs must be a positive integer, got ${String(member.sessionTimeoutMs)}.`, { groupId });
    }
    const memberId = `${member.clientId}-${randomUUID()}`;
    const session = new InMemoryGroupSession(this.#groupEngine, groupId, memberId, member.topics, events);
    const now = Math.floor(this.now());
    const group = this.#group(groupId);
    this.#groupChanged(group, session);
    group.members.set(memberId, {
      memberId,
      clientId: member.clientId,
      clientHost: member.clientHost,
      topics: Object.freeze([...member.topics]),
      sessionTimeoutMs: member.sessionTimeoutMs,
      joinedAt: now,
      heartbeatAt: now,
      session,
    });
    return session;
  }

  readonly #groupEngine: GroupEngine = {
    heartbeat: (session) => {
      const group = this.#group(session.groupId);
      const me = group.members.get(session.memberId);
      if (!me) {
        throw new IllegalGenerationError(
          `Member ${session.memberId} was expired from group "${session.groupId}" (no heartbeat within its session timeout); it must rejoin.`,
          { groupId: session.groupId },
        );
      }
      const now = Math.floor(this.now());
      me.heartbeatAt = now;
      let expired = false;
      for (const m of [...group.members.values()]) {
        if (m.heartbeatAt >= now - m.sessionTimeoutMs) continue;
        expired = true;
        group.members.delete(m.memberId);
        for (const owner of group.owners.values()) if (owner.memberId === m.memberId) owner.memberId = null;
        this.#loseSession(
          group,
          m.session,
          new IllegalGenerationError(`Member ${m.memberId} was expired from group "${session.groupId}": no heartbeat for ${now - m.heartbeatAt} ms.`, {
            groupId: session.groupId,
          }),
        );
      }
      if (expired) this.#groupChanged(group);
      return [...group.members.values()].sort((a, b) => (a.memberId < b.memberId ? -1 : a.memberId > b.memberId ? 1 : 0)).map((m) => liveMember(m, group));
    },
    claim: (session, topic, partition) => {
      const group = this.#group(session.groupId);
      const key = partitionKey(topic, partition);
      const holder = group.claims.get(key);
      if (holder !== undefined && holder !== session) return { acquired: false };
      group.claims.set(key, session);
      session.held.add(key);
      const generation = (group.owners.get(key)?.generation ?? 0n) + 1n;
      group.owners.set(key, { memberId: session.memberId, generation });
      return { acquired: true, generation, committedOffset: group.offsets.get(key)?.offset ?? null };
    },
    release: (session, topic, partition) => {
      const key = partitionKey(topic, partition);
      if (!session.held.delete(key)) return;
      const group = this.#group(session.groupId);
      const owner = group.owners.get(key);
      if (owner?.memberId === session.memberId) owner.memberId = null;
      if (group.claims.get(key) === session) group.claims.delete(key);
    },
    leave: (session) => {
      const wasLive = session.live;
      session.left = true;
      if (!wasLive) return;
      const group = this.#group(session.groupId);
      for (const owner of group.owners.values()) if (owner.memberId === session.memberId) owner.memberId = null;
      group.members.delete(session.memberId);
      this.#releaseClaims(group, session);
      this.#groupChanged(group, session);
    },
  };

  #releaseClaims(group: GroupState, session: InMemoryGroupSession): void {
    for (const key of session.held) if (group.claims.get(key) === session) group.claims.delete(key);
    session.held.clear();
  }

  #loseSession(group: GroupState, session: InMemoryGroupSession, error: unknown): void {
    if (!session.live) return;
    session.lost = error;
    this.#releaseClaims(group, session);
    queueMicrotask(() => session.events.onLost(error));
  }

  /** Tells every live session of the group (but `except`) that membership changed. */
  #groupChanged(group: GroupState, except?: InMemoryGroupSession): void {
    for (const m of group.members.values()) {
      const session = m.session;
      if (session === except) continue;
      queueMicrotask(() => {
        if (session.live) session.events.onGroupChange();
      });
    }
  }

  /**
   * Commits offsets in a transaction of its own, all or none. With a fence, every partition must
   * be owned by `fence.memberId` at the generation the fence names, or `IllegalGenerationError`
   * is thrown and nothing is committed.
   */
  async commitOffsets(groupId: string, commits: readonly OffsetCommit[], fence?: CommitFence): Promise<void> {
    this.#assertConnected();
    if (commits.length === 0) return;
    await this.transaction((tx) => tx.commitOffsets(groupId, commits, fence));
  }

  #commitOffsetsIn(txn: InMemoryTransaction<DB>, groupId: string, commits: readonly OffsetCommit[], fence: CommitFence | undefined): void {
    txn.assertNotAborted();
    this.#assertConnected();
    const keys = new Set<string>();
    for (const c of commits) {
      const key = partitionKey(c.topic, c.partition);
      if (keys.has(key)) throw new InvalidOptionsError(`Offset commit lists ${c.topic}[${c.partition}] twice.`, { groupId });
      keys.add(key);
      if (typeof c.offset !== 'bigint' || c.offset < 0n) {
        throw new InvalidOptionsError(`An offset commit needs a bigint offset ≥ 0, got ${String(c.offset)}.`, { groupId, topic: c.topic, partition: c.partition });
      }
    }
    if (fence) {
      this.#checkOffsetFence(groupId, fence, commits);
      txn.offsetFences.push({ groupId, fence, commits: commits.map((c) => ({ topic: c.topic, partition: c.partition })) });
    }
    for (const c of commits) {
      txn.offsets.set(`${groupId}\u0000${partitionKey(c.topic, c.partition)}`, {
        groupId,
        topic: c.topic,
        partition: c.partition,
        offset: c.offset,
        metadata: c.metadata ?? null,
      });
    }
  }

  #checkOffsetFence(groupId: string, fence: CommitFence, commits: ReadonlyArray<{ topic: string; partition: number }>): void {
    const group = this.#groups.get(groupId);
    const lost = commits.filter((c) => {
      const owner = group?.owners.get(partitionKey(c.topic, c.partition));
      const generation = fence.generations.get(`${c.topic}/${c.partition}`) ?? -1n;
      return owner?.memberId !== fence.memberId || owner.generation !== generation;
    });
    if (lost.length > 0) {
      throw new IllegalGenerationError(
        `Member ${fence.memberId} no longer owns ${lost.map((c) => `${c.topic}[${c.partition}]`).join(', ')} in group "${groupId}" at the generation it holds: another member claimed it. Nothing was committed.`,
        { groupId },
      );
    }
  }

  /** The group's committed offsets (of `topics`, when given), sorted by topic and partition. */
  async fetchCommittedOffsets(groupId: string, topics?: readonly string[]): Promise<CommittedOffset[]> {
    this.#assertConnected();
    const wanted = topics === undefined ? undefined : new Set(topics);
    const out: CommittedOffset[] = [];
    for (const [key, c] of this.#groups.get(groupId)?.offsets ?? []) {
      const [topic, partition] = splitPartitionKey(key);
      if (wanted && !wanted.has(topic)) continue;
      out.push({ topic, partition, offset: c.offset, metadata: c.metadata, committedAt: c.committedAt });
    }
    return out.sort(byTopicPartition);
  }

  /** Groups with members, owners or committed offsets, sorted. */
  async listGroups(): Promise<string[]> {
    this.#assertConnected();
    return [...this.#groups]
      .filter(([, g]) => g.members.size > 0 || g.owners.size > 0 || g.offsets.size > 0)
      .map(([id]) => id)
      .sort();
  }

  /**
   * The group's members (sorted by id) and, for every partition of the topics it subscribes to or
   * has offsets or owners for: committed offset, watermarks, owner, generation, and the timestamp
   * of the first unconsumed record. An unknown group is described as empty.
   */
  async describeGroup(groupId: string): Promise<GroupDescription> {
    this.#assertConnected();
    const group = this.#groups.get(groupId);
    if (!group) return { groupId, members: [], partitions: [] };
    const members = [...group.members.values()].sort((a, b) => (a.memberId < b.memberId ? -1 : a.memberId > b.memberId ? 1 : 0)).map((m) => liveMember(m, group));
    return { groupId, members, partitions: this.#groupPartitions(group) };
  }

  /**
   * Every partition of the topics the group subscribes to or has offsets or owners for (only
   * those in `wanted`, when given), sorted by topic and partition.
   */
  #groupPartitions(group: GroupState, wanted?: ReadonlySet<string>): GroupPartitionState[] {
    const topics = new Set<string>();
    for (const m of group.members.values()) for (const t of m.topics) topics.add(t);
    for (const key of [...group.offsets.keys(), ...group.owners.keys()]) topics.add(splitPartitionKey(key)[0]);
    const partitions: GroupPartitionState[] = [];
    for (const name of [...topics].sort()) {
      if (wanted && !wanted.has(name)) continue;
      const topic = this.#topics.get(name);
      if (!topic) continue;
      for (const log of topic.partitions) {
        const key = partitionKey(name, log.partition);
        const committed = group.offsets.get(key)?.offset ?? null;
        const owner = group.owners.get(key);
        const from = committed === null || committed < log.logStartOffset ? log.start : Number(committed);
        partitions.push({
          topic: name,
          partition: log.partition,
          committedOffset: committed,
          logStartOffset: log.logStartOffset,
          logEndOffset: log.logEndOffset,
          firstUnconsumedTimestamp: log.firstFrom(from)?.timestamp ?? null,
          ownerMemberId: owner?.memberId ?? null,
          generation: owner?.generation ?? null,
        });
      }
    }
    return partitions;
  }

  /**
   * Watermarks of the selected topics and positions of the selected groups, read at one moment
   * (synchronously: nothing interleaves), with the store clock as `now`. A member counts as live
   * while its last heartbeat is within its session timeout by that clock.
   */
  async describeLag(query: LagQuery = {}): Promise<LagSnapshot> {
    this.#assertConnected();
    const now = Math.floor(this.now());
    const wantedTopics = query.topics === undefined ? undefined : new Set(query.topics);
    const partitions = [...this.#topics.keys()]
      .filter((name) => !wantedTopics || wantedTopics.has(name))
      .sort()
      .flatMap((name) =>
        this.#topics.get(name)!.partitions.map((log) => ({ topic: name, partition: log.partition, low: log.logStartOffset, high: log.logEndOffset })),
      );
    const groupIds = (query.groupIds === undefined ? [...this.#groups.keys()] : [...new Set(query.groupIds)]).sort();
    const groups = [];
    for (const groupId of groupIds) {
      const group = this.#groups.get(groupId);
      if (!group || (group.members.size === 0 && group.owners.size === 0 && group.offsets.size === 0)) continue;
      let liveMembers = 0;
      for (const m of group.members.values()) if (m.heartbeatAt >= now - m.sessionTimeoutMs) liveMembers++;
      groups.push({ groupId, liveMembers, partitions: this.#groupPartitions(group, wantedTopics) });
    }
    return { now, partitions, groups };
  }

  /** Deletes groups' offsets and ownership state, all or none; a group with members throws `GroupNotEmptyError`. */
  async deleteGroups(groupIds: readonly string[]): Promise<void> {
    this.#assertConnected();
    for (const groupId of groupIds) {
      if ((this.#groups.get(groupId)?.members.size ?? 0) > 0) {
        throw new GroupNotEmptyError(`Group "${groupId}" has live members; stop its consumers before deleting it.`, { groupId });
      }
    }
    for (const groupId of groupIds) this.#groups.delete(groupId);
  }

  // ---- reading -------------------------------------------------------------------------------

  /**
   * Committed records of one partition from `offset`: at most `maxRecords`, and at most about
   * `maxBytes` of keys, values and headers (header names count too) — but at least one record
   * when any is there. An offset at or past the end gives no records and the high watermark.
   * Records are copies.
   */
  async fetch(topic: string, partition: number, offset: bigint, limits: FetchLimits): Promise<FetchResult> {
    this.#assertConnected();
    const log = this.#partition(topic, partition);
    const end = log.records.length;
    // An offset below the log start reads from the log start (as Postgres' `offset >= $n` does).
    let i = offset <= log.logStartOffset ? 0 : offset >= log.logEndOffset ? end : Number(offset) - log.start;
    const records: StoredRecord[] = [];
    let bytes = 0;
    for (; i < end && records.length < limits.maxRecords; i++) {
      const r = log.records[i];
      if (!r) continue; // removed by compaction
      if (records.length > 0 && bytes + r.size > limits.maxBytes) break;
      bytes += r.size;
      records.push({
        topic,
        partition,
        offset: BigInt(log.start + i),
        timestamp: r.timestamp,
        key: copyBytes(r.key),
        value: copyBytes(r.value),
        headers: copyHeaders(r.headers),
      });
    }
    return { records, highWatermark: log.logEndOffset, logStartOffset: log.logStartOffset };
  }

  /**
   * Calls `listener(topic, partition)` — asynchronously, in a microtask — after every commit that
   * appended to a partition of one of `topics` (topics need not exist yet). Resolves to a function
   * that stops the watch. `disconnect()` stops every watch.
   *
   * @example
   * ```ts
   * const unwatch = await storage.watch(['orders'], (topic, partition) => wakeUp(topic, partition));
   * ```
   */
  async watch(topics: readonly string[], listener: AppendListener): Promise<() => Promise<void>> {
    this.#assertConnected();
    const watcher: Watcher = { topics: new Set(topics), listener };
    this.#watchers.add(watcher);
    return async () => {
      this.#watchers.delete(watcher);
    };
  }

  #notify(logs: readonly PartitionLog[]): void {
    for (const group of this.#groups.values()) {
      for (const { session } of group.members.values()) {
        for (const log of logs) {
          if (!session.topics.has(log.topic)) continue;
          queueMicrotask(() => {
            if (session.live) session.events.onAppend(log.topic, log.partition);
          });
        }
      }
    }
    for (const watcher of this.#watchers) {
      for (const log of logs) {
        if (!watcher.topics.has(log.topic)) continue;
        // A microtask each: a throwing listener surfaces as an uncaught error and spoils no other.
        queueMicrotask(() => {
          if (this.#watchers.has(watcher)) watcher.listener(log.topic, log.partition);
        });
      }
    }
  }
}

// ---- helpers ---------------------------------------------------------------------------------

function splitPartitionKey(key: string): [string, number] {
  const at = key.lastIndexOf('\u0000');
  return [key.slice(0, at), Number(key.slice(at + 1))];
}

function byTopicPartition(a: { topic: string; partition: number }, b: { topic: string; partition: number }): number {
  return a.topic < b.topic ? -1 : a.topic > b.topic ? 1 : a.partition - b.partition;
}

function liveMember(m: MemberState, group: GroupState): LiveMember {
  const owned: Array<{ topic: string; partition: number }> = [];
  for (const [key, owner] of group.owners) {
    if (owner.memberId !== m.memberId) continue;
    const [topic, partition] = splitPartitionKey(key);
    owned.push({ topic, partition });
  }
  owned.sort(byTopicPartition);
  return { memberId: m.memberId, clientId: m.clientId, clientHost: m.clientHost, topics: m.topics, joinedAt: m.joinedAt, heartbeatAt: m.heartbeatAt, owned };
}

// ---- records ---------------------------------------------------------------------------------

function checkBytes(bytes: unknown, what: string, a: PartitionAppend): Uint8Array | null {
  if (bytes === null) return null;
  if (bytes instanceof Uint8Array) return bytes;
  throw new InvalidOptionsError(`${what} must be a Uint8Array or null, got ${typeof bytes}.`, { topic: a.topic, partition: a.partition });
}

/**
 * Validates and copies a record now (so a caller mutating its buffers later changes nothing);
 * returns a function that stamps it with the append time.
 */
function prepareRecord(record: AppendRecord, a: PartitionAppend): (now: number) => LogRecord {
  const key = copyBytes(checkBytes(record.key, 'A record key', a));
  const value = copyBytes(checkBytes(record.value, 'A record value', a));
  const headers: Record<string, Buffer> = Object.create(null) as Record<string, Buffer>;
  let size = (key?.length ?? 0) + (value?.length ?? 0);
  if (record.headers !== null && record.headers !== undefined) {
    for (const [name, v] of Object.entries(record.headers)) {
      const bytes = checkBytes(v, `Header "${name}"`, a);
      if (bytes === null) throw new InvalidOptionsError(`Header "${name}" must be a Uint8Array.`, { topic: a.topic, partition: a.partition });
      headers[name] = Buffer.from(bytes);
      size += Buffer.byteLength(name) + bytes.length;
    }
  }
  Object.freeze(headers);
  const { timestamp } = record;
  if (timestamp !== null && (typeof timestamp !== 'number' || !Number.isFinite(timestamp))) {
    throw new InvalidOptionsError(`A record timestamp must be milliseconds since the epoch or null, got ${String(timestamp)}.`, {
      topic: a.topic,
      partition: a.partition,
    });
  }
  return (now) => Object.freeze({ timestamp: timestamp === null ? now : Math.floor(timestamp), key, value, headers, size });
}

function copyBytes(bytes: Uint8Array | null): Buffer | null {
  return bytes === null ? null : Buffer.from(bytes);
}

function copyHeaders(headers: Readonly<Record<string, Buffer>>): StoredHeaders {
  const out: Record<string, Uint8Array> = {};
  for (const [name, v] of Object.entries(headers)) Object.defineProperty(out, name, { value: Buffer.from(v), enumerable: true });
  return out;
}
