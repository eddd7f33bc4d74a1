/**
 * Lag metrics for Prometheus, computed on scrape.
 *
 * ## Design note
 *
 * Every figure comes from one `admin.describeLag()` call per scrape: the store reads watermarks
 * and every group's positions at one moment (one SQL statement on PostgreSQL), with the database
 * clock for lag in seconds, however many groups and partitions there are. The metrics are
 * prom-client gauges whose `collect` hooks all await the same collection, so:
 *
 * - **one read per scrape**: prom-client collects a registry's metrics concurrently, and they all
 *   join the collection the first of them started;
 * - **no pile-up**: concurrent scrapes join the collection in flight, and a read that outlives its
 *   scrape's deadline stays the only read: later scrapes wait on it (each with its own deadline)
 *   instead of starting another, so a slow database never gets a growing queue of lag queries;
 * - **failures are loud**: a failed or timed-out collection rejects every gauge's `collect`, so
 *   `registry.metrics()` rejects and the HTTP endpoint answers 500 (Prometheus then records
 *   `up == 0` for the target). Data gauges are emptied on failure, never left stale and never
 *   zeroed; `annals_up` goes to 0 and `annals_scrape_errors_total` counts the failure, visible on
 *   the next successful scrape — or on the failing one with `onError: 'omit'`, which answers with
 *   only those health series instead of failing (for a registry shared with other metrics).
 *
 * Labels are the group, topic and partition only (kafka_exporter's `consumergroup`, `topic`,
 * `partition`): never member or client ids, whose values change with every restart.
 */
import { AnnalsError, InvalidOptionsError, type Annals, type LagDescription } from '@annals/core';
import { Counter, Gauge, register as defaultRegistry, type Registry } from 'prom-client';

/** Options of {@link registerAnnalsMetrics}. */
export interface AnnalsMetricsInput {
  /** The registry to register the metrics in. @default prom-client's default registry (`register`) */
  readonly registry?: Registry;
  /** Consumer groups to report. @default 'all' (every group with members or committed offsets) */
  readonly groups?: readonly string[] | 'all';
  /** Topics to report (their watermarks, and group lag on them only). @default 'all' */
  readonly topics?: readonly string[] | 'all';
  /** Prefix of every metric name; `''` or a valid metric-name start ending in `_`. @default 'annals_' */
  readonly prefix?: string;
  /**
   * Longest a collection may take, in milliseconds; past it the scrape fails with
   * {@link MetricsCollectionTimeoutError}. Keep it below Prometheus's `scrape_timeout` (10 s by default).
   * @default 5000
   */
  readonly timeoutMs?: number;
  /**
   * What a failed collection does to the scrape: `'throw'` fails it (`registry.metrics()` rejects,
   * `serveMetrics` answers 500); `'omit'` answers with the Annals health series only
   * (`annals_up 0`, `annals_scrape_errors_total`), no lag series — for a registry that also holds
   * metrics which must survive a database outage.
   * @default 'throw'
   */
  readonly onError?: 'throw' | 'omit';
}

/** Resolved {@link AnnalsMetricsInput}. */
export interface AnnalsMetricsOptions {
  readonly registry: Registry;
  readonly groups: readonly string[] | 'all';
  readonly topics: readonly string[] | 'all';
  readonly prefix: string;
  readonly timeoutMs: number;
  readonly onError: 'throw' | 'omit';
}

/** The handle {@link registerAnnalsMetrics} returns. */
export interface AnnalsMetrics {
  readonly options: AnnalsMetricsOptions;
  /** The full names of the registered metrics. */
  readonly metricNames: readonly string[];
  /**
   * Runs a collection now — or joins the one in flight — and resolves with the figures it set.
   * Rejects as a scrape would (whatever `onError` says).
   */
  collect(): Promise<LagDescription>;
  /** Removes the metrics from the registry. Idempotent. */
  unregister(): void;
}

/** A metrics collection did not finish within `timeoutMs`. Retriable: the next scrape tries again. */
export class MetricsCollectionTimeoutError extends AnnalsError {
  readonly code = 'REQUEST_TIMED_OUT' as const;
  override readonly retriable = true;
}

const PREFIX = /^(?:[a-zA-Z_:][a-zA-Z0-9_:]*_)?$/;

