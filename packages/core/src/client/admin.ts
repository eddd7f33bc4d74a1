/** The admin client: KafkaJS's `admin()` shapes over the storage port. */
import type { TopicContract } from '../contracts/topic.js';
import { isTopicContract } from '../contracts/topic.js';
import { resolveTopicConfig, topicConfigEntries, type ConfigEntry } from '../contracts/topic-config.js';
import { validateTopicName } from '../contracts/topic-name.js';
import { InvalidConfigError, InvalidOptionsError, InvalidPartitionsError, TopicAlreadyExistsError } from '../errors.js';
import type { TopicSpec } from '../storage/log-storage.js';
import type { ClientContext } from './context.js';
import { withRetry } from './retry.js';

/** A topic to create (KafkaJS's `ITopicConfig`). */
export interface ITopicConfig {
  readonly topic: string;
  /** @default 1 */
  readonly numPartitions?: number;
  /** Accepted for KafkaJS compatibility: PostgreSQL's own replication provides durability. */
  readonly replicationFactor?: number;
  readonly configEntries?: readonly ConfigEntry[];
}

export interface CreateTopicsOptions {
  readonly topics: ReadonlyArray<ITopicConfig | TopicContract>;
  /** Check the request and create nothing. @default false */
  readonly validateOnly?: boolean;
  /**
   * Resolve `false` instead of throwing `TopicAlreadyExistsError` when a topic exists (KafkaJS's
   * behaviour). Nothing is created if any topic exists either way. @default false
   */
  readonly ignoreExisting?: boolean;
  /** Accepted for KafkaJS compatibility; ignored. */
  readonly waitForLeaders?: boolean;
  readonly timeout?: number;
}

export interface PartitionMetadata {
  readonly partitionId: number;
  readonly leader: number;
  readonly replicas: number[];
  readonly isr: number[];
  readonly partitionErrorCode: number;
}

export interface TopicMetadataDescription {
  readonly name: string;
  readonly partitions: PartitionMetadata[];
}

export interface DescribeConfigResource {
  readonly type: typeof ConfigResourceTypes.TOPIC | 'topic';
  readonly name: string;
  readonly configNames?: readonly string[];
}

export interface AlterConfigResource {
  readonly type: typeof ConfigResourceTypes.TOPIC | 'topic';
  readonly name: string;
  readonly configEntries: readonly ConfigEntry[];
}

/** KafkaJS's `ConfigResourceTypes` (only topics have configs in Annals). */
export const ConfigResourceTypes = Object.freeze({ TOPIC: 2 as const });

export interface ConfigEntryDescription {
  readonly configName: string;
  readonly configValue: string;
  readonly isDefault: boolean;
  readonly readOnly: boolean;
  readonly isSensitive: boolean;
  readonly configSource: number;
  readonly configSynonyms: never[];
}

export interface DescribeConfigResponse {
  readonly resources: Array<{
    readonly resourceType: number;
    readonly resourceName: string;
    readonly errorCode: number;
    readonly errorMessage: string | null;
    readonly configEntries: ConfigEntryDescription[];
  }>;
  readonly throttleTime: number;
}

function topicSpecOf(t: ITopicConfig | TopicContract): TopicSpec {
  if (isTopicContract(t)) return { name: t.name, partitions: t.partitions, config: t.config };
  if (!t || typeof t !== 'object') throw new InvalidOptionsError('createTopics: every entry of topics must be an object.');
  validateTopicName(t.topic);
  const partitions = t.numPartitions ?? 1;
  if (!Number.isSafeInteger(partitions) || partitions < 1) {
    throw new InvalidPartitionsError(`Topic "${t.topic}": numPartitions must be a positive integer, got ${String(t.numPartitions)}.`, {
      topic: t.topic,
    });
  }
  return { name: t.topic, partitions, config: resolveTopicConfig(t.configEntries, undefined, t.topic) };
}

function checkResourceType(type: unknown, name: string): void {
  if (type !== ConfigResourceTypes.TOPIC && type !== 'topic') {
    throw new InvalidConfigError(`Only topic configs exist in Annals (resource "${name}" has type ${String(type)}).`);
  }
}

/** The admin client. Create it with `annals.admin()`. */
export class Admin {
  readonly #ctx: ClientContext<any>;

  /** @internal Use `annals.admin()`. */
  constructor(ctx: ClientContext<any>) {
    this.#ctx = ctx;
  }

  /** Connects the client's storage (idempotent). */
  async connect(): Promise<void> {
    await this.#ctx.ensureConnected();
  }

  /** Nothing to release: the client's storage is closed by `annals.disconnect()`. */
  async disconnect(): Promise<void> {}

