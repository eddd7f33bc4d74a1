/**
 * The cleaner: retention and log compaction, run in-process by default, one per database.
 *
 * Every `Annals` client starts one when it connects (unless `cleaner: false`); the clients of a
 * database elect one of them (the store's lease — an advisory lock in Postgres) and only that one
 * cleans, every `intervalMs`. If its process dies, another takes over at its next tick. Run it on
 * its own instead with `annals cleaner run` or {@link Cleaner.runOnce}.
 */
import { CleanerLeaseLostError, InvalidOptionsError } from '../errors.js';
import type { CleanerLease, CleanPassReport, PartitionCleanReport } from '../storage/cleaner-storage.js';
import type { LogStorage } from '../storage/log-storage.js';

/** Options of the in-process cleaner: `new Annals({ cleaner: { … } })`, or `cleaner: false`. */
export interface CleanerInput {
  /** Run the cleaner in this process (the clients of a database elect one). @default true */
  readonly enabled?: boolean;
  /** Milliseconds between passes; also how long a standby waits before trying to take over. @default 30000 */
  readonly intervalMs?: number;
  /** Records examined or removed per statement: each is a short transaction of its own. @default 5000 */
  readonly chunkRecords?: number;
  /** Called after each pass this process ran. */
  readonly onPass?: (report: CleanPassReport) => void;
  /**
   * Called when a pass fails; the next tick tries again.
   * @default writes a warning with the error to stderr
   */
  readonly onError?: (error: unknown) => void;
}

/** Options of {@link Cleaner.runOnce}. */
export interface CleanerRunOptions {
  /** Only these topics (all when omitted). */
  readonly topics?: readonly string[];
  /**
   * Judge time as if the database clock read this (a Date or ms since the epoch). For tests and
   * drills only — e.g. to see what retention will do tomorrow. Omit it in production.
   */
  readonly now?: Date | number;
  /** Stops the pass between chunks; what was done stays done. */
  readonly signal?: AbortSignal;
  /** Records examined or removed per statement in this pass. @default the client's `cleaner.chunkRecords` */
  readonly chunkRecords?: number;
  /** Progress, after each partition. */
  readonly onProgress?: (progress: { readonly done: number; readonly partition: PartitionCleanReport }) => void;
}

/** What {@link Cleaner.runOnce} did: a pass, or nothing because another process holds the lease. */
export type CleanerRunResult =
  | { readonly ran: true; readonly report: CleanPassReport }
  | { readonly ran: false; readonly reason: 'another-cleaner-holds-the-lease' | 'store-does-not-clean' };

interface ResolvedCleanerOptions {
  readonly enabled: boolean;
  readonly intervalMs: number;
  readonly chunkRecords: number;
  readonly onPass: ((report: CleanPassReport) => void) | undefined;
  readonly onError: (error: unknown) => void;
}

export function resolveCleanerOptions(input: CleanerInput | false | undefined): ResolvedCleanerOptions {
  const o = input === false ? { enabled: false } : (input ?? {});
  const intervalMs = o.intervalMs ?? 30_000;
  if (!Number.isSafeInteger(intervalMs) || intervalMs < 10) {
    throw new InvalidOptionsError(`cleaner.intervalMs must be an integer ≥ 10 (ms), got ${String(o.intervalMs)}.`);
  }
  const chunkRecords = o.chunkRecords ?? 5_000;
  if (!Number.isSafeInteger(chunkRecords) || chunkRecords < 1) {
    throw new InvalidOptionsError(`cleaner.chunkRecords must be an integer ≥ 1, got ${String(o.chunkRecords)}.`);
  }
  return {
    enabled: o.enabled ?? true,
    intervalMs,
    chunkRecords,
    onPass: o.onPass,
    onError:
      o.onError ??
      ((error) => {
        console.warn(`[annals] cleaner pass failed; retrying in ${intervalMs} ms:`, error);
      }),
  };
}

