/**
 * Runs one projection: its live consumer group, and rebuilds of a new read-model version.
 *
 * ## Design
 * A version of a projection is a consumer group (`projection:<name>:v<version>`) and a set of
 * tables (`<table>_v<version>`). Every batch — live or replayed — runs in one transaction that
 * first *fences* on the version's row (a share lock held to commit), then applies the handlers'
 * writes and the batch's buffered documents, then commits the group's offset: the read model
 * and its checkpoint move together (invariant 4), so a rebuild killed midway resumes exactly
 * where its last commit left it.
 *
 * A rebuild of version N replays the log into N's tables while the active version M keeps being
 * updated live. It replays up to M's checkpoint — never past it — because everything at or after
 * M's checkpoint will be processed *live* by N: that split is what keeps side effects exactly
 * once across a swap. Publishes during the replay are suppressed (M emitted them already); after
 * the swap N publishes for everything M had not processed. The swap is one transaction: it locks
 * M's row (M's batches in flight finish first, later ones see M retired and stop), replays the
 * last few records up to M's now-final checkpoint, commits N's offsets there, marks N active and
 * M retired, and re-points the readers' views. With no active version the replay runs to the
 * log end. Live and rebuild never process a version at once: a live batch needs the version
 * `active`, a replayed batch needs it `building` and owned by this rebuild, and one rebuild per
 * projection runs at a time across processes (the store's rebuild lock).
 */
import { randomUUID } from 'node:crypto';
import { ConsumerEvents, type Consumer, type ConsumerInput, type EachBatchPayload } from '../client/consumer.js';
import type { ClientContext } from '../client/context.js';
import { sleep, withRetry } from '../client/retry.js';
import type { TopicContract } from '../contracts/topic.js';
import { IllegalGenerationError, InvalidOptionsError, NotConnectedError } from '../errors.js';
import type { DeferredTransaction, StoredRecord } from '../storage/log-storage.js';
import type { ProjectionStore, ProjectionVersionSpec } from '../storage/projection-storage.js';
import type { DecodedEvent } from '../client/events.js';
import { DocumentBuffer, type DocumentStore, type EventMetadata, type HandlerTx, type ProjectionContext } from './context.js';
import type { ProjectionDefinition } from './definitions.js';
import { asEventInstance } from '../contracts/event-class.js';
import { decode, eventTypeOf, metadataOf, storedRecordOf, topicsByName } from './records.js';
import { ConsumerListeners, StatsCounter } from './subscriber-runner.js';

/** The consumer group of one read-model version. */
export const projectionGroupId = (name: string, version: number): string => `projection:${name}:v${version}`;

/** Where a rebuild is. */
export interface RebuildProgress {
  readonly projection: string;
  readonly version: number;
  readonly phase: 'replaying' | 'swapping' | 'done';
  /** Offsets replayed into this version so far, including before a resume. */
  readonly eventsDone: number;
  /** Offsets to replay as known now: up to the active version's checkpoint, or the log end. */
  readonly eventsTotal: number;
  /** Replay rate of this run, events per second. */
  readonly eventsPerSecond: number;
  /** Estimated milliseconds left; null until a rate is known. */
  readonly etaMs: number | null;
  readonly elapsedMs: number;
  /** Publishes handlers made during this run's replay, suppressed. */
  readonly suppressedPublishes: number;
}

export interface RebuildOptions {
  /** Called as the replay progresses (at most about 4 times a second) and at each phase. */
  readonly onProgress?: (progress: RebuildProgress) => void;
  /** Stops the rebuild after the batch in flight; it resumes from there when called again. */
  readonly signal?: AbortSignal;
}

export interface RebuildResult {
  readonly projection: string;
  readonly version: number;
  /** The version that was active before the swap, if any. */
  readonly previousVersion: number | null;
  /** Events this call replayed. */
  readonly events: number;
  readonly durationMs: number;
  /** False when the version was found active (another client finished the rebuild). */
  readonly swapped: boolean;
}

/** What a projection runner is doing in this client. */
export type ProjectionRunState = 'idle' | 'waiting' | 'rebuilding' | 'live' | 'superseded' | 'failed' | 'stopped';

type Key = string;
const keyOf = (topic: string, partition: number): Key => `${topic}/${partition}`;

