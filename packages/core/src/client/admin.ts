/** The admin client: KafkaJS's `admin()` shapes over the storage port. */
import type { TopicContract } from '../contracts/topic.js';
import { isTopicContract } from '../contracts/topic.js';
import { resolveTopicConfig, topicConfigEntries, type ConfigEntry } from '../contracts/topic-config.js';
import { validateTopicName } from '../contracts/topic-name.js';
import {
  GroupNotEmptyError,
  InvalidConfigError,
  InvalidOptionsError,
  InvalidPartitionsError,
  TopicAlreadyExistsError,
} from '../errors.js';
import type { GroupPartitionState, TopicSpec } from '../storage/log-storage.js';
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

/** One row of `kafka-consumer-groups --describe`, as data. */
export interface GroupLag {
  readonly topic: string;
  readonly partition: number;
  /** The committed offset (next to consume), or null when the group has none. */
  readonly currentOffset: string | null;
  readonly logEndOffset: string;
  readonly logStartOffset: string;
  /** Records not yet consumed: log end offset − committed offset (or − log start when none). */
  readonly lag: string;
  /** Now minus the timestamp of the first unconsumed record; 0 when caught up. */
  readonly lagSeconds: number;
  /** The member that owns the partition now, if any. */
  readonly consumerId: string | null;
}

/** Options of {@link Admin.describeLag}. */
export interface DescribeLagOptions {
  /** Consumer groups to describe. @default every group `listGroups` lists */
  readonly groupIds?: readonly string[];
  /** Topics to describe (watermarks, and group lag on these topics only). @default every topic */
  readonly topics?: readonly string[];
  /** Aborts the retries of a failing read (a scrape deadline, for example). */
  readonly signal?: AbortSignal;
}

/** Lag of every selected group and watermarks of every selected topic, read at one moment. */
export interface LagDescription {
  /** The database clock when the figures were read, in ms since the epoch: `lagSeconds` is judged by it. */
  readonly takenAt: number;
  /** Every partition of the selected topics: `low` is the log start offset, `high` the log end offset. */
  readonly partitions: ReadonlyArray<{ readonly topic: string; readonly partition: number; readonly low: string; readonly high: string }>;
  /** The selected groups that exist, sorted by id. */
  readonly groups: ReadonlyArray<{
    readonly groupId: string;
    /** Members whose heartbeat is within their session timeout. */
    readonly liveMembers: number;
    readonly partitions: readonly GroupLag[];
  }>;
}

/** One `GroupLag` row from the store's figures, with lag in seconds judged against `now` (ms). */
function groupLagOf(p: GroupPartitionState, now: number): GroupLag {
  const from = p.committedOffset === null || p.committedOffset < p.logStartOffset ? p.logStartOffset : p.committedOffset;
  const lag = p.logEndOffset > from ? p.logEndOffset - from : 0n;
  return {
    topic: p.topic,
    partition: p.partition,
    currentOffset: p.committedOffset === null ? null : p.committedOffset.toString(),
    logEndOffset: p.logEndOffset.toString(),
    logStartOffset: p.logStartOffset.toString(),
    lag: lag.toString(),
    // A producer may stamp records in the future: lag in time never goes below 0.
    lagSeconds: lag > 0n && p.firstUnconsumedTimestamp !== null ? Math.max(0, (now - p.firstUnconsumedTimestamp) / 1000) : 0,
    consumerId: p.ownerMemberId,
  };
}

