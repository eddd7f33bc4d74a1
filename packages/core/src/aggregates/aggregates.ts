/**
 * Event-sourced aggregates on the log: `annals.aggregates` and `tx.aggregates`.
 *
 * A stream is the records of one key in one topic; its version is how many there are (see
 * `storage/stream-storage.ts` for the store's guarantees). This module adds the typed layer: events
 * as `{ type, payload }` checked by the topic's contracts, loading with upcasting, folding with a
 * decider from its snapshot, and `handle` — load, decide, append at the loaded version, and on a
 * conflict load and decide again, a bounded number of times.
 *
 * ## Where appends are checked
 *
 * - `annals.aggregates.append` / `handle`: at once, in a transaction of their own (one statement
 *   when uncontended). `handle` retries conflicts; snapshots are taken after a successful append.
 * - `tx.aggregates` in `annals.transaction(...)`: buffered like `tx.publish`, and checked when the
 *   transaction flushes, just before COMMIT — so head locks are held only for the commit. A
 *   conflict fails the whole transaction with `WrongExpectedVersionError`; nothing is written.
 * - `tx.aggregates` in a consumer handler: checked at once, in the batch's transaction (under the
 *   record's savepoint), so a conflict fails that record, which the consumer retries like any
 *   failed handler (the retry loads again and decides again) — instead of failing the whole batch
 *   at commit. The head lock is then held from the append until the batch commits.
 *
 * Snapshots are never taken inside a transaction: a snapshot of state that then rolls back would
 * describe events that do not exist.
 */
import type { TopicContract } from '../contracts/topic.js';
import {
  InvalidOptionsError,
  MessageTooLargeError,
  UnknownEventTypeError,
  WrongExpectedVersionError,
} from '../errors.js';
import { partitionFor } from '../partitioner.js';
import type { AppendRecord, StoredRecord } from '../storage/log-storage.js';
import type { ExpectedVersion, StreamAppendResult, StreamExpectation, StreamReadOptions, StreamSlice } from '../storage/stream-storage.js';
import type { ClientContext } from '../client/context.js';
import { decodeEvent, encodeEvent } from '../client/events.js';
import { recordSize, toBytes, toStoredHeaders, type IHeaders } from '../client/messages.js';
import { groupByPartition, type PreparedRecord } from '../client/prepare.js';
import { sleep, withRetry } from '../client/retry.js';
import type { AnyEventContract, Decider, EventData, EventsOfTopic, NewEvent, StreamEvent } from './decider.js';

/** A stream's key: text (UTF-8) or bytes. */
export type StreamKey = string | Uint8Array;

/**
 * A topic contract that carries every event of `C` — what `handle` and `aggregate` accept for a
 * decider over `C`. A topic missing one of them is a compile error naming the missing types.
 */
export type CarriesEvents<T extends TopicContract, C extends AnyEventContract> = [C] extends [EventsOfTopic<T>]
  ? unknown
  : { readonly 'topic does not carry these decider events': Exclude<C, EventsOfTopic<T>>['type'] };

/** Options of `append`. */
export interface AppendToStreamOptions {
  /** The version the stream must be at: a number, `'no-stream'` (= 0), or `'any'` (no check). */
  readonly expectedVersion: ExpectedVersion;
  /** Extra headers on every appended event. */
  readonly headers?: IHeaders;
}

/** A stream as `load` returns it. */
export interface LoadedStream<C extends AnyEventContract = AnyEventContract> {
  readonly topic: string;
  readonly partition: number;
  /** The stream's version: how many events it holds. */
  readonly version: number;
  /** Its events, oldest first, decoded and upcast. */
  readonly events: StreamEvent<C>[];
}

/** What `annals.aggregates.append` returns. */
export interface StreamAppended {
  readonly topic: string;
  readonly partition: number;
  readonly previousVersion: number;
  /** The version after the append. */
  readonly version: number;
  /** The offsets the events took, in order. */
  readonly offsets: readonly bigint[];
}

/** A decider's state folded from a stream. */
export interface AggregateState<S> {
  readonly state: S;
  /** The stream's version the state reflects. */
  readonly version: number;
  /** The snapshot version the fold started from (0: none was used). */
  readonly snapshotVersion: number;
}

/** Options of `annals.aggregates.handle`. */
export interface HandleOptions {
  /** Conflicting appends retried (load again, decide again, append) before the conflict is thrown. @default 3 */
  readonly maxRetries?: number;
  /** Extra headers on every appended event. */
  readonly headers?: IHeaders;
}