  #run<T>(fn: () => Promise<T>): Promise<T> {
    return this.#ctx.ensureConnected().then(() => withRetry(this.#ctx.retry, fn));
  }

  /**
   * Creates topics, atomically: if one cannot be created, none is.
   * Accepts KafkaJS topic configs or `defineTopic(...)` contracts.
   *
   * @example
   * ```ts
   * await admin.createTopics({ topics: [{ topic: 'orders', numPartitions: 6, configEntries: [{ name: 'retention.ms', value: '604800000' }] }] });
   * await admin.createTopics({ topics: [ordersTopic] }); // a defineTopic contract
   * ```
   */
  async createTopics(options: CreateTopicsOptions): Promise<boolean> {
    const specs = (options?.topics ?? []).map(topicSpecOf);
    const names = new Set<string>();
    for (const s of specs) {
      if (names.has(s.name)) throw new InvalidOptionsError(`createTopics lists topic "${s.name}" twice.`, { topic: s.name });
      names.add(s.name);
    }
    if (options.validateOnly || specs.length === 0) return true;
    try {
      await this.#run(() => this.#ctx.storage.createTopics(specs));
    } catch (error) {
      if (options.ignoreExisting && error instanceof TopicAlreadyExistsError) return false;
      throw error;
    }
    for (const s of specs) this.#ctx.metadata.invalidate(s.name);
    return true;
  }

  /** Deletes topics and their records. Unknown topics throw, and then nothing is deleted. */
  async deleteTopics(options: { readonly topics: readonly string[]; readonly timeout?: number }): Promise<void> {
    await this.#run(() => this.#ctx.storage.deleteTopics(options.topics));
    for (const t of options.topics) this.#ctx.metadata.invalidate(t);
  }

  /** Increases partition counts (never decreases: keys would move). */
  async createPartitions(options: {
    readonly topicPartitions: ReadonlyArray<{ readonly topic: string; readonly count: number }>;
  }): Promise<boolean> {
    for (const { topic, count } of options.topicPartitions) {
      if (!Number.isSafeInteger(count) || count < 1) {
        throw new InvalidPartitionsError(`createPartitions: count for "${topic}" must be a positive integer.`, { topic });
      }
      await this.#run(() => this.#ctx.storage.createPartitions(topic, count));
      this.#ctx.metadata.invalidate(topic);
    }
    return true;
  }

  /** Names of all topics. */
  async listTopics(): Promise<string[]> {
    return this.#run(() => this.#ctx.storage.listTopics());
  }

  /** KafkaJS's `fetchTopicMetadata`: partitions per topic (all topics when `topics` is omitted). */
  async fetchTopicMetadata(options: { readonly topics?: readonly string[] } = {}): Promise<{ topics: TopicMetadataDescription[] }> {
    const described = await this.#run(() => this.#ctx.storage.describeTopics(options.topics));
    return {
      topics: described.map((d) => ({
        name: d.name,
        partitions: Array.from({ length: d.partitions }, (_, partitionId) => ({
          partitionId,
          leader: 0,
          replicas: [0],
          isr: [0],
          partitionErrorCode: 0,
        })),
      })),
    };
  }

  /** Topic configs with Kafka's keys. */
  async describeConfigs(options: {
    readonly resources: readonly DescribeConfigResource[];
    readonly includeSynonyms?: boolean;
  }): Promise<DescribeConfigResponse> {
    const resources = [];
    for (const r of options.resources) {
      checkResourceType(r.type, r.name);
      const [d] = await this.#run(() => this.#ctx.storage.describeTopics([r.name]));
      const defaults = new Map(topicConfigEntries(resolveTopicConfig(undefined)).map((e) => [e.name, e.value]));
      const wanted = r.configNames ? new Set(r.configNames) : undefined;
      resources.push({
        resourceType: ConfigResourceTypes.TOPIC,
        resourceName: r.name,
        errorCode: 0,
        errorMessage: null,
        configEntries: topicConfigEntries(d!.config)
          .filter((e) => !wanted || wanted.has(e.name))
          .map((e) => ({
            configName: e.name,
            configValue: e.value ?? '',
            isDefault: defaults.get(e.name) === e.value,
            readOnly: false,
            isSensitive: false,
            configSource: defaults.get(e.name) === e.value ? 5 : 1,
            configSynonyms: [],
          })),
      });
    }
    return { resources, throttleTime: 0 };
  }

  /** Changes topic configs (validated per key; a `null` value restores the default). */
  async alterConfigs(options: { readonly resources: readonly AlterConfigResource[]; readonly validateOnly?: boolean }): Promise<void> {
    for (const r of options.resources) {
      checkResourceType(r.type, r.name);
      // Validate before touching the store, so a bad entry never half-applies.
      resolveTopicConfig(r.configEntries, undefined, r.name);
      if (options.validateOnly) continue;
      await this.#run(() => this.#ctx.storage.alterTopicConfig(r.name, (current) => resolveTopicConfig(r.configEntries, current, r.name)));
      this.#ctx.metadata.invalidate(r.name);
    }
  }

  /** Per partition: the low watermark (log start offset) and high watermark (log end offset), as strings. */
  async fetchTopicOffsets(topic: string): Promise<Array<{ partition: number; offset: string; high: string; low: string }>> {
    const marks = await this.#run(() => this.#ctx.storage.fetchWatermarks(topic));
    return marks.map((m) => ({ partition: m.partition, offset: m.high.toString(), high: m.high.toString(), low: m.low.toString() }));
  }

  /** Per partition, the first offset whose timestamp is at or after `timestamp` (ms), else the high watermark. */
  async fetchTopicOffsetsByTimestamp(topic: string, timestamp?: number): Promise<Array<{ partition: number; offset: string }>> {
    const at = timestamp ?? Date.now();
    const offsets = await this.#run(() => this.#ctx.storage.fetchOffsetsByTimestamp(topic, at));
    return offsets.map((o) => ({ partition: o.partition, offset: o.offset.toString() }));
  }
}
