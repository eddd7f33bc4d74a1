/**
 * What a handler gets besides its event: the event's metadata, the exactly-once transaction,
 * publishing, heartbeats and an abort signal — and, for projections, the versioned read model.
 */
import type { EventContract, EventInputOf } from '../contracts/event.js';
import type { TopicContract } from '../contracts/topic.js';
import type { PublishOptions } from '../client/prepare.js';
import type { ProducerRecord } from '../client/producer.js';
import { InvalidOptionsError } from '../errors.js';
import type { ProjectionStore } from '../storage/projection-storage.js';

/** Where an event came from, and how it was stored. */
export interface EventMetadata {
  readonly topic: string;
  readonly partition: number;
  /** The record's offset (a string, as in KafkaJS). */
  readonly offset: string;
  /** Milliseconds since the epoch. */
  readonly timestamp: number;
  readonly key: Buffer | null;
  readonly headers: Readonly<Record<string, Buffer>>;
  /** The event type (`event-type` header). */
  readonly eventType: string;
  /** The version the record was written with; the payload has been upcast from it to the latest. */
  readonly storedVersion: number;
}

/**
 * A handler's transaction: writes through `db` and publishes commit together with the offset
 * advance of the batch the event came in (exactly once).
 */
export interface HandlerTx<TDb> {
  /** The application's database in the batch's transaction (begun on first use). */
  readonly db: TDb;
  /** Publishes a typed event in the transaction. Suppressed (counted, not written) during a replay. */
  publish<C extends EventContract<string, any>>(topic: TopicContract, event: C, payload: EventInputOf<C>, options?: PublishOptions): Promise<void>;
  /** Sends raw messages in the transaction. Suppressed during a replay. */
  send(record: ProducerRecord): Promise<void>;
}

/** The second argument of every subscriber handler. */
export interface HandlerContext<TDb = unknown> {
  readonly metadata: EventMetadata;
  /** Exactly-once writes and publishes: see {@link HandlerTx}. */
  readonly tx: HandlerTx<TDb>;
  /** Same as `tx.publish`. */
  publish<C extends EventContract<string, any>>(topic: TopicContract, event: C, payload: EventInputOf<C>, options?: PublishOptions): Promise<void>;
  /** Tells the group this member is alive during a long handler. */
  heartbeat(): Promise<void>;
  /** Aborted when the partition is revoked or the client stops: give up long work when it fires. */
  readonly signal: AbortSignal;
}

/**
 * Deferred writes to a document table of the projection's current version. Documents are plain
 * JSON values keyed by a string id. Operations are buffered and applied in order at the end of the
 * batch — one read of the touched ids and one write, in the batch's transaction — which is what
 * makes a rebuild fast. Reads through `tx.db` do not see a batch's buffered writes.
 */
export interface DocumentStore<T> {
  /** Creates or replaces the document. */
  set(id: string, document: T): void;
  /** Calls `fn` with the current document (`undefined` when there is none); `undefined` back deletes it. */
  update(id: string, fn: (current: T | undefined) => T | undefined): void;
  delete(id: string): void;
}

/** The second argument of every projection handler. */
export interface ProjectionContext<TDb = unknown> extends HandlerContext<TDb> {
  /** The projection and the read-model version this handler writes. */
  readonly projection: { readonly name: string; readonly version: number };
  /** True while a rebuild replays history: publishes are suppressed; skip other side effects. */
  readonly replaying: boolean;
  /** The name of a read-model table in this version, e.g. `public.order_totals_v3`. */
  table(name: string): string;
  /** The deferred document store of a declared document table. */
  documents<T = unknown>(table: string): DocumentStore<T>;
}

/** What a projection's `setup` hook gets: the new version, in the transaction that registers it. */
export interface ProjectionSetupContext<TDb = unknown> {
  readonly db: TDb;
  readonly version: number;
  readonly schema: string;
  /** The name of one of the projection's `tables` in this version: create it here. */
  table(name: string): string;
}

type DocumentOp = { readonly kind: 'set'; readonly doc: unknown } | { readonly kind: 'delete' } | { readonly kind: 'update'; readonly fn: (d: unknown) => unknown };

/** A document as a batch knows it: `existed` is what the store said when it was loaded (undefined: never loaded). */
interface CachedDocument {
  doc: unknown;
  existed: boolean | undefined;
  dirty: boolean;
}