/** What `handle` returns. */
export interface HandleResult<C extends AnyEventContract, S> {
  /** The state after the appended events. */
  readonly state: S;
  /** The stream's version after the append (the loaded version when `decide` returned no events). */
  readonly version: number;
  /** The events appended (payloads as validated), oldest first; empty when `decide` returned none. */
  readonly events: EventData<C>[];
  /** Conflicts retried before the append went through. */
  readonly retries: number;
  /**
   * Whether a snapshot was stored after the append: `'stored'`; `'not-due'`; `'kept'` when one was
   * due but the stream already had a snapshot that is not replaced (a newer schema version, or a
   * version at least as high); or why storing it failed (it never fails `handle`).
   */
  readonly snapshot: 'stored' | 'kept' | 'not-due' | { readonly error: unknown };
}

/** What `tx.aggregates.handle` returns: the outcome if the transaction commits. */
export interface TransactionHandleResult<C extends AnyEventContract, S> {
  readonly state: S;
  readonly version: number;
  readonly events: EventData<C>[];
}

/** @internal Where an aggregates handle reads streams and sends stream appends. */
export interface StreamIO {
  read(topic: string, partition: number, key: Uint8Array, options: StreamReadOptions): Promise<StreamSlice>;
  /** Appends (and returns what was written), or buffers until the transaction flushes (undefined). */
  append(records: readonly PreparedRecord[], stream: StreamExpectation): Promise<StreamAppendResult | undefined>;
}

const decoder = new TextDecoder();
const keyText = (key: Uint8Array) => decoder.decode(key);

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function keyBytes(key: StreamKey, topic: string): Uint8Array {
  if (typeof key !== 'string' && !(key instanceof Uint8Array)) {
    throw new InvalidOptionsError(`A stream key of topic "${topic}" must be a string or a Uint8Array, got ${typeof key}.`, { topic });
  }
  const bytes = toBytes(key, `Stream key of topic "${topic}"`);
  if (bytes.length === 0) throw new InvalidOptionsError(`A stream of topic "${topic}" needs a non-empty key.`, { topic });
  return bytes;
}

function checkTopicCarries(decider: Decider, topic: TopicContract): void {
  for (const contract of decider.events) {
    if (topic.eventByType(contract.type) !== contract) {
      throw new UnknownEventTypeError(
        `Decider "${decider.name}" has event "${contract.type}", which topic "${topic.name}" does not carry: add it to the topic's events.`,
        { topic: topic.name, eventType: contract.type },
      );
    }
  }
}

/** The stream's events decoded with the topic's contracts (and, for a decider, checked against its events). */
function decodeStream(
  ctx: ClientContext<any>,
  topic: TopicContract,
  records: readonly StoredRecord[],
  firstVersion: number,
  decider?: Decider,
): StreamEvent[] {
  return records.map((record, i) => {
    const decoded = decodeEvent(topic, record, ctx.codecs);
    if (decider && !decider.eventByType(decoded.type)) {
      throw new UnknownEventTypeError(
        `Stream "${keyText(record.key!)}" of topic "${topic.name}" holds event "${decoded.type}" at offset ${record.offset}, which decider "${decider.name}" does not list: add it to the decider's events.`,
        { topic: topic.name, partition: record.partition, offset: record.offset.toString(), eventType: decoded.type },
      );
    }
    return {
      type: decoded.type,
      payload: decoded.payload,
      version: firstVersion + i,
      topic: record.topic,
      partition: record.partition,
      offset: record.offset,
      timestamp: record.timestamp,
      storedVersion: decoded.storedVersion,
      headers: record.headers,
    } as StreamEvent;
  });
}

/**
 * @internal The buffered stream appends of one `annals.transaction`: one expectation per stream,
 * checked at flush. A second append to a stream in the same transaction must expect the version
 * the first one leads to.
 */
export class StreamBuffer {
  readonly #pending = new Map<string, { expectation: StreamExpectation; count: number }>();

