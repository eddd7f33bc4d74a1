/**
 * A reader of partitions assigned by hand (no consumer group): it fetches from a position per
 * partition, hands records to a handler in offset order, and sleeps until a commit notification
 * (LISTEN/NOTIFY) or the fallback poll interval wakes it. A lost connection (a terminated session,
 * a server restart) is retried with the client's `retry` policy, so a reader rides it out on its own.
 */
import { InvalidOptionsError, OffsetOutOfRangeError } from '../errors.js';
import type { ClientContext } from './context.js';
import { withRetry } from './retry.js';
import { toKafkaMessage, type KafkaMessage } from './messages.js';

export interface ReaderInput {
  /** Most records per fetch from one partition. @default 500 */
  readonly maxRecords?: number;
  /** Most bytes per fetch from one partition (at least one record is always returned). @default 1048576 */
  readonly maxBytesPerPartition?: number;
  /** Fetch again after this many ms even without a notification (missed NOTIFY, other writers). @default 1000 */
  readonly pollIntervalMs?: number;
}

/** Where to start reading: an offset, or the log start / log end. */
export type StartOffset = string | bigint | 'earliest' | 'latest';

export interface Assignment {
  readonly topic: string;
  readonly partition: number;
  /** @default 'earliest' */
  readonly offset?: StartOffset;
}

export interface ReaderBatch {
  readonly topic: string;
  readonly partition: number;
  readonly highWatermark: string;
  readonly messages: KafkaMessage[];
}

export interface ReaderRunInput {
  readonly eachMessage?: (payload: { topic: string; partition: number; message: KafkaMessage }) => Promise<void>;
  readonly eachBatch?: (payload: { batch: ReaderBatch }) => Promise<void>;
}

interface Position {
  readonly topic: string;
  readonly partition: number;
  next: bigint;
}

const keyOf = (topic: string, partition: number) => `${topic}\u0000${partition}`;

/** A reader of hand-assigned partitions. Create it with `annals.reader()`. */
export class PartitionReader {
  readonly #ctx: ClientContext<any>;
  readonly #maxRecords: number;
  readonly #maxBytes: number;
  readonly #pollIntervalMs: number;
  readonly #positions = new Map<string, Position>();
  #running: Promise<void> | undefined;
  #stopping = false;
  #wake: (() => void) | undefined;
  /** Aborted by stop() (and replaced): ends a retry's backoff at once. */
  #stopped = new AbortController();
  readonly #stopReason = new Error('The reader was stopped.');
  #dirty = false;
  /** Bumped by every seek/assign: a handler that seeks makes the loop drop the rest of its batch. */
  #generation = 0;

  /** @internal Use `annals.reader()`. */
  constructor(ctx: ClientContext<any>, input: ReaderInput = {}) {
    this.#ctx = ctx;
    this.#maxRecords = input.maxRecords ?? 500;
    this.#maxBytes = input.maxBytesPerPartition ?? 1_048_576;
    this.#pollIntervalMs = input.pollIntervalMs ?? 1_000;
    for (const [name, v] of [
      ['maxRecords', this.#maxRecords],
      ['maxBytesPerPartition', this.#maxBytes],
      ['pollIntervalMs', this.#pollIntervalMs],
    ] as const) {
      if (!Number.isSafeInteger(v) || v < 1) throw new InvalidOptionsError(`reader ${name} must be a positive integer, got ${String(v)}.`);
    }
  }

  async #resolve(topic: string, partition: number, offset: StartOffset): Promise<bigint> {
    if (offset === 'earliest' || offset === 'latest') {
      await this.#ctx.ensureConnected();
      const marks = await this.#retrying(() => this.#ctx.storage.fetchWatermarks(topic));
      const m = marks.find((x) => x.partition === partition);
      if (!m) throw new OffsetOutOfRangeError(`Topic "${topic}" has no partition ${partition}.`, { topic, partition });
      return offset === 'earliest' ? m.low : m.high;
    }
    let n: bigint;
    try {
      n = BigInt(offset);
    } catch {
      throw new InvalidOptionsError(`Offset ${JSON.stringify(String(offset))} is not an integer, 'earliest' or 'latest'.`);
    }
    if (n < 0n) throw new InvalidOptionsError(`Offset must be ≥ 0, got ${n}.`);
    return n;
  }

  /** Assigns partitions (adding to those already assigned). */
  async assign(assignments: readonly Assignment[]): Promise<void> {
    for (const a of assignments) {
      const next = await this.#resolve(a.topic, a.partition, a.offset ?? 'earliest');
      this.#positions.set(keyOf(a.topic, a.partition), { topic: a.topic, partition: a.partition, next });
    }
    this.#poke();
  }

  /** Moves an assigned partition's position; the next fetch starts there. */
  async seek(target: { topic: string; partition: number; offset: StartOffset }): Promise<void> {
    const p = this.#positions.get(keyOf(target.topic, target.partition));
    if (!p) throw new InvalidOptionsError(`Partition ${target.partition} of "${target.topic}" is not assigned to this reader.`);
    p.next = await this.#resolve(target.topic, target.partition, target.offset);
    this.#poke();
  }

  /** The next offset to be read from a partition. */
  position(topic: string, partition: number): string | undefined {
    return this.#positions.get(keyOf(topic, partition))?.next.toString();
  }

  #poke(): void {
    this.#generation++;
    this.#dirty = true;
    this.#wake?.();
  }

  #wakeUp(): void {
    this.#dirty = true;
    this.#wake?.();
  }

