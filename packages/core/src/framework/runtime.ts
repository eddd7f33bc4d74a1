/**
 * The handler runtime of one client: what `annals.register`, `annals.start` and
 * `annals.projections` do. Registration validates (and throws `RegistrationError`) synchronously;
 * `start` joins the subscribers' groups and starts the projections' supervisors.
 */
import type { Consumer, ConsumerEventName, ConsumerInput, InstrumentationEvent } from '../client/consumer.js';
import type { ClientContext } from '../client/context.js';
import { InvalidOptionsError, RegistrationError } from '../errors.js';
import type { ProjectionStore } from '../storage/projection-storage.js';
import { definitionOf, isDecoratedClass } from './decorators.js';
import { isProjectionDefinition, isSubscriberDefinition, type ProjectionDefinition, type SubscriberDefinition } from './definitions.js';
import {
  ProjectionRunner,
  projectionGroupId,
  type ProjectionRunState,
  type RebuildOptions,
  type RebuildProgress,
  type RebuildResult,
} from './projection-runner.js';
import { SubscriberRunner, type HandlerStats } from './subscriber-runner.js';

/** What `annals.register` accepts: a decorated instance or class, or a plain definition. */
export type Registrable = object;

/** Options of `annals.register`. */
export interface RegisterOptions {
  /**
   * Makes the instance of a decorated class (a DI container's `get`). Used when a class, not an
   * instance, is registered. @default (cls) => new cls()
   */
  readonly resolve?: (cls: abstract new (...args: any[]) => object) => object;
}

/** A registered subscriber or projection. */
export interface Registration {
  readonly kind: 'subscriber' | 'projection';
  readonly name: string;
  /** Handled and unhandled (acknowledged, counted) events so far in this client. */
  stats(): HandlerStats;
  /** Why it stopped for good (a handler failed its last attempt under `onFailure: 'stop'`, a projection failed), if it did. */
  error(): unknown;
  /** Listens to the instrumentation events of the consumers it runs (rebalances, commits, crashes…). */
  on<P = Record<string, unknown>>(eventName: ConsumerEventName, listener: (event: InstrumentationEvent<P>) => void): () => void;
}

/** One partition's checkpoint of a projection version. */
export interface ProjectionCheckpoint {
  readonly topic: string;
  readonly partition: number;
  /** The next offset to process (the group's committed offset), or null before the first commit. */
  readonly offset: string | null;
  readonly logEndOffset: string;
  readonly lag: number;
}

export interface ProjectionVersionReport {
  readonly version: number;
  readonly status: 'building' | 'active' | 'retired';
  readonly groupId: string;
  readonly checkpoint: readonly ProjectionCheckpoint[];
  /** Records between the checkpoint and the log end, over every partition. */
  readonly lag: number;
}

export interface ProjectionStatus {
  readonly name: string;
  /** The version this client's code builds (undefined for a projection not registered here). */
  readonly version: number | undefined;
  /** What this client is doing with it. */
  readonly state: ProjectionRunState | 'unregistered';
  readonly activeVersion: number | null;
  /** The active version's checkpoint and lag (empty and null while none is active). */
  readonly checkpoint: readonly ProjectionCheckpoint[];
  readonly lag: number | null;
  /** Every version the store knows. */
  readonly versions: readonly ProjectionVersionReport[];
  /** The last rebuild progress seen by this client. */
  readonly rebuild: RebuildProgress | undefined;
  readonly error: unknown;
  readonly stats: HandlerStats | undefined;
}

/** `annals.projections`. */
export interface Projections {
  /**
   * Rebuilds a registered projection's version by replaying its topics from the log start into
   * new tables while the active version keeps serving, then swaps atomically. Killed or aborted
   * midway, it resumes from its last committed batch when called again.
   */
  rebuild(name: string, options?: RebuildOptions): Promise<RebuildResult>;
  /** Every projection registered here or known to the store: version, checkpoint and lag. */
  status(names?: readonly string[]): Promise<ProjectionStatus[]>;
  /** The name readers query for a table of a projection's active version (Postgres: its view). */
  readName(name: string, table: string): Promise<string>;
  /** Every document of a document table of the active version (or of `version`), sorted by id. */
  documents<T = unknown>(name: string, table: string, options?: { readonly version?: number }): Promise<Array<[string, T]>>;
  /** Drops a retired version's tables and forgets it. */
  dropVersion(name: string, version: number): Promise<void>;
}