/** Where `resetOffsets` moves a group. */
export type OffsetResetTarget =
  | { readonly to: 'earliest' }
  | { readonly to: 'latest' }
  | { readonly to: 'timestamp'; readonly timestamp: number }
  | { readonly to: 'offset'; readonly offset: string; readonly partitions?: readonly number[] };

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

  #run<T>(fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    return this.#ctx.ensureConnected().then(() => withRetry(this.#ctx.retry, fn, { signal }));
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
    if (specs.length === 0) return true;
    if (options.validateOnly) {
      // As Kafka's validateOnly: the answer creating would give, an existing topic included.
      const existing = new Set(await this.#run(() => this.#ctx.storage.listTopics()));
      const taken = specs.find((s) => existing.has(s.name));
      if (!taken) return true;
      if (options.ignoreExisting) return false;
      throw new TopicAlreadyExistsError(`Topic "${taken.name}" already exists. Nothing was created (validateOnly).`, { topic: taken.name });
    }
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

  /** All consumer groups (KafkaJS's shape). */
  async listGroups(): Promise<{ groups: Array<{ groupId: string; protocolType: string }> }> {
    const ids = await this.#run(() => this.#ctx.storage.listGroups());
    return { groups: ids.map((groupId) => ({ groupId, protocolType: 'consumer' })) };
  }

  /** Groups with their live members and what each owns (KafkaJS's shape, plus `partitions`). */
  async describeGroups(groupIds: readonly string[]) {
    const groups = [];
    for (const groupId of groupIds) {
      const d = await this.#run(() => this.#ctx.storage.describeGroup(groupId));
      groups.push({
        groupId,
        state: d.members.length > 0 ? 'Stable' : 'Empty',
        protocol: 'annals',
        protocolType: 'consumer',
        members: d.members.map((m) => ({
          memberId: m.memberId,
          clientId: m.clientId,
          clientHost: m.clientHost,
          topics: [...m.topics],
          lastHeartbeat: m.heartbeatAt,
          assignment: d.partitions
            .filter((p) => p.ownerMemberId === m.memberId)
            .map((p) => ({ topic: p.topic, partition: p.partition, generation: p.generation!.toString() })),
        })),
      });
    }
    return { groups };
  }

  /** Committed offsets of a group (KafkaJS's shape); `-1` where the group has none. */
  async fetchOffsets(options: { readonly groupId: string; readonly topics?: readonly string[] }) {
    const committed = await this.#run(() => this.#ctx.storage.fetchCommittedOffsets(options.groupId, options.topics));
    const topics = options.topics ?? [...new Set(committed.map((c) => c.topic))];
    const out = [];
    for (const topic of topics) {
      const marks = await this.#run(() => this.#ctx.storage.fetchWatermarks(topic));
      out.push({
        topic,
        partitions: marks.map((m) => {
          const c = committed.find((x) => x.topic === topic && x.partition === m.partition);
          return { partition: m.partition, offset: c ? c.offset.toString() : '-1', metadata: c?.metadata ?? null };
        }),
      });
    }
    return out;
  }

  /**
   * Lag per partition — the seed's `kafka-consumer-groups --describe` table as data: committed
   * offset, log end offset, lag in records and in seconds, and the owning member.
   */
  async describeGroupLag(groupId: string): Promise<GroupLag[]> {
    // describeLag, not describeGroup: one statement, and lag in seconds by the database clock.
    const { groups } = await this.describeLag({ groupIds: [groupId] });
    return [...(groups[0]?.partitions ?? [])];
  }

  /**
   * Lag of many groups and the watermarks of many topics at once, read at one moment with the
   * database clock — what lag monitoring (`@annals/prometheus`) scrapes. One storage call for
   * everything, however many groups and partitions: not one per group.
   *
   * `lagSeconds` is the database clock's now minus the timestamp of each partition's first
   * unconsumed record (0 when caught up). Unknown group ids and topic names are left out.
   *
   * @example
   * ```ts
   * const { groups } = await admin.describeLag({ groupIds: ['payment-service'] });
   * const worst = Math.max(0, ...groups.flatMap((g) => g.partitions.map((p) => p.lagSeconds)));
   * ```
   */
  async describeLag(options: DescribeLagOptions = {}): Promise<LagDescription> {
    const { groupIds, topics, signal } = options;
    const snapshot = await this.#run(
      () => this.#ctx.storage.describeLag({ ...(groupIds ? { groupIds } : {}), ...(topics ? { topics } : {}) }),
      signal,
    );
    return {
      takenAt: snapshot.now,
      partitions: snapshot.partitions.map((p) => ({ topic: p.topic, partition: p.partition, low: p.low.toString(), high: p.high.toString() })),
      groups: snapshot.groups.map((g) => ({
        groupId: g.groupId,
        liveMembers: g.liveMembers,
        partitions: g.partitions.map((p) => groupLagOf(p, snapshot.now)),
      })),
    };
  }

  /**
   * Moves an inactive group's committed offsets for a topic: to the earliest or latest offset,
   * to the first offset at or after a timestamp, or to a given offset. Refuses a group with live
   * members (`GroupNotEmptyError`): stop its consumers first.
   */
  async resetOffsets(options: { readonly groupId: string; readonly topic: string } & (OffsetResetTarget | { readonly earliest?: boolean })): Promise<void> {
    const { groupId, topic } = options;
    const target: OffsetResetTarget =
      'to' in options ? options : (options as { earliest?: boolean }).earliest ? { to: 'earliest' } : { to: 'latest' };
    const d = await this.#run(() => this.#ctx.storage.describeGroup(groupId));
    if (d.members.length > 0) {
      throw new GroupNotEmptyError(
        `Group "${groupId}" has ${d.members.length} live member(s); stop its consumers before resetting offsets.`,
        { groupId },
      );
    }
    const marks = await this.#run(() => this.#ctx.storage.fetchWatermarks(topic));
    let offsets: Array<{ partition: number; offset: bigint }>;
    if (target.to === 'earliest') offsets = marks.map((m) => ({ partition: m.partition, offset: m.low }));
    else if (target.to === 'latest') offsets = marks.map((m) => ({ partition: m.partition, offset: m.high }));
    else if (target.to === 'timestamp') {
      offsets = await this.#run(() => this.#ctx.storage.fetchOffsetsByTimestamp(topic, target.timestamp));
    } else {
      const offset = BigInt(target.offset);
      offsets = marks
        .filter((m) => !target.partitions || target.partitions.includes(m.partition))
        .map((m) => ({ partition: m.partition, offset: offset < m.low ? m.low : offset > m.high ? m.high : offset }));
    }
    await this.#run(() => this.#ctx.storage.commitOffsets(groupId, offsets.map((o) => ({ topic, partition: o.partition, offset: o.offset }))));
  }

  /** Sets an inactive group's committed offsets per partition (KafkaJS's `setOffsets`). */
  async setOffsets(options: {
    readonly groupId: string;
    readonly topic: string;
    readonly partitions: ReadonlyArray<{ partition: number; offset: string }>;
  }): Promise<void> {
    const d = await this.#run(() => this.#ctx.storage.describeGroup(options.groupId));
    if (d.members.length > 0) {
      throw new GroupNotEmptyError(`Group "${options.groupId}" has live members; stop its consumers before setting offsets.`, {
        groupId: options.groupId,
      });
    }
    await this.#run(() =>
      this.#ctx.storage.commitOffsets(
        options.groupId,
        options.partitions.map((p) => ({ topic: options.topic, partition: p.partition, offset: BigInt(p.offset) })),
      ),
    );
  }

  /** Deletes groups' committed offsets and state. Refuses groups with live members. */
  async deleteGroups(groupIds: readonly string[]): Promise<Array<{ groupId: string; errorCode: string }>> {
    await this.#run(() => this.#ctx.storage.deleteGroups(groupIds));
    return groupIds.map((groupId) => ({ groupId, errorCode: 'NONE' }));
  }

  /** Per partition: the low watermark (log start offset) and high watermark (log end offset), as strings. */
  async fetchTopicOffsets(topic: string): Promise<Array<{ partition: number; offset: string; high: string; low: string }>> {
    const marks = await this.#run(() => this.#ctx.storage.fetchWatermarks(topic));
    return marks.map((m) => ({ partition: m.partition, offset: m.high.toString(), high: m.high.toString(), low: m.low.toString() }));
  }

  /**
   * Deletes records below an offset per partition by moving the log start offset (KafkaJS's
   * `deleteRecords`; `offset: '-1'` means up to the log end). Consumers below it reset by policy.
   */
  async deleteRecords(options: {
    readonly topic: string;
    readonly partitions: ReadonlyArray<{ partition: number; offset: string }>;
  }): Promise<Array<{ partition: number; lowWatermark: string }>> {
    const parsed = options.partitions.map((p) => {
      let offset: bigint;
      try {
        offset = BigInt(p.offset);
      } catch {
        throw new InvalidOptionsError(`deleteRecords: offset ${JSON.stringify(p.offset)} of partition ${p.partition} is not an integer.`);
      }
      if (offset < -1n) throw new InvalidOptionsError('deleteRecords: offset must be ≥ 0, or -1 for the log end.');
      return { partition: p.partition, offset };
    });
    const result = await this.#run(() => this.#ctx.storage.deleteRecords(options.topic, parsed));
    return result.map((r) => ({ partition: r.partition, lowWatermark: r.lowWatermark.toString() }));
  }

  /** Per partition, the first offset whose timestamp is at or after `timestamp` (ms), else the high watermark. */
  async fetchTopicOffsetsByTimestamp(topic: string, timestamp?: number): Promise<Array<{ partition: number; offset: string }>> {
    const at = timestamp ?? Date.now();
    const offsets = await this.#run(() => this.#ctx.storage.fetchOffsetsByTimestamp(topic, at));
    return offsets.map((o) => ({ partition: o.partition, offset: o.offset.toString() }));
  }
}