  /** Runs a storage call with the client's retry policy (retriable failures only), until stop(). */
  #retrying<T>(fn: () => Promise<T>): Promise<T> {
    return withRetry(this.#ctx.retry, fn, { signal: this.#stopped.signal });
  }

  /**
   * Reads until `stop()`. Handler errors stop the reader and reject `run`'s promise; so does a
   * storage failure that is not retriable, or still failing after the client's `retry` policy.
   */
  run(input: ReaderRunInput): Promise<void> {
    if (this.#running) throw new InvalidOptionsError('This reader is already running.');
    if (!input.eachMessage === !input.eachBatch) throw new InvalidOptionsError('reader.run needs exactly one of eachMessage or eachBatch.');
    this.#stopping = false;
    this.#running = this.#loop(input).catch((error: unknown) => {
      // stop() during a retry's backoff: a stop, not a failure.
      if (this.#stopping && error === this.#stopReason) return;
      throw error;
    }).finally(() => {
      this.#running = undefined;
    });
    return this.#running;
  }

  async #loop(input: ReaderRunInput): Promise<void> {
    await this.#ctx.ensureConnected();
    const topics = () => [...new Set([...this.#positions.values()].map((p) => p.topic))];
    let watched = topics().join('\u0000');
    const watch = () => this.#retrying(() => this.#ctx.storage.watch(topics(), () => this.#wakeUp()));
    let unwatch = await watch();
    try {
      while (!this.#stopping) {
        if (topics().join('\u0000') !== watched) {
          await unwatch();
          watched = topics().join('\u0000');
          unwatch = await watch();
        }
        this.#dirty = false;
        let progressed = false;
        for (const p of this.#positions.values()) {
          if (this.#stopping) break;
          const from = p.next;
          const result = await this.#retrying(() =>
            this.#ctx.storage.fetch(p.topic, p.partition, from, { maxRecords: this.#maxRecords, maxBytes: this.#maxBytes }),
          );
          if (from < result.logStartOffset) {
            throw new OffsetOutOfRangeError(
              `Offset ${from} of ${p.topic}[${p.partition}] is below the log start offset ${result.logStartOffset}; seek to 'earliest' or a later offset.`,
              { topic: p.topic, partition: p.partition, offset: from.toString() },
            );
          }
          if (result.records.length === 0) continue;
          const messages = result.records.map(toKafkaMessage);
          const generation = this.#generation;
          if (input.eachBatch) {
            await input.eachBatch({
              batch: { topic: p.topic, partition: p.partition, highWatermark: result.highWatermark.toString(), messages },
            });
            if (generation === this.#generation) p.next = result.records[result.records.length - 1]!.offset + 1n;
          } else {
            for (const [i, message] of messages.entries()) {
              if (this.#stopping || generation !== this.#generation) break;
              await input.eachMessage!({ topic: p.topic, partition: p.partition, message });
              if (generation === this.#generation) p.next = result.records[i]!.offset + 1n;
            }
          }
          progressed = true;
        }
        if (!progressed && !this.#dirty && !this.#stopping) {
          await new Promise<void>((resolve) => {
            const timer = setTimeout(resolve, this.#pollIntervalMs);
            this.#wake = () => {
              clearTimeout(timer);
              resolve();
            };
          });
          this.#wake = undefined;
        }
      }
    } finally {
      await unwatch();
    }
  }

  /** Stops reading after the record in hand. */
  async stop(): Promise<void> {
    this.#stopping = true;
    const stopped = this.#stopped;
    this.#stopped = new AbortController();
    stopped.abort(this.#stopReason);
    this.#wake?.();
    await this.#running?.catch(() => {});
  }
}