interface PartitionRef {
  readonly topic: TopicContract;
  readonly partition: number;
  readonly low: bigint;
  readonly high: bigint;
}

interface ApplyEnv<TDb> {
  readonly tx: HandlerTx<TDb>;
  readonly replaying: boolean;
  readonly heartbeat: () => Promise<void>;
  readonly signal: AbortSignal;
  readonly docs: DocumentBuffer;
}

const POLL_MS = 500;
/** Records per fetch while replaying; transactions span several fetches (`batchSize`). */
const FETCH_RECORDS = 2_000;
const FETCH_BYTES = 16 * 1024 * 1024;
const PROGRESS_EVERY_MS = 250;

export class ProjectionRunner<TDb> {
  readonly definition: ProjectionDefinition;
  readonly stats = new StatsCounter();
  readonly listeners = new ConsumerListeners();
  readonly #ctx: ClientContext<TDb>;
  readonly #createConsumer: (input: ConsumerInput) => Consumer<TDb>;
  readonly #topics: ReadonlyMap<string, TopicContract>;
  readonly #declaredTables: ReadonlySet<string>;
  readonly #identity: { readonly name: string; readonly version: number };
  #state: ProjectionRunState = 'idle';
  #error: unknown;
  #supervisor: Promise<void> | undefined;
  #stopping = new AbortController();
  #consumer: Consumer<TDb> | undefined;
  #rebuild: { promise: Promise<RebuildResult>; listeners: Set<(p: RebuildProgress) => void> } | undefined;
  #progress: RebuildProgress | undefined;
  #wake: (() => void) | undefined;

  constructor(ctx: ClientContext<TDb>, createConsumer: (input: ConsumerInput) => Consumer<TDb>, definition: ProjectionDefinition) {
    this.#ctx = ctx;
    this.#createConsumer = createConsumer;
    this.definition = definition;
    this.#topics = topicsByName(definition.topics);
    this.#declaredTables = new Set(definition.documents);
    this.#identity = Object.freeze({ name: definition.name, version: definition.version });
  }

  get state(): ProjectionRunState {
    return this.#state;
  }

  get error(): unknown {
    return this.#error;
  }

  /** The latest progress of a rebuild run by this client. */
  get progress(): RebuildProgress | undefined {
    return this.#progress;
  }

  get store(): ProjectionStore<TDb> {
    const store = this.#ctx.storage.projections;
    if (!store) {
      throw new InvalidOptionsError(`Projection "${this.definition.name}": storage ${this.#ctx.storage.description} does not support projections.`);
    }
    return store;
  }