  add(stream: StreamExpectation, count: number): void {
    const id = `${stream.topic}\u0000${Buffer.from(stream.key).toString('hex')}`;
    const prev = this.#pending.get(id);
    if (!prev) {
      this.#pending.set(id, { expectation: stream, count });
      return;
    }
    const want = stream.expectedVersion;
    if (want !== 'any') {
      const wanted = want === 'no-stream' ? 0 : want;
      const before = prev.expectation.expectedVersion;
      if (before === 'any') {
        // The first append did not say where the stream was: this one does.
        if (wanted < prev.count) throw pendingConflict(stream, wanted, prev.count, true);
        prev.expectation = { ...prev.expectation, expectedVersion: wanted - prev.count };
      } else {
        const leadsTo = (before === 'no-stream' ? 0 : before) + prev.count;
        if (wanted !== leadsTo) throw pendingConflict(stream, wanted, leadsTo, false);
      }
    }
    prev.count += count;
  }

  get expectations(): StreamExpectation[] {
    return [...this.#pending.values()].map((p) => p.expectation);
  }
}

function pendingConflict(stream: StreamExpectation, wanted: number, leadsTo: number, atLeast: boolean): WrongExpectedVersionError {
  const key = keyText(stream.key);
  return new WrongExpectedVersionError(
    `Stream "${key}" of topic "${stream.topic}": this append expects version ${wanted}, but an earlier append in the same transaction leaves the stream at ${atLeast ? 'at least ' : ''}${leadsTo}. Nothing was written.`,
    { topic: stream.topic, partition: stream.partition, key, expectedVersion: stream.expectedVersion, actualVersion: leadsTo },
  );
}

/** What `load`, `aggregate` and `append` share between the client and its transactions. */
abstract class StreamOperations {
  readonly #ctx: ClientContext<any>;

  protected constructor(ctx: ClientContext<any>) {
    this.#ctx = ctx;
  }

  protected abstract io(): StreamIO;

  protected get ctx(): ClientContext<any> {
    return this.#ctx;
  }

  protected async locate(topic: TopicContract, key: StreamKey): Promise<{ key: Uint8Array; partition: number }> {
    if (!topic || topic.kind !== 'annals.topic') throw new InvalidOptionsError('Streams need a topic contract from defineTopic(...).');
    const bytes = keyBytes(key, topic.name);
    // Every call connects the client on first use, as the rest of the API does.
    await this.#ctx.ensureConnected();
    const meta = await this.#ctx.metadata.get(topic.name);
    return { key: bytes, partition: partitionFor(bytes, meta.partitions) };
  }