/** The cleaner of one `Annals` client. Get it as `annals.cleaner`. */
export class Cleaner {
  readonly #storage: LogStorage<unknown>;
  readonly #options: ResolvedCleanerOptions;
  readonly #ensureConnected: () => Promise<void>;
  #lease: CleanerLease | undefined;
  /** Passes and lease changes run one at a time, in order. */
  #chain: Promise<unknown> = Promise.resolve();
  #timer: ReturnType<typeof setTimeout> | undefined;
  #running = false;

  /** @internal Created by `Annals`. */
  constructor(storage: LogStorage<unknown>, options: ResolvedCleanerOptions, ensureConnected: () => Promise<void>) {
    this.#storage = storage;
    this.#options = options;
    this.#ensureConnected = ensureConnected;
  }

  /** True while this process holds the database's cleaner lease. */
  get leading(): boolean {
    return this.#lease !== undefined && !this.#lease.lost;
  }

  /** True when the interval loop is running. */
  get started(): boolean {
    return this.#running;
  }

  /**
   * Starts the interval loop (the first pass after `intervalMs`). Idempotent. `Annals` calls it on
   * connect unless the cleaner is disabled.
   */
  start(): void {
    if (this.#running || !this.#storage.cleaner) return;
    this.#running = true;
    this.#schedule();
  }

  /** Stops the loop, waits for a pass in progress, and gives the lease up. Idempotent. */
  async stop(): Promise<void> {
    this.#running = false;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#serial(async () => {
      const lease = this.#lease;
      this.#lease = undefined;
      await lease?.release();
    });
  }

  /**
   * Runs one pass now, if this process holds the lease or can take it; otherwise resolves with
   * `ran: false` (another process is the cleaner). The lease is kept when the loop is running,
   * and given back otherwise.
   *
   * @example
   * ```ts
   * const result = await annals.cleaner.runOnce();
   * if (result.ran) console.log(result.report.partitions.filter((p) => p.logStartMovedBy));
   * ```
   */
  runOnce(options: CleanerRunOptions = {}): Promise<CleanerRunResult> {
    const chunk = options.chunkRecords;
    if (chunk !== undefined && (!Number.isSafeInteger(chunk) || chunk < 1)) {
      return Promise.reject(new InvalidOptionsError(`runOnce: chunkRecords must be an integer ≥ 1, got ${String(chunk)}.`));
    }
    return this.#serial(() => this.#pass(options));
  }

  async #pass(options: CleanerRunOptions): Promise<CleanerRunResult> {
    const store = this.#storage.cleaner;
    if (!store) return { ran: false, reason: 'store-does-not-clean' };
    await this.#ensureConnected();
    if (this.#lease?.lost) {
      const lost = this.#lease;
      this.#lease = undefined;
      await lost.release().catch(() => {});
    }
    this.#lease ??= (await store.acquireCleaner()) ?? undefined;
    const lease = this.#lease;
    if (!lease) return { ran: false, reason: 'another-cleaner-holds-the-lease' };
    let done = 0;
    try {
      const report = await lease.clean({
        topics: options.topics,
        chunkRecords: options.chunkRecords ?? this.#options.chunkRecords,
        now: options.now === undefined ? undefined : typeof options.now === 'number' ? options.now : options.now.getTime(),
        signal: options.signal,
        onPartition: (partition) => options.onProgress?.({ done: ++done, partition }),
      });
      return { ran: true, report };
    } catch (error) {
      if (lease.lost || error instanceof CleanerLeaseLostError) {
        this.#lease = undefined;
        await lease.release().catch(() => {});
      }
      throw error;
    } finally {
      if (!this.#running && this.#lease) {
        const held = this.#lease;
        this.#lease = undefined;
        await held.release();
      }
    }
  }

  #schedule(): void {
    if (!this.#running) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.#serial(async () => {
        if (!this.#running) return;
        try {
          const result = await this.#pass({});
          if (result.ran) this.#options.onPass?.(result.report);
        } catch (error) {
          this.#options.onError(error);
        }
      }).finally(() => this.#schedule());
    }, this.#options.intervalMs);
    this.#timer.unref?.();
  }

  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.#chain.then(fn, fn);
    this.#chain = next.catch(() => {});
    return next;
  }
}
