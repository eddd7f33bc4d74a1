/**
 * Turns KafkaJS-shaped messages and typed events into records bound to partitions, checking
 * everything that can be checked before a byte is written: the topic exists, an explicit
 * partition is in range, and every record fits `max.message.bytes`.
 */
import type { EventContract } from '../contracts/event.js';
import type { TopicContract } from '../contracts/topic.js';
import { InvalidOptionsError, InvalidRecordError, MessageTooLargeError, UnknownEventTypeError, UnknownTopicOrPartitionError } from '../errors.js';
import { partitionFor } from '../partitioner.js';
import type { AppendRecord, PartitionAppend } from '../storage/log-storage.js';
import type { ClientContext } from './context.js';
import { encodeEvent } from './events.js';
import { recordSize, toBytes, toStoredHeaders, toTimestamp, type IHeaders, type Message } from './messages.js';
import type { TopicMetadata } from './metadata.js';

/** A record bound to its partition. */
export interface PreparedRecord {
  readonly topic: string;
  readonly partition: number;
  readonly record: AppendRecord;
}

/** Kafka's sticky partitioning of null-key records: one partition per send, changed after each. */
export class StickyPartitions {
  readonly #current = new Map<string, number>();
  get(topic: string, partitions: number): number {
    let p = this.#current.get(topic);
    if (p === undefined || p >= partitions) {
      p = Math.floor(Math.random() * partitions);
      this.#current.set(topic, p);
    }
    return p;
  }
  /** Moves every topic used in a send to another partition. */
  advance(topics: Iterable<string>, partitionsOf: (topic: string) => number): void {
    for (const topic of topics) {
      const n = partitionsOf(topic);
      const p = this.#current.get(topic);
      if (p === undefined || n <= 1) continue;
      this.#current.set(topic, (p + 1 + Math.floor(Math.random() * (n - 1))) % n);
    }
  }
}

function checkPartition(meta: TopicMetadata, partition: number): number {
  if (!Number.isInteger(partition) || partition < 0 || partition >= meta.partitions) {
    throw new UnknownTopicOrPartitionError(
      `Partition ${String(partition)} is out of range for topic "${meta.name}", which has partitions 0–${meta.partitions - 1}. Nothing was written.`,
      { topic: meta.name, ...(Number.isInteger(partition) ? { partition } : {}) },
    );
  }
  return partition;
}

function checkSize(meta: TopicMetadata, record: AppendRecord, index: number): void {
  const size = recordSize(record.key, record.value, record.headers);
  const limit = meta.config['max.message.bytes'];
  if (size > limit) {
    throw new MessageTooLargeError(
      `Message ${index} for topic "${meta.name}" is ${size} bytes, over the topic's max.message.bytes (${limit}). Nothing was written; split the payload or raise the limit with admin.alterConfigs.`,
      size,
      limit,
      { topic: meta.name },
    );
  }
}

/** Compaction keeps the latest record of every key: on a compacted topic, every record needs one. */
function checkKeyed(meta: TopicMetadata, topic: string, key: Uint8Array | null, what: string): void {
  if (key !== null || !meta.config['cleanup.policy'].includes('compact')) return;
  throw new InvalidRecordError(
    `${what} for topic "${topic}" has no key, but the topic is compacted (cleanup.policy=${meta.config['cleanup.policy']}): compaction keeps the latest record of every key, so every record needs one. Nothing was written.`,
    { topic },
  );
}

export async function prepareMessages(
  ctx: ClientContext<any>,
  topic: string,
  messages: readonly Message[],
  sticky: StickyPartitions,
): Promise<PreparedRecord[]> {
  if (!Array.isArray(messages)) throw new InvalidOptionsError(`send({ topic: "${topic}", messages }) needs an array of messages.`);
  const meta = await ctx.metadata.get(topic);
  return messages.map((m, i) => {
    if (m === null || typeof m !== 'object') throw new InvalidOptionsError(`Message ${i} for topic "${topic}" is not an object.`);
    const key = m.key === undefined || m.key === null ? null : toBytes(m.key, `Message ${i} key`);
    const value = m.value === null || m.value === undefined ? null : toBytes(m.value, `Message ${i} value`);
    const record: AppendRecord = { key, value, headers: toStoredHeaders(m.headers), timestamp: toTimestamp(m.timestamp) };
    checkSize(meta, record, i);
    checkKeyed(meta, topic, key, `Message ${i}`);
    const partition =
      m.partition !== undefined && m.partition !== null
        ? checkPartition(meta, m.partition)
        : key !== null
          ? partitionFor(key, meta.partitions)
          : sticky.get(topic, meta.partitions);
    return { topic, partition, record };
  });
}