  /**
   * Loads a stream: its version and its events, decoded and upcast to the latest version of their
   * contracts. Costs the stream's length, not the partition's (an index on (topic, partition, key, offset)).
   */
  async load<T extends TopicContract>(topic: T, key: StreamKey): Promise<LoadedStream<EventsOfTopic<T>>> {
    const where = await this.locate(topic, key);
    const slice = await this.io().read(topic.name, where.partition, where.key, {});
    return {
      topic: topic.name,
      partition: where.partition,
      version: slice.version,
      events: decodeStream(this.#ctx, topic, slice.records, 1) as StreamEvent<EventsOfTopic<T>>[],
    };
  }

  /** Folds a stream with a decider, starting from its snapshot when there is a usable one. */
  async aggregate<C extends AnyEventContract, S, T extends TopicContract>(
    decider: Decider<C, S, any>,
    topic: T & CarriesEvents<T, C>,
    key: StreamKey,
  ): Promise<AggregateState<S>> {
    checkTopicCarries(decider, topic);
    const where = await this.locate(topic, key);
    const { state, version, snapshotVersion } = await this.fold(decider, topic, where.key, where.partition);
    return { state, version, snapshotVersion };
  }

  protected async fold<C extends AnyEventContract, S>(
    decider: Decider<C, S, any>,
    topic: TopicContract,
    key: Uint8Array,
    partition: number,
  ): Promise<{ state: S; version: number; snapshotVersion: number }> {
    const policy = decider.snapshots;
    let slice = await this.io().read(topic.name, partition, key, policy ? { snapshot: { name: decider.name, schemaVersion: policy.version } } : {});
    let state: S | undefined;
    let from = 0;
    if (slice.snapshot && policy) {
      try {
        state = policy.deserialize(this.#ctx.codec.decode(slice.snapshot.state));
        from = slice.snapshot.version;
      } catch {
        // An unreadable snapshot is only a lost cache: read the whole stream.
        slice = await this.io().read(topic.name, partition, key, {});
      }
    }
    if (from === 0) state = decider.initialState();
    for (const event of decodeStream(this.#ctx, topic, slice.records, from + 1, decider)) {
      state = decider.evolve(state as S, event as unknown as EventData<C>);
    }
    return { state: state as S, version: slice.version, snapshotVersion: from };
  }

  /** Validates and encodes events for a stream: the topic's contracts, its key function, max.message.bytes. */
  protected async prepare(
    topic: TopicContract,
    key: Uint8Array,
    partition: number,
    events: readonly NewEvent[],
    headers: IHeaders | undefined,
    decider?: Decider,
  ): Promise<{ records: PreparedRecord[]; data: EventData[] }> {
    if (!Array.isArray(events)) {
      throw new InvalidOptionsError(`Events for stream "${keyText(key)}" of topic "${topic.name}" must be an array of { type, payload }.`, { topic: topic.name });
    }
    const meta = await this.#ctx.metadata.get(topic.name);
    const extra = toStoredHeaders(headers);
    const records: PreparedRecord[] = [];
    const data: EventData[] = [];
    events.forEach((event, i) => {
      if (event === null || typeof event !== 'object' || typeof event.type !== 'string') {
        throw new InvalidOptionsError(`Event ${i} for stream "${keyText(key)}" is not a { type, payload } object.`, { topic: topic.name });
      }
      const contract = decider ? decider.eventByType(event.type) : topic.eventByType(event.type);
      if (!contract || topic.eventByType(event.type) !== contract) {
        throw new UnknownEventTypeError(
          decider && !contract
            ? `Decider "${decider.name}" decided an event "${event.type}" that is not among its events. Nothing was written.`
            : `Topic "${topic.name}" does not carry event "${event.type}". Nothing was written.`,
          { topic: topic.name, eventType: event.type },
        );
      }
      const encoded = encodeEvent(contract, event.payload, this.#ctx.codec, topic.name);
      const derived = topic.keyOf(encoded.payload as never);
      if (derived !== undefined && derived !== null && !sameBytes(toBytes(derived, 'Derived key'), key)) {
        throw new InvalidOptionsError(
          `Event ${i} ("${event.type}") for stream "${keyText(key)}" of topic "${topic.name}" has the key "${typeof derived === 'string' ? derived : keyText(derived)}" by the topic's key function: a stream's events must carry its key. Key the topic by the aggregate's id. Nothing was written.`,
          { topic: topic.name, eventType: event.type },
        );
      }
      const record: AppendRecord = { key, value: encoded.value, headers: extra ? { ...extra, ...encoded.headers } : encoded.headers, timestamp: null };
      const size = recordSize(record.key, record.value, record.headers);
      const limit = meta.config['max.message.bytes'];
      if (size > limit) {
        throw new MessageTooLargeError(
          `Event ${i} ("${event.type}") for stream "${keyText(key)}" is ${size} bytes, over the topic's max.message.bytes (${limit}). Nothing was written.`,
          size,
          limit,
          { topic: topic.name },
        );
      }
      records.push({ topic: topic.name, partition, record });
      data.push({ type: event.type, payload: encoded.payload } as EventData);
    });
    // Stream appends are publishes too: each contract's version is registered (or verified) once
    // per client before anything is written (SchemaVersionConflictError otherwise).
    for (const contract of new Set(events.map((e) => topic.eventByType(e.type)!))) {
      const registering = this.#ctx.schemas.ensure(contract, topic.name);
      if (registering) await registering;
    }
    return { records, data };
  }

  /** Validates `options`, locates the stream, prepares the events and appends them at `expectedVersion`. */
  protected async appendEvents(
    topic: TopicContract,
    key: StreamKey,
    events: readonly NewEvent<AnyEventContract>[],
    options: AppendToStreamOptions,
  ): Promise<{ partition: number; records: readonly PreparedRecord[]; result: StreamAppendResult | undefined }> {
    if (!options || !('expectedVersion' in options)) {
      throw new InvalidOptionsError(`append(topic, key, events, { expectedVersion }) needs an expectedVersion (a number, 'no-stream' or 'any').`);
    }
    const where = await this.locate(topic, key);
    const { records } = await this.prepare(topic, where.key, where.partition, events, options.headers);
    const result = await this.appendPrepared(topic, where.key, where.partition, records, options.expectedVersion);
    return { partition: where.partition, records, result };
  }

  protected async appendPrepared(
    topic: TopicContract,
    key: Uint8Array,
    partition: number,
    records: readonly PreparedRecord[],
    expectedVersion: ExpectedVersion,
  ): Promise<StreamAppendResult | undefined> {
    if (expectedVersion !== 'any' && expectedVersion !== 'no-stream' && (!Number.isSafeInteger(expectedVersion) || expectedVersion < 0)) {
      throw new InvalidOptionsError(`expectedVersion must be an integer ≥ 0, 'no-stream' or 'any', got ${JSON.stringify(expectedVersion)}.`, { topic: topic.name });
    }
    return this.io().append(records, { topic: topic.name, partition, key, expectedVersion });
  }
}

/**
 * `annals.aggregates`: event-sourced streams and deciders, each call in a transaction of its own.
 *
 * @example
 * ```ts
 * const { version, events } = await annals.aggregates.load(orders, 'o-1');
 * await annals.aggregates.append(orders, 'o-1', [{ type: 'order.paid', payload: { orderId: 'o-1' } }], { expectedVersion: version });
 * const { state } = await annals.aggregates.handle(Order, orders, 'o-1', { type: 'ship', orderId: 'o-1' });
 * ```
 */
export class Aggregates extends StreamOperations {
  readonly #io: StreamIO;

  /** @internal Use `annals.aggregates`. */
  constructor(ctx: ClientContext<any>) {
    super(ctx);
    this.#io = {
      read: async (topic, partition, key, options) => {
        await ctx.ensureConnected();
        return withRetry(ctx.retry, () => ctx.storage.readStream(topic, partition, key, options));
      },
      append: async (records, stream) => {
        await ctx.ensureConnected();
        // Retriable failures (deadlock, connection refused) rolled back: the same append is safe to retry.
        return withRetry(ctx.retry, () => ctx.storage.appendToStreams(groupByPartition(records).appends, [stream]));
      },
    };
  }

  protected io(): StreamIO {
    return this.#io;
  }

  /**
   * Appends events to a stream if it is at `expectedVersion`; otherwise throws
   * `WrongExpectedVersionError` (with the expected and actual versions) and writes nothing.
   * Of two appends expecting the same version, exactly one succeeds.
   */
  async append<T extends TopicContract>(
    topic: T,
    key: StreamKey,
    events: readonly NewEvent<EventsOfTopic<T>>[],
    options: AppendToStreamOptions,
  ): Promise<StreamAppended> {
    const appended = await this.appendEvents(topic, key, events, options);
    const { records } = appended;
    const result = appended.result!;
    const stream = result.streams[0]!;
    const base = result.appends[0]?.baseOffset;
    return {
      topic: topic.name,
      partition: appended.partition,
      previousVersion: stream.previousVersion,
      version: stream.version,
      offsets: base === undefined ? [] : records.map((_, i) => base + BigInt(i)),
    };
  }

  /**
   * Runs a command: loads the stream (from its snapshot when the decider has snapshots), calls
   * `decide`, and appends the events at the loaded version. On a conflict (another writer
   * appended first) it loads and decides again, up to `maxRetries` times, then throws
   * `WrongExpectedVersionError`. An error thrown by `decide` (a refused command) is thrown as is.
   */
  async handle<C extends AnyEventContract, S, Cmd, T extends TopicContract>(
    decider: Decider<C, S, Cmd>,
    topic: T & CarriesEvents<T, C>,
    key: StreamKey,
    command: NoInfer<Cmd>,
    options: HandleOptions = {},
  ): Promise<HandleResult<C, S>> {
    const maxRetries = options.maxRetries ?? 3;
    if (!Number.isSafeInteger(maxRetries) || maxRetries < 0) throw new InvalidOptionsError(`handle: maxRetries must be an integer ≥ 0, got ${String(maxRetries)}.`);
    checkTopicCarries(decider, topic);
    const where = await this.locate(topic, key);
    for (let attempt = 0; ; attempt++) {
      const loaded = await this.fold(decider, topic, where.key, where.partition);
      const decided = await decider.decide(command, loaded.state);
      if (!Array.isArray(decided)) throw new InvalidOptionsError(`Decider "${decider.name}": decide must return an array of events (empty for none).`);
      if (decided.length === 0) {
        return { state: loaded.state, version: loaded.version, events: [], retries: attempt, snapshot: 'not-due' };
      }
      const { records, data } = await this.prepare(topic, where.key, where.partition, decided, options.headers, decider);
      let result: StreamAppendResult;
      try {
        result = (await this.appendPrepared(topic, where.key, where.partition, records, loaded.version))!;
      } catch (error) {
        if (error instanceof WrongExpectedVersionError && attempt < maxRetries) {
          // Spread the retries of writers that collided, so they do not collide again in step.
          await sleep(Math.random() * Math.min(50, 2 ** attempt));
          continue;
        }
        throw error;
      }
      const state = decider.fold(data as EventData<C>[], loaded.state);
      const version = result.streams[0]!.version;
      const lastOffset = result.appends[0]!.baseOffset + BigInt(records.length - 1);
      const snapshot = await this.#maybeSnapshot(decider, topic, where.key, loaded, state, version, lastOffset);
      return { state, version, events: data as EventData<C>[], retries: attempt, snapshot };
    }
  }

  async #maybeSnapshot<S>(
    decider: Decider<any, S, any>,
    topic: TopicContract,
    key: Uint8Array,
    loaded: { version: number; snapshotVersion: number },
    state: S,
    version: number,
    offset: bigint,
  ): Promise<HandleResult<any, S>['snapshot']> {
    const policy = decider.snapshots;
    if (!policy) return 'not-due';
    const crossed = Math.floor(version / policy.every) > Math.floor(loaded.version / policy.every);
    // No usable snapshot (never taken, or of another schema version) although one is due: take it now.
    const missing = loaded.snapshotVersion === 0 && version >= policy.every;
    if (!crossed && !missing) return 'not-due';
    try {
      const encoded = this.ctx.codec.encode(policy.serialize(state));
      const stored = await this.ctx.storage.saveSnapshot({ name: decider.name, topic: topic.name, key, schemaVersion: policy.version, version, offset, state: encoded });
      return stored ? 'stored' : 'kept';
    } catch (error) {
      return { error };
    }
  }

  /** Deletes every snapshot of an aggregate type (they are re-taken as streams are handled). Returns how many. */
  async deleteSnapshots(decider: Decider | string): Promise<number> {
    await this.ctx.ensureConnected();
    return this.ctx.storage.deleteSnapshots(typeof decider === 'string' ? decider : decider.name);
  }
}

/**
 * `tx.aggregates`: streams in a transaction — `annals.transaction`'s (appends checked at flush) or
 * a consumer handler's (appends checked at once). Loads see what the transaction has appended so
 * far through the store (in `annals.transaction`, buffered appends are not appended until flush).
 */
export class TransactionAggregates extends StreamOperations {
  readonly #io: StreamIO;

  /** @internal */
  constructor(ctx: ClientContext<any>, io: StreamIO) {
    super(ctx);
    this.#io = io;
  }

  protected io(): StreamIO {
    return this.#io;
  }

  /**
   * Appends events to a stream in this transaction if, when checked, the stream is at
   * `expectedVersion`; otherwise `WrongExpectedVersionError` — thrown here in a consumer handler,
   * or by `annals.transaction` at commit (and nothing of the transaction is written).
   */
  async append<T extends TopicContract>(
    topic: T,
    key: StreamKey,
    events: readonly NewEvent<EventsOfTopic<T>>[],
    options: AppendToStreamOptions,
  ): Promise<void> {
    await this.appendEvents(topic, key, events, options);
  }

  /**
   * Loads, decides and appends at the loaded version, in this transaction. No retries here: a
   * conflict fails the transaction (or, in a consumer handler, the record, which the consumer
   * retries). No snapshots either (see the module note).
   */
  async handle<C extends AnyEventContract, S, Cmd, T extends TopicContract>(
    decider: Decider<C, S, Cmd>,
    topic: T & CarriesEvents<T, C>,
    key: StreamKey,
    command: NoInfer<Cmd>,
    options: { readonly headers?: IHeaders } = {},
  ): Promise<TransactionHandleResult<C, S>> {
    checkTopicCarries(decider, topic);
    const where = await this.locate(topic, key);
    const loaded = await this.fold(decider, topic, where.key, where.partition);
    const decided = await decider.decide(command, loaded.state);
    if (!Array.isArray(decided)) throw new InvalidOptionsError(`Decider "${decider.name}": decide must return an array of events (empty for none).`);
    if (decided.length === 0) return { state: loaded.state, version: loaded.version, events: [] };
    const { records, data } = await this.prepare(topic, where.key, where.partition, decided, options.headers, decider);
    await this.appendPrepared(topic, where.key, where.partition, records, loaded.version);
    return { state: decider.fold(data as EventData<C>[], loaded.state), version: loaded.version + records.length, events: data as EventData<C>[] };
  }
}