export class HandlerRuntime<TDb> {
  readonly #ctx: ClientContext<TDb>;
  readonly #createConsumer: (input: ConsumerInput) => Consumer<TDb>;
  readonly #subscribers: SubscriberRunner<TDb>[] = [];
  readonly #projections = new Map<string, ProjectionRunner<TDb>>();
  #started = false;
  readonly projections: Projections;

  constructor(ctx: ClientContext<TDb>, createConsumer: (input: ConsumerInput) => Consumer<TDb>) {
    this.#ctx = ctx;
    this.#createConsumer = createConsumer;
    this.projections = Object.freeze({
      rebuild: (name: string, options?: RebuildOptions) => this.#runner(name).rebuild(options),
      status: (names?: readonly string[]) => this.#status(names),
      readName: (name: string, table: string) => this.#readName(name, table),
      documents: <T>(name: string, table: string, options?: { readonly version?: number }) => this.#documents<T>(name, table, options?.version),
      dropVersion: (name: string, version: number) => this.#dropVersion(name, version),
    });
  }

  register(target: Registrable, options: RegisterOptions = {}): Registration {
    const definition = this.#definitionOf(target, options);
    if (isSubscriberDefinition(definition)) {
      const runner = new SubscriberRunner(this.#ctx, this.#createConsumer, definition);
      this.#subscribers.push(runner);
      if (this.#started) void runner.start().catch(() => {});
      return Object.freeze({
        kind: 'subscriber' as const,
        name: definition.name,
        stats: () => runner.stats.snapshot(),
        error: () => runner.error,
        on: (eventName: ConsumerEventName, listener: (event: InstrumentationEvent<any>) => void) => runner.listeners.add(eventName, listener),
      });
    }
    if (this.#projections.has(definition.name)) {
      throw new RegistrationError(`Projection "${definition.name}" is already registered with this client.`);
    }
    if (!this.#ctx.storage.projections) {
      throw new RegistrationError(`Projection "${definition.name}": storage ${this.#ctx.storage.description} does not support projections.`);
    }
    const runner = new ProjectionRunner(this.#ctx, this.#createConsumer, definition);
    this.#projections.set(definition.name, runner);
    if (this.#started) runner.start();
    return Object.freeze({
      kind: 'projection' as const,
      name: definition.name,
      stats: () => runner.stats.snapshot(),
      error: () => (runner.state === 'failed' ? runner.error : undefined),
      on: (eventName: ConsumerEventName, listener: (event: InstrumentationEvent<any>) => void) => runner.listeners.add(eventName, listener),
    });
  }

  #definitionOf(target: Registrable, options: RegisterOptions): SubscriberDefinition | ProjectionDefinition {
    if (isSubscriberDefinition(target) || isProjectionDefinition(target)) return target;
    if (typeof target === 'function') {
      if (!isDecoratedClass(target)) {
        throw new RegistrationError(`${(target as { name?: string }).name || 'This class'} cannot be registered: it is not decorated with @Subscriber(...) or @Projection(...).`);
      }
      const cls = target as abstract new (...args: any[]) => object;
      let instance: object;
      try {
        instance = options.resolve ? options.resolve(cls) : new (cls as new () => object)();
      } catch (cause) {
        throw new RegistrationError(`${cls.name} could not be instantiated: pass an instance, or register(${cls.name}, { resolve }) with your container.`, { cause });
      }
      return definitionOf(instance);
    }
    if (typeof target !== 'object' || target === null) {
      throw new RegistrationError(`annals.register needs a decorated instance or class, or a defineSubscriber/defineProjection definition; got ${String(target)}.`);
    }
    return definitionOf(target);
  }

  /** Starts every registration (subscribers join their groups; projections start serving). Idempotent. */
  async start(): Promise<void> {
    this.#started = true;
    await this.#ctx.ensureConnected();
    for (const p of this.#projections.values()) p.start();
    await Promise.all(this.#subscribers.map((s) => s.start()));
  }

  async stop(): Promise<void> {
    this.#started = false;
    await Promise.all([...this.#subscribers.map((s) => s.stop()), ...[...this.#projections.values()].map((p) => p.stop())]);
  }

  #runner(name: string): ProjectionRunner<TDb> {
    const runner = this.#projections.get(name);
    if (!runner) {
      throw new InvalidOptionsError(
        `No projection "${name}" is registered with this client (registered: ${[...this.#projections.keys()].join(', ') || 'none'}): register its code first — a rebuild runs its handlers.`,
      );
    }
    return runner;
  }

  #store(): ProjectionStore<TDb> {
    const store = this.#ctx.storage.projections;
    if (!store) throw new InvalidOptionsError(`Storage ${this.#ctx.storage.description} does not support projections.`);
    return store;
  }

  async #status(names?: readonly string[]): Promise<ProjectionStatus[]> {
    await this.#ctx.ensureConnected();
    const store = this.#store();
    const states = await store.describe(names);
    const all = new Set([...states.map((s) => s.name), ...[...this.#projections.keys()].filter((n) => !names || names.includes(n))]);
    const out: ProjectionStatus[] = [];
    for (const name of [...all].sort()) {
      const state = states.find((s) => s.name === name);
      const runner = this.#projections.get(name);
      const topics = runner ? runner.definition.topics.map((t) => t.name) : undefined;
      const versions: ProjectionVersionReport[] = [];
      for (const v of state?.versions ?? []) {
        const checkpoint = await this.#checkpoint(projectionGroupId(name, v.version), topics);
        versions.push({ version: v.version, status: v.status, groupId: projectionGroupId(name, v.version), checkpoint, lag: checkpoint.reduce((n, c) => n + c.lag, 0) });
      }
      const active = versions.find((v) => v.status === 'active');
      out.push(
        Object.freeze({
          name,
          version: runner?.definition.version,
          state: runner ? runner.state : ('unregistered' as const),
          activeVersion: state?.activeVersion ?? null,
          checkpoint: active?.checkpoint ?? [],
          lag: active ? active.lag : null,
          versions,
          rebuild: runner?.progress,
          error: runner?.error,
          stats: runner?.stats.snapshot(),
        }),
      );
    }
    return out;
  }

  async #checkpoint(groupId: string, topics: readonly string[] | undefined): Promise<ProjectionCheckpoint[]> {
    const storage = this.#ctx.storage;
    const committed = await storage.fetchCommittedOffsets(groupId, topics);
    const names = topics ?? [...new Set(committed.map((c) => c.topic))];
    const out: ProjectionCheckpoint[] = [];
    for (const topic of names) {
      for (const m of await storage.fetchWatermarks(topic)) {
        const c = committed.find((o) => o.topic === topic && o.partition === m.partition)?.offset ?? null;
        const from = c === null || c < m.low ? m.low : c;
        out.push({ topic, partition: m.partition, offset: c === null ? null : c.toString(), logEndOffset: m.high.toString(), lag: Number(m.high > from ? m.high - from : 0n) });
      }
    }
    return out;
  }

  async #versionOf(name: string, version: number | undefined): Promise<{ schema: string; version: number }> {
    const state = (await this.#store().describe([name]))[0];
    const v = version ?? state?.activeVersion ?? undefined;
    const found = state?.versions.find((x) => x.version === v);
    if (v === undefined || !found) {
      throw new InvalidOptionsError(version === undefined ? `Projection "${name}" has no active version yet.` : `Projection "${name}" has no version ${version}.`);
    }
    return { schema: found.schema, version: v };
  }

  async #readName(name: string, table: string): Promise<string> {
    await this.#ctx.ensureConnected();
    const { schema, version } = await this.#versionOf(name, undefined);
    return this.#store().readName(schema, table, version);
  }

  async #documents<T>(name: string, table: string, version: number | undefined): Promise<Array<[string, T]>> {
    await this.#ctx.ensureConnected();
    const v = await this.#versionOf(name, version);
    return (await this.#store().readDocuments(this.#store().tableName(v.schema, table, v.version))) as Array<[string, T]>;
  }

  async #dropVersion(name: string, version: number): Promise<void> {
    await this.#ctx.ensureConnected();
    await this.#store().dropVersion(name, version);
    // Its checkpoint goes with it (a retired version has no live member left).
    await this.#ctx.storage.deleteGroups([projectionGroupId(name, version)]).catch(() => {});
  }
}