function resolveOptions(input: AnnalsMetricsInput): AnnalsMetricsOptions {
  const names = (value: unknown, what: string): readonly string[] | 'all' => {
    if (value === undefined || value === 'all') return 'all';
    if (!Array.isArray(value) || value.some((v) => typeof v !== 'string' || v.length === 0)) {
      throw new InvalidOptionsError(`registerAnnalsMetrics: ${what} must be 'all' or an array of non-empty names.`);
    }
    return Object.freeze([...new Set(value as string[])]);
  };
  const prefix = input.prefix ?? 'annals_';
  if (typeof prefix !== 'string' || !PREFIX.test(prefix)) {
    throw new InvalidOptionsError(`registerAnnalsMetrics: prefix must be '' or match [a-zA-Z_:][a-zA-Z0-9_:]* and end in '_', got ${JSON.stringify(prefix)}.`);
  }
  const timeoutMs = input.timeoutMs ?? 5000;
  if (!Number.isSafeInteger(timeoutMs) || timeoutMs < 1) {
    throw new InvalidOptionsError(`registerAnnalsMetrics: timeoutMs must be a positive integer, got ${String(input.timeoutMs)}.`);
  }
  const onError = input.onError ?? 'throw';
  if (onError !== 'throw' && onError !== 'omit') {
    throw new InvalidOptionsError(`registerAnnalsMetrics: onError must be 'throw' or 'omit', got ${JSON.stringify(input.onError)}.`);
  }
  return Object.freeze({
    registry: input.registry ?? defaultRegistry,
    groups: names(input.groups, 'groups'),
    topics: names(input.topics, 'topics'),
    prefix,
    timeoutMs,
    onError,
  });
}

function withDeadline<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new MetricsCollectionTimeoutError(`Collecting Annals metrics took longer than ${ms} ms (timeoutMs); the scrape fails.`)),
      ms,
    );
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

/**
 * Registers Annals' lag metrics (kafka_exporter's names, `annals_` prefix) in a prom-client
 * registry. They are computed on scrape from one `admin.describeLag()` read; see the design note
 * of this module and `docs/monitoring.md` for the list, units and labels.
 *
 * @example
 * ```ts
 * import { Registry } from 'prom-client';
 * import { registerAnnalsMetrics, serveMetrics } from '@annals/prometheus';
 *
 * const registry = new Registry();
 * registerAnnalsMetrics(annals, { registry, groups: ['payment-service'] });
 * const server = await serveMetrics({ registry, port: 9464 }); // http://127.0.0.1:9464/metrics
 * ```
 */