  #spec(): ProjectionVersionSpec {
    const d = this.definition;
    return { name: d.name, version: d.version, schema: d.schema, tables: d.tables, documents: d.documents };
  }

  #physical = (table: string): string => this.store.tableName(this.definition.schema, table, this.definition.version);

  // ---- lifecycle -------------------------------------------------------------------------------

  /** Starts serving the projection: live when its version is active, else rebuilding or waiting. Idempotent. */
  start(): void {
    if (this.#supervisor) return;
    if (this.#stopping.signal.aborted) this.#stopping = new AbortController();
    this.#error = undefined;
    this.#supervisor = this.#supervise().finally(() => {
      this.#supervisor = undefined;
    });
  }

  async stop(): Promise<void> {
    this.#stopping.abort(new NotConnectedError(`Projection "${this.definition.name}" was stopped.`));
    this.#wake?.();
    await this.#consumer?.stop();
    await this.#supervisor?.catch(() => {});
    await this.#rebuild?.promise.catch(() => {});
    if (this.#state !== 'failed' && this.#state !== 'superseded') this.#state = 'stopped';
  }

  async #supervise(): Promise<void> {
    const { name, version } = this.definition;
    let failures = 0;
    while (!this.#stopping.signal.aborted) {
      try {
        await this.#ctx.ensureConnected();
        const state = (await this.store.describe([name]))[0];
        const active = state?.activeVersion ?? null;
        if (active === version) {
          this.#state = 'live';
          const outcome = await this.#runLive();
          if (outcome === 'retired') {
            this.#state = 'superseded';
            return;
          }
          if (outcome === 'crashed') return;
          continue;
        }
        if (active !== null && active > version) {
          this.#state = 'superseded';
          return;
        }
        if (this.definition.autoRebuild) {
          this.#state = 'rebuilding';
          await this.rebuild({ signal: this.#stopping.signal });
          failures = 0;
          continue;
        }
        this.#state = 'waiting';
        await this.#pause(POLL_MS);
      } catch (error) {
        if (this.#stopping.signal.aborted) break;
        this.#error = error;
        if (!(error instanceof Error && 'retriable' in error && (error as { retriable: boolean }).retriable) && failures >= 3) {
          this.#state = 'failed';
          return;
        }
        await this.#pause(Math.min(5_000, 200 * 2 ** failures++));
      }
    }
  }

  #pause(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.#wake = () => {
        clearTimeout(timer);
        resolve();
      };
    }).finally(() => {
      this.#wake = undefined;
    });
  }

  // ---- live ------------------------------------------------------------------------------------

  /** Runs the live consumer until it stops: because the client stops, the version was retired, or it crashed. */
  async #runLive(): Promise<'stopped' | 'retired' | 'crashed'> {
    const d = this.definition;
    const c = d.consumer;
    const consumer = this.#createConsumer({
      groupId: projectionGroupId(d.name, d.version),
      ...(c.sessionTimeout !== undefined && { sessionTimeout: c.sessionTimeout }),
      ...(c.heartbeatInterval !== undefined && { heartbeatInterval: c.heartbeatInterval }),
      ...(c.maxWaitTimeInMs !== undefined && { maxWaitTimeInMs: c.maxWaitTimeInMs }),
      ...(c.maxRecordsPerFetch !== undefined && { maxRecordsPerFetch: c.maxRecordsPerFetch }),
      ...(c.retry !== undefined && { retry: c.retry }),
    });
    this.#consumer = consumer;
    this.listeners.attach(consumer);
    let retired = false;
    let crashed: unknown;
    const stopped = new Promise<void>((resolve) => {
      consumer.on(ConsumerEvents.STOP, () => resolve());
      consumer.on<{ error: unknown; restart: boolean }>(ConsumerEvents.CRASH, (e) => {
        if (!e.payload.restart) crashed = e.payload.error;
      });
    });
    try {
      await consumer.subscribe({ topics: d.topics, fromBeginning: true });
      await consumer.run({
        partitionsConsumedConcurrently: c.partitionsConsumedConcurrently ?? 1,
        eachBatchAutoResolve: false,
        eachBatch: async (payload) => {
          if (!(await this.#liveBatch(payload))) {
            retired = true;
            void consumer.stop();
          }
        },
      });
      if (this.#stopping.signal.aborted) await consumer.stop();
      await stopped;
    } finally {
      this.#consumer = undefined;
      await consumer.disconnect().catch(() => {});
    }
    if (crashed !== undefined) {
      this.#error = crashed;
      this.#state = 'failed';
      return 'crashed';
    }
    return retired ? 'retired' : 'stopped';
  }

  /** One live batch; false when the version is no longer active (nothing is committed then). */
  async #liveBatch(payload: EachBatchPayload<TDb>): Promise<boolean> {
    const { batch, tx } = payload;
    const fence = await this.store.fence(tx.db, this.definition.name, this.definition.version);
    if (!fence || fence.status !== 'active') return false;
    const env: ApplyEnv<TDb> = {
      tx: {
        get db() {
          return tx.db;
        },
        publish: (topic, event, data, options) => tx.publish(topic, event, data, options),
        send: (record) => tx.send(record),
      },
      replaying: false,
      heartbeat: payload.heartbeat,
      signal: payload.signal,
      docs: new DocumentBuffer(this.definition.name, this.#declaredTables),
    };
    let last: string | undefined;
    for (const message of batch.messages) {
      if (!payload.isRunning() || payload.isStale()) break;
      const pending = this.#apply(storedRecordOf(batch.topic, batch.partition, message), env);
      if (pending) await pending;
      last = message.offset;
    }
    await env.docs.flush(this.store, tx.db, this.#physical);
    if (last !== undefined) payload.resolveOffset(last);
    return true;
  }

  // ---- applying --------------------------------------------------------------------------------

  /** Runs the record's handler; returns a promise only when the handler did (most projection handlers are synchronous). */
  #apply(record: StoredRecord, env: ApplyEnv<TDb>): Promise<void> | undefined {
    const type = eventTypeOf(record.headers);
    const handler = type === undefined ? undefined : this.definition.handlers.get(type);
    if (type !== undefined && !handler) {
      this.stats.skip(type);
      return undefined;
    }
    // Decoding fails loudly (a record with no event type, a payload that cannot be upcast): a read
    // model must not skip data it was meant to see.
    const event = decode(this.#ctx, this.#topics.get(record.topic)!, record);
    const result = handler!.handle(asEventInstance(handler!.event, event.payload), new EventContext(record, event, env, this.#identity, this.#table));
    if (result instanceof Promise || (typeof result === 'object' && result !== null && typeof (result as PromiseLike<unknown>).then === 'function')) {
      return Promise.resolve(result).then(() => void this.stats.handled++);
    }
    this.stats.handled++;
    return undefined;
  }

  #table = (name: string): string => {
    if (!this.definition.tables.includes(name) && !this.definition.documents.includes(name)) {
      throw new InvalidOptionsError(`Projection "${this.definition.name}" has no table "${name}": declare it in tables: [...] (or documents: [...]).`);
    }
    return this.#physical(name);
  };

  // ---- rebuild ---------------------------------------------------------------------------------

  /** Rebuilds this definition's version (see the design note). Concurrent calls share one rebuild. */
  rebuild(options: RebuildOptions = {}): Promise<RebuildResult> {
    if (this.#rebuild) {
      if (options.onProgress) this.#rebuild.listeners.add(options.onProgress);
      return this.#rebuild.promise;
    }
    const listeners = new Set<(p: RebuildProgress) => void>();
    if (options.onProgress) listeners.add(options.onProgress);
    const signals = [this.#stopping.signal, ...(options.signal ? [options.signal] : [])];
    const promise = this.#runRebuild(AbortSignal.any(signals), (p) => {
      this.#progress = p;
      for (const l of listeners) {
        try {
          l(p);
        } catch {
          // A progress listener's failure is its own.
        }
      }
    }).finally(() => {
      this.#rebuild = undefined;
      this.#wake?.();
    });
    this.#rebuild = { promise, listeners };
    return promise;
  }

  async #runRebuild(signal: AbortSignal, report: (p: RebuildProgress) => void): Promise<RebuildResult> {
    const { name, version } = this.definition;
    const started = Date.now();
    const store = this.store;
    await this.#ctx.ensureConnected();
    const initial = (await store.describe([name]))[0];
    if (initial?.activeVersion === version) {
      throw new InvalidOptionsError(
        `Projection "${name}" version ${version} is already active. To rebuild its read model, bump the version: the new version is replayed while this one keeps serving.`,
      );
    }
    // One rebuild per projection at a time: wait for another client's to finish (or die).
    let lock: Awaited<ReturnType<ProjectionStore<TDb>['tryLockRebuild']>>;
    for (;;) {
      signal.throwIfAborted();
      const state = (await store.describe([name]))[0];
      const active = state?.activeVersion ?? null;
      if (active === version) return { projection: name, version, previousVersion: null, events: 0, durationMs: Date.now() - started, swapped: false };
      if (active !== null && active > version) {
        throw new InvalidOptionsError(`Projection "${name}" version ${active} is active, newer than this code's version ${version}: deploy the newer code.`);
      }
      lock = await store.tryLockRebuild(name);
      if (lock.acquired) break;
      await sleep(POLL_MS, signal);
    }
    try {
      return await this.#rebuildLocked(signal, report, started);
    } finally {
      await lock.release();
    }
  }

  async #rebuildLocked(outer: AbortSignal, report: (p: RebuildProgress) => void, started: number): Promise<RebuildResult> {
    const d = this.definition;
    const { name, version } = d;
    const store = this.store;
    const storage = this.#ctx.storage;
    const groupId = projectionGroupId(name, version);
    const owner = randomUUID();
    // A failing partition worker stops the others after their batch in flight.
    const failed = new AbortController();
    const signal = AbortSignal.any([outer, failed.signal]);
    const retry = <T>(fn: () => Promise<T>) => withRetry(this.#ctx.retry, fn, { signal });

    // Register the version (its tables, once) and take it over from any earlier rebuild.
    let alreadyActive = false;
    await retry(() =>
      storage.transaction(async (tx) => {
        const { state, created } = await store.prepareVersion(tx.db, this.#spec());
        if (state.status === 'active') {
          alreadyActive = true;
          return;
        }
        if (state.status === 'retired') {
          throw new InvalidOptionsError(`Projection "${name}" version ${version} was retired; bump the version to rebuild.`);
        }
        if (created && d.setup) {
          await d.setup({ db: tx.db, version, schema: d.schema, table: (t) => this.#table(t) });
        }
        if (!(await store.claimVersion(tx.db, name, version, owner))) {
          throw new IllegalGenerationError(`Projection "${name}" version ${version} is no longer building.`, { groupId });
        }
      }),
    );
    if (alreadyActive) return { projection: name, version, previousVersion: null, events: 0, durationMs: Date.now() - started, swapped: false };

    const partitions = await this.#partitions();
    const committed = await storage.fetchCommittedOffsets(groupId, d.topics.map((t) => t.name));
    const position = new Map<Key, bigint>();
    for (const p of partitions) {
      const c = committed.find((o) => o.topic === p.topic.name && o.partition === p.partition)?.offset;
      position.set(keyOf(p.topic.name, p.partition), c === undefined || c < p.low ? p.low : c);
    }
    let replayed = 0;
    let suppressed = 0;
    let lastReport = 0;
    let caps = new Map<Key, bigint>();
    const progress = (phase: RebuildProgress['phase'], force = false) => {
      const now = Date.now();
      if (!force && now - lastReport < PROGRESS_EVERY_MS) return;
      lastReport = now;
      let done = 0n;
      let total = 0n;
      for (const p of partitions) {
        const k = keyOf(p.topic.name, p.partition);
        const cap = caps.get(k) ?? p.high;
        const pos = position.get(k)!;
        done += (pos < cap ? pos : cap) - p.low;
        total += cap - p.low;
      }
      const elapsedMs = now - started;
      const rate = elapsedMs > 0 ? (replayed * 1000) / elapsedMs : 0;
      const left = Number(total - done);
      report(
        Object.freeze({
          projection: name,
          version,
          phase,
          eventsDone: Number(done),
          eventsTotal: Number(total),
          eventsPerSecond: Math.round(rate),
          etaMs: phase === 'done' ? 0 : rate > 0 ? Math.round((left / rate) * 1000) : null,
          elapsedMs,
          suppressedPublishes: suppressed,
        }),
      );
    };

    const replayEnv = (tx: DeferredTransaction<TDb>): ApplyEnv<TDb> => ({
      tx: {
        get db() {
          return tx.db;
        },
        publish: async () => void suppressed++,
        send: async () => void suppressed++,
      },
      replaying: true,
      heartbeat: async () => {},
      signal,
      // One partition at a time, into a version only this rebuild writes: nothing to lock against.
      docs: new DocumentBuffer(name, this.#declaredTables, { lock: d.rebuildConcurrency > 1 }),
    });

    const fenced = async (db: TDb) => {
      const fence = await store.fence(db, name, version);
      if (!fence || fence.status !== 'building' || fence.owner !== owner) {
        throw new IllegalGenerationError(
          `Projection "${name}" version ${version}: this rebuild was taken over (or the version activated) by another client; it stops without writing.`,
          { groupId },
        );
      }
    };

    const fetchFrom = (p: PartitionRef, from: bigint) =>
      withRetry(this.#ctx.retry, () => storage.fetch(p.topic.name, p.partition, from, { maxRecords: FETCH_RECORDS, maxBytes: FETCH_BYTES }), { signal });

    /**
     * Reads the records of `p` from `from` up to `cap`, at most about `limit` of them, in chunks,
     * outside any transaction; returns the chunks and the position after them.
     */
    const collect = async (p: PartitionRef, from: bigint, cap: bigint, limit: number): Promise<{ chunks: Array<readonly StoredRecord[] | undefined>; end: bigint }> => {
      const chunks: Array<readonly StoredRecord[] | undefined> = [];
      let pos = from;
      let count = 0;
      while (pos < cap && count < limit) {
        signal.throwIfAborted();
        const result = await fetchFrom(p, pos);
        let records = result.records;
        let n = records.length;
        while (n > 0 && records[n - 1]!.offset >= cap) n--;
        if (n < records.length) records = records.slice(0, n);
        if (n === 0) {
          // Below the log start (retention), or nothing left under the cap.
          pos = result.logStartOffset > pos && result.logStartOffset < cap ? result.logStartOffset : cap;
          continue;
        }
        chunks.push(records);
        count += n;
        pos = records[n - 1]!.offset + 1n;
      }
      return { chunks, end: pos };
    };

    /** Applies chunks in `tx`, resolving the documents after each; each chunk is released once applied. */
    const applyChunks = async (tx: DeferredTransaction<TDb>, env: ApplyEnv<TDb>, chunks: Array<readonly StoredRecord[] | undefined>): Promise<void> => {
      for (let i = 0; i < chunks.length; i++) {
        const records = chunks[i]!;
        chunks[i] = undefined;
        for (const r of records) {
          const pending = this.#apply(r, env);
          if (pending) await pending;
        }
        await env.docs.resolve(store, tx.db, this.#physical);
      }
    };

    /**
     * Replays one partition up to `cap`: a transaction per `batchSize` records, committed with its
     * checkpoint. Records are read before the transaction opens (the next batch's while this one
     * applies), so a transaction never waits for a pooled connection while it holds one.
     */
    const replayPartition = async (p: PartitionRef, cap: bigint): Promise<void> => {
      const k = keyOf(p.topic.name, p.partition);
      let next: ReturnType<typeof collect> | undefined = collect(p, position.get(k)!, cap, d.batchSize);
      try {
        while (next) {
          const from = position.get(k)!;
          let batch: { chunks: Array<readonly StoredRecord[] | undefined>; end: bigint } | undefined = await next;
          const end: bigint = batch.end;
          next = end < cap ? collect(p, end, cap, d.batchSize) : undefined;
          next?.catch(() => {});
          if (end > from) {
            await retry(async () => {
              // The first attempt applies what was read (releasing it as it goes); a retry reads it again.
              const chunks = batch?.chunks ?? (await collect(p, from, end, Number.POSITIVE_INFINITY)).chunks;
              batch = undefined;
              const tx = storage.deferredTransaction();
              try {
                await fenced(tx.db);
                const env = replayEnv(tx);
                await applyChunks(tx, env, chunks);
                await env.docs.flush(store, tx.db, this.#physical);
                await tx.commitOffsets(groupId, [{ topic: p.topic.name, partition: p.partition, offset: end }]);
                await tx.commit();
              } catch (error) {
                await tx.rollback();
                throw error;
              }
            });
            replayed += Number(end - from);
          }
          position.set(k, end);
          progress('replaying');
          signal.throwIfAborted();
        }
      } finally {
        next?.catch(() => {});
      }
    };

    // Replay passes: chase the active version's checkpoint (or the log end) until little is left.
    let previous: number | null = null;
    for (;;) {
      signal.throwIfAborted();
      const state = (await store.describe([name]))[0];
      previous = state?.activeVersion ?? null;
      caps = await this.#caps(previous, partitions);
      let remaining = 0n;
      const queue: PartitionRef[] = [];
      for (const p of partitions) {
        const k = keyOf(p.topic.name, p.partition);
        const left = caps.get(k)! - position.get(k)!;
        if (left > 0n) {
          remaining += left;
          queue.push(p);
        }
      }
      progress('replaying', true);
      // What is left is replayed inside the swap's transaction, while it holds the active version's lock: keep it short.
      if (remaining <= BigInt(Math.min(d.batchSize, FETCH_RECORDS))) break;
      const worker = async () => {
        for (let p = queue.shift(); p; p = queue.shift()) await replayPartition(p, caps.get(keyOf(p.topic.name, p.partition))!);
      };
      await Promise.all(
        Array.from({ length: Math.min(d.rebuildConcurrency, queue.length) }, () =>
          worker().catch((error: unknown) => {
            failed.abort(error);
            throw error;
          }),
        ),
      ).catch(() => {
        throw outer.aborted ? outer.reason : failed.signal.reason;
      });
    }

    // The swap: the last records up to the active version's final checkpoint, then the switch.
    progress('swapping', true);
    await retry(async () => {
      const tx = storage.deferredTransaction();
      try {
        const { activeVersion } = await store.lockForSwap(tx.db, name);
        if (activeVersion !== null && activeVersion >= version) {
          throw new InvalidOptionsError(`Projection "${name}" version ${activeVersion} became active during this rebuild of version ${version}.`);
        }
        await fenced(tx.db);
        const finalCaps = await this.#caps(activeVersion, partitions);
        const env = replayEnv(tx);
        const commits = [];
        const reached = new Map<Key, bigint>();
        for (const p of partitions) {
          const k = keyOf(p.topic.name, p.partition);
          const from = position.get(k)!;
          const { chunks, end: to } = await collect(p, from, finalCaps.get(k)!, Number.POSITIVE_INFINITY);
          await applyChunks(tx, env, chunks);
          const at = to > from ? to : from;
          reached.set(k, at);
          commits.push({ topic: p.topic.name, partition: p.partition, offset: at });
        }
        await env.docs.flush(store, tx.db, this.#physical);
        await tx.commitOffsets(groupId, commits);
        await store.activate(tx.db, name, version);
        await tx.commit();
        for (const [k, at] of reached) {
          replayed += Number(at - position.get(k)!);
          position.set(k, at);
        }
        caps = finalCaps;
        previous = activeVersion;
      } catch (error) {
        await tx.rollback();
        throw error;
      }
    });
    progress('done', true);
    return { projection: name, version, previousVersion: previous, events: replayed, durationMs: Date.now() - started, swapped: true };
  }

  /** Every partition of the projection's topics, with its watermarks now. */
  async #partitions(): Promise<PartitionRef[]> {
    const out: PartitionRef[] = [];
    for (const topic of this.definition.topics) {
      const marks = await withRetry(this.#ctx.retry, () => this.#ctx.storage.fetchWatermarks(topic.name));
      for (const m of marks) out.push({ topic, partition: m.partition, low: m.low, high: m.high });
    }
    return out;
  }

  /**
   * How far the replay may go per partition: the active version's checkpoint (what it has
   * processed live), or the log end when no version is active.
   */
  async #caps(activeVersion: number | null, partitions: readonly PartitionRef[]): Promise<Map<Key, bigint>> {
    const caps = new Map<Key, bigint>();
    const storage = this.#ctx.storage;
    if (activeVersion === null) {
      for (const topic of this.definition.topics) {
        for (const m of await storage.fetchWatermarks(topic.name)) caps.set(keyOf(topic.name, m.partition), m.high);
      }
    } else {
      const committed = await storage.fetchCommittedOffsets(projectionGroupId(this.definition.name, activeVersion), this.definition.topics.map((t) => t.name));
      for (const c of committed) caps.set(keyOf(c.topic, c.partition), c.offset);
    }
    for (const p of partitions) {
      const k = keyOf(p.topic.name, p.partition);
      if (!caps.has(k)) caps.set(k, p.low);
    }
    return caps;
  }
}

/** A projection handler's context: one small object per event, metadata built on first read. */
class EventContext<TDb> implements ProjectionContext<TDb> {
  readonly #record: StoredRecord;
  readonly #event: DecodedEvent;
  readonly #env: ApplyEnv<TDb>;
  readonly #table: (name: string) => string;
  readonly projection: { readonly name: string; readonly version: number };
  #metadata: EventMetadata | undefined;

  constructor(record: StoredRecord, event: DecodedEvent, env: ApplyEnv<TDb>, projection: { readonly name: string; readonly version: number }, table: (name: string) => string) {
    this.#record = record;
    this.#event = event;
    this.#env = env;
    this.projection = projection;
    this.#table = table;
  }

  get metadata(): EventMetadata {
    this.#metadata ??= metadataOf(this.#record, this.#event);
    return this.#metadata;
  }

  get tx(): HandlerTx<TDb> {
    return this.#env.tx;
  }

  get publish(): HandlerTx<TDb>['publish'] {
    return this.#env.tx.publish;
  }

  get heartbeat(): () => Promise<void> {
    return this.#env.heartbeat;
  }

  get signal(): AbortSignal {
    return this.#env.signal;
  }

  get replaying(): boolean {
    return this.#env.replaying;
  }

  table(name: string): string {
    return this.#table(name);
  }

  documents<T = unknown>(table: string): DocumentStore<T> {
    return this.#env.docs.store<T>(table);
  }
}