/** Options of a typed publish. */
export interface PublishOptions {
  /** Overrides the key the topic contract derives from the event. */
  readonly key?: string | Uint8Array | null;
  /** Send to this partition instead of the key's. */
  readonly partition?: number;
  /** Extra headers (the typed layer sets `event-type`, `schema-version` and `content-type`). */
  readonly headers?: IHeaders;
  /** Milliseconds since the epoch. @default the database clock at append */
  readonly timestamp?: number;
}

export async function prepareEvent(
  ctx: ClientContext<any>,
  topic: TopicContract,
  event: EventContract,
  payload: unknown,
  options: PublishOptions,
  sticky: StickyPartitions,
): Promise<PreparedRecord> {
  if (topic.eventByType(event.type) !== event) {
    throw new UnknownEventTypeError(
      `Topic "${topic.name}" does not carry event "${event.type}". Add it to the topic's events: defineTopic({ events: [..., ${event.type}] }).`,
      { topic: topic.name, eventType: event.type },
    );
  }
  const encoded = encodeEvent(event, payload, ctx.codec, topic.name);
  // First publish of this contract by this client: register (or verify) its version; then cached.
  const registering = ctx.schemas.ensure(event, topic.name);
  if (registering) await registering;
  const meta = await ctx.metadata.get(topic.name);
  const rawKey = options.key !== undefined ? options.key : topic.keyOf(encoded.payload as never);
  const key = rawKey === undefined || rawKey === null ? null : toBytes(rawKey, `Key of "${event.type}"`);
  const extra = toStoredHeaders(options.headers);
  const record: AppendRecord = {
    key,
    value: encoded.value,
    headers: extra ? { ...extra, ...encoded.headers } : encoded.headers,
    timestamp: toTimestamp(options.timestamp),
  };
  checkSize(meta, record, 0);
  checkKeyed(meta, topic.name, key, `Event "${event.type}"`);
  const partition =
    options.partition !== undefined
      ? checkPartition(meta, options.partition)
      : key !== null
        ? partitionFor(key, meta.partitions)
        : sticky.get(topic.name, meta.partitions);
  return { topic: topic.name, partition, record };
}

/** Groups prepared records by partition, keeping their order; remembers each record's slot. */
export function groupByPartition(records: readonly PreparedRecord[]): {
  appends: PartitionAppend[];
  slots: Array<{ append: number; index: number }>;
} {
  const index = new Map<string, number>();
  const appends: Array<{ topic: string; partition: number; records: AppendRecord[] }> = [];
  const slots = records.map((r) => {
    const k = `${r.topic}\u0000${r.partition}`;
    let a = index.get(k);
    if (a === undefined) {
      a = appends.length;
      index.set(k, a);
      appends.push({ topic: r.topic, partition: r.partition, records: [] });
    }
    const group = appends[a]!;
    group.records.push(r.record);
    return { append: a, index: group.records.length - 1 };
  });
  return { appends, slots };
}

/**
 * Publishes held back until a commit: validated and bound to partitions when they are made,
 * appended later in one go. Shared by producer transactions, `annals.transaction` and consumer
 * batches.
 */
export class PublishBuffer {
  readonly #ctx: ClientContext<any>;
  readonly #sticky: StickyPartitions;
  readonly records: PreparedRecord[] = [];

  constructor(ctx: ClientContext<any>, sticky: StickyPartitions = new StickyPartitions()) {
    this.#ctx = ctx;
    this.#sticky = sticky;
  }

  get sticky(): StickyPartitions {
    return this.#sticky;
  }

  async send(record: { readonly topic: string; readonly messages: readonly Message[] }): Promise<void> {
    this.records.push(...(await prepareMessages(this.#ctx, record.topic, record.messages, this.#sticky)));
  }

  async sendBatch(batch: { readonly topicMessages: ReadonlyArray<{ readonly topic: string; readonly messages: readonly Message[] }> }): Promise<void> {
    for (const tm of batch.topicMessages) await this.send(tm);
  }

  async publish(topic: TopicContract, event: EventContract, payload: unknown, options: PublishOptions = {}): Promise<void> {
    this.records.push(await prepareEvent(this.#ctx, topic, event, payload, options, this.#sticky));
  }

  /** Removes and returns everything buffered. */
  take(): PreparedRecord[] {
    return this.records.splice(0);
  }
}