export function registerAnnalsMetrics(annals: Pick<Annals<any>, 'admin'>, input: AnnalsMetricsInput = {}): AnnalsMetrics {
  const options = resolveOptions(input);
  const { registry, prefix } = options;
  const admin = annals.admin();

  let read: Promise<LagDescription> | undefined;
  let collection: Promise<LagDescription> | undefined;

  const data: Array<Gauge<string>> = [];
  const gauge = <L extends string>(name: string, help: string, labelNames: readonly L[]): Gauge<L> => {
    const g = new Gauge<L>({
      name: prefix + name,
      help,
      labelNames,
      registers: [],
      // `this` is the gauge; every data gauge waits for the shared collection, which fills them all.
      async collect() {
        await collectShared(true);
      },
    });
    data.push(g as Gauge<string>);
    return g;
  };
  const lag = gauge('consumergroup_lag', 'Records the consumer group has not consumed yet: log end offset - committed offset (- log start offset when nothing is committed).', ['consumergroup', 'topic', 'partition']);
  const lagSum = gauge('consumergroup_lag_sum', 'Sum of the consumer group lag over the partitions of a topic, in records.', ['consumergroup', 'topic']);
  const lagSeconds = gauge('consumergroup_lag_seconds', "Seconds since the first unconsumed record's timestamp, by the database clock; 0 when caught up.", ['consumergroup', 'topic', 'partition']);
  const currentOffset = gauge('consumergroup_current_offset', "The consumer group's committed offset (the next offset it will consume); absent where it has committed none.", ['consumergroup', 'topic', 'partition']);
  const members = gauge('consumergroup_members', 'Live members of the consumer group (heartbeat within their session timeout).', ['consumergroup']);
  const partitions = gauge('topic_partitions', 'Partitions of the topic.', ['topic']);
  const logEnd = gauge('topic_partition_current_offset', 'Log end offset of the partition: the offset the next record will take.', ['topic', 'partition']);
  const logStart = gauge('topic_partition_oldest_offset', 'Log start offset of the partition: the oldest offset still in the log.', ['topic', 'partition']);

  const up = new Gauge({
    name: `${prefix}up`,
    help: 'Whether the last collection of Annals metrics succeeded (1) or failed (0).',
    registers: [],
    async collect() {
      await collectShared(false);
    },
  });
  const errors = new Counter({
    name: `${prefix}scrape_errors_total`,
    help: 'Collections of Annals metrics that failed (database unreachable, timeout, ...).',
    registers: [],
    async collect() {
      await collectShared(false);
    },
  });
  const duration = new Gauge({
    name: `${prefix}scrape_duration_seconds`,
    help: 'How long the last collection of Annals metrics took, in seconds.',
    registers: [],
    async collect() {
      await collectShared(false);
    },
  });
  up.set(0);

  const fill = (d: LagDescription): void => {
    for (const g of data) g.reset();
    const partitionCounts = new Map<string, number>();
    for (const p of d.partitions) {
      const labels = { topic: p.topic, partition: String(p.partition) };
      logEnd.set(labels, Number(p.high));
      logStart.set(labels, Number(p.low));
      partitionCounts.set(p.topic, (partitionCounts.get(p.topic) ?? 0) + 1);
    }
    for (const [topic, count] of partitionCounts) partitions.set({ topic }, count);
    for (const g of d.groups) {
      members.set({ consumergroup: g.groupId }, g.liveMembers);
      const sums = new Map<string, number>();
      for (const p of g.partitions) {
        const labels = { consumergroup: g.groupId, topic: p.topic, partition: String(p.partition) };
        const records = Number(p.lag);
        lag.set(labels, records);
        lagSeconds.set(labels, p.lagSeconds);
        if (p.currentOffset !== null) currentOffset.set(labels, Number(p.currentOffset));
        sums.set(p.topic, (sums.get(p.topic) ?? 0) + records);
      }
      for (const [topic, sum] of sums) lagSum.set({ consumergroup: g.groupId, topic }, sum);
    }
  };

  const readShared = (): Promise<LagDescription> => {
    // The read itself is shared until it settles, even past a scrape's deadline (no pile-up).
    read ??= admin
      .describeLag({
        ...(options.groups === 'all' ? {} : { groupIds: options.groups }),
        ...(options.topics === 'all' ? {} : { topics: options.topics }),
        signal: AbortSignal.timeout(options.timeoutMs),
      })
      .finally(() => {
        read = undefined;
      });
    return read;
  };

  const collectNow = (): Promise<LagDescription> => {
    collection ??= (async () => {
      const started = performance.now();
      try {
        const d = await withDeadline(readShared(), options.timeoutMs);
        fill(d);
        up.set(1);
        return d;
      } catch (error) {
        for (const g of data) g.reset();
        up.set(0);
        errors.inc();
        throw error;
      } finally {
        duration.set((performance.now() - started) / 1000);
      }
    })().finally(() => {
      collection = undefined;
    });
    return collection;
  };

  async function collectShared(failsScrape: boolean): Promise<void> {
    try {
      await collectNow();
    } catch (error) {
      if (failsScrape && options.onError === 'throw') throw error;
    }
  }

  const all = [...data, up, errors, duration];
  const metricNames = Object.freeze(all.map((m) => (m as unknown as { name: string }).name));
  for (const name of metricNames) {
    if (registry.getSingleMetric(name)) {
      throw new InvalidOptionsError(`registerAnnalsMetrics: the registry already has a metric named ${name} (register once per registry, or use another prefix).`);
    }
  }
  for (const m of all) registry.registerMetric(m);

  let registered = true;
  return Object.freeze({
    options,
    metricNames,
    collect: collectNow,
    unregister(): void {
      if (!registered) return;
      registered = false;
      for (const name of metricNames) if (registry.getSingleMetric(name)) registry.removeSingleMetric(name);
    },
  });
}