/**
 * @internal A batch's documents: handlers' operations are buffered while a chunk of records is
 * applied; `resolve()` then loads the documents they need in one query (locked for update) and
 * applies the operations in order into a write-back cache; `flush()` writes what changed in one
 * statement per kind. Operations (and the payloads their closures hold) live one chunk; the cache
 * lives one transaction, so a transaction spanning many chunks writes each document once.
 */
export class DocumentBuffer {
  readonly #pending = new Map<string, Map<string, DocumentOp[]>>();
  readonly #cache = new Map<string, Map<string, CachedDocument>>();
  readonly #stores = new Map<string, DocumentStore<unknown>>();
  readonly #declared: ReadonlySet<string>;
  readonly #projection: string;

  readonly #lock: boolean;

  /** `lock: false` when this batch's transaction is the only writer of the version's documents. */
  constructor(projection: string, declared: ReadonlySet<string>, options: { readonly lock?: boolean } = {}) {
    this.#projection = projection;
    this.#declared = declared;
    this.#lock = options.lock ?? true;
  }

  store<T>(table: string): DocumentStore<T> {
    let store = this.#stores.get(table);
    if (store) return store as DocumentStore<T>;
    if (!this.#declared.has(table)) {
      throw new InvalidOptionsError(
        `Projection "${this.#projection}" has no document table "${table}": declare it in documents: [${[...this.#declared].map((d) => `'${d}'`).join(', ')}].`,
      );
    }
    let byId = this.#pending.get(table);
    if (!byId) this.#pending.set(table, (byId = new Map()));
    const pending = byId;
    const ops = (id: string): DocumentOp[] => {
      if (typeof id !== 'string' || id.length === 0) throw new InvalidOptionsError(`A document id of "${table}" must be a non-empty string, got ${JSON.stringify(id)}.`);
      let list = pending.get(id);
      if (!list) pending.set(id, (list = []));
      return list;
    };
    store = Object.freeze({
      set: (id: string, doc: unknown) => void ops(id).push({ kind: 'set', doc }),
      delete: (id: string) => void ops(id).push({ kind: 'delete' }),
      update: (id: string, fn: (d: unknown) => unknown) => {
        if (typeof fn !== 'function') throw new InvalidOptionsError(`documents('${table}').update(id, fn) needs a function.`);
        ops(id).push({ kind: 'update', fn });
      },
    });
    this.#stores.set(table, store);
    return store as DocumentStore<T>;
  }

  /** Applies the buffered operations into the cache, loading (and locking) the documents they read. */
  async resolve<TDb>(store: ProjectionStore<TDb>, db: TDb, physical: (table: string) => string): Promise<void> {
    for (const [table, byId] of this.#pending) {
      if (byId.size === 0) continue;
      let cache = this.#cache.get(table);
      if (!cache) this.#cache.set(table, (cache = new Map()));
      const toLoad: string[] = [];
      for (const [id, list] of byId) if (list[0]!.kind === 'update' && !cache.has(id)) toLoad.push(id);
      if (toLoad.length > 0) {
        toLoad.sort();
        const loaded = await store.loadDocuments(db, physical(table), toLoad, { lock: this.#lock });
        for (const id of toLoad) cache.set(id, { doc: loaded.get(id), existed: loaded.has(id), dirty: false });
      }
      for (const [id, list] of byId) {
        let entry = cache.get(id);
        if (!entry) cache.set(id, (entry = { doc: undefined, existed: undefined, dirty: false }));
        let doc = entry.doc;
        for (const op of list) {
          if (op.kind === 'set') doc = op.doc;
          else if (op.kind === 'delete') doc = undefined;
          else doc = op.fn(doc);
        }
        entry.doc = doc;
        entry.dirty = true;
      }
      byId.clear();
    }
  }

  /** Resolves what is pending, then writes every changed document. Empties the buffer. */
  async flush<TDb>(store: ProjectionStore<TDb>, db: TDb, physical: (table: string) => string): Promise<void> {
    await this.resolve(store, db, physical);
    for (const [table, cache] of this.#cache) {
      const upserts: Array<readonly [string, unknown]> = [];
      const inserts: Array<readonly [string, unknown]> = [];
      const deletes: string[] = [];
      for (const [id, entry] of cache) {
        if (!entry.dirty) continue;
        if (entry.doc === undefined) {
          if (entry.existed !== false) deletes.push(id);
        } else if (entry.existed === false) inserts.push([id, entry.doc]);
        else upserts.push([id, entry.doc]);
      }
      if (upserts.length + inserts.length + deletes.length > 0) await store.writeDocuments(db, physical(table), { upserts, inserts, deletes });
    }
    this.#cache.clear();
  }
}
