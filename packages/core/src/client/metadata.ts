import type { TopicConfig } from '../contracts/topic-config.js';
import { UnknownTopicOrPartitionError } from '../errors.js';
import type { LogStorage } from '../storage/log-storage.js';

export interface TopicMetadata {
  readonly name: string;
  readonly partitions: number;
  readonly config: TopicConfig;
  readonly fetchedAt: number;
}

/**
 * Topic metadata cached per client (Kafka's `metadata.max.age.ms`): producers read partition
 * counts and `max.message.bytes` from here, and refresh on an unknown-partition error.
 */
export class MetadataCache {
  readonly #storage: LogStorage<any>;
  readonly #maxAgeMs: number;
  readonly #topics = new Map<string, TopicMetadata>();
  readonly #inflight = new Map<string, Promise<TopicMetadata>>();

  constructor(storage: LogStorage<any>, maxAgeMs: number) {
    this.#storage = storage;
    this.#maxAgeMs = maxAgeMs;
  }

  async get(topic: string, options: { refresh?: boolean } = {}): Promise<TopicMetadata> {
    const cached = this.#topics.get(topic);
    if (cached && !options.refresh && Date.now() - cached.fetchedAt < this.#maxAgeMs) return cached;
    let pending = this.#inflight.get(topic);
    if (!pending) {
      pending = this.#load(topic).finally(() => this.#inflight.delete(topic));
      this.#inflight.set(topic, pending);
    }
    return pending;
  }

  async #load(topic: string): Promise<TopicMetadata> {
    const [description] = await this.#storage.describeTopics([topic]).catch((error: unknown) => {
      this.#topics.delete(topic);
      if (error instanceof UnknownTopicOrPartitionError) {
        throw new UnknownTopicOrPartitionError(
          `Topic "${topic}" does not exist. Create it first: admin.createTopics({ topics: [{ topic: '${topic}', numPartitions: 1 }] }).`,
          { topic, cause: error },
        );
      }
      throw error;
    });
    const meta = { ...description!, fetchedAt: Date.now() };
    this.#topics.set(topic, meta);
    return meta;
  }

  /** The cached metadata of a topic, if any (never loads). */
  peek(topic: string): TopicMetadata | undefined {
    return this.#topics.get(topic);
  }

  invalidate(topic?: string): void {
    if (topic === undefined) this.#topics.clear();
    else this.#topics.delete(topic);
  }
}
