import { InvalidOptionsError, isRetriable } from '../errors.js';

/** Retry policy for retriable failures (KafkaJS's `retry` shape). */
export interface RetryInput {
  /** How many times a retriable failure is retried. @default 5 */
  readonly retries?: number;
  /** First backoff, in milliseconds. @default 300 */
  readonly initialRetryTime?: number;
  /** Longest backoff, in milliseconds. @default 30000 */
  readonly maxRetryTime?: number;
  /** Randomization factor of each backoff (0–1). @default 0.2 */
  readonly factor?: number;
  /** Growth of the backoff per attempt. @default 2 */
  readonly multiplier?: number;
}

export interface Retry {
  readonly retries: number;
  readonly initialRetryTime: number;
  readonly maxRetryTime: number;
  readonly factor: number;
  readonly multiplier: number;
}

export function resolveRetry(input: RetryInput = {}, where = 'retry'): Retry {
  const r = {
    retries: input.retries ?? 5,
    initialRetryTime: input.initialRetryTime ?? 300,
    maxRetryTime: input.maxRetryTime ?? 30_000,
    factor: input.factor ?? 0.2,
    multiplier: input.multiplier ?? 2,
  };
  if (!Number.isInteger(r.retries) || r.retries < 0) throw new InvalidOptionsError(`${where}.retries must be an integer ≥ 0.`);
  if (!(r.initialRetryTime > 0)) throw new InvalidOptionsError(`${where}.initialRetryTime must be > 0.`);
  if (!(r.maxRetryTime >= r.initialRetryTime)) throw new InvalidOptionsError(`${where}.maxRetryTime must be ≥ initialRetryTime.`);
  if (!(r.factor >= 0 && r.factor <= 1)) throw new InvalidOptionsError(`${where}.factor must be between 0 and 1.`);
  if (!(r.multiplier >= 1)) throw new InvalidOptionsError(`${where}.multiplier must be ≥ 1.`);
  return Object.freeze(r);
}

/** The backoff before retry number `attempt` (0-based): exponential, capped, with jitter. */
export function backoff(retry: Retry, attempt: number): number {
  const base = Math.min(retry.maxRetryTime, retry.initialRetryTime * retry.multiplier ** attempt);
  const jitter = base * retry.factor * (Math.random() * 2 - 1);
  return Math.max(0, Math.round(base + jitter));
}

export const sleep = (ms: number, signal?: AbortSignal): Promise<void> =>
  new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });

/**
 * Runs `fn`, retrying while it throws a retriable error (or one `alsoRetry` accepts), with backoff.
 * The last error is thrown as is.
 */
export async function withRetry<T>(
  retry: Retry,
  fn: (attempt: number) => Promise<T>,
  options: { alsoRetry?: (error: unknown) => boolean; signal?: AbortSignal } = {},
): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await fn(attempt);
    } catch (error) {
      const again = isRetriable(error) || (options.alsoRetry?.(error) ?? false);
      if (!again || attempt >= retry.retries) throw error;
      await sleep(backoff(retry, attempt), options.signal);
    }
  }
}
