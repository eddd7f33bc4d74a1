import { InvalidOptionsError } from '../errors.js';
import type { EventContract, EventOf } from './event.js';
import { isEventContract } from './event.js';
import { resolveTopicConfig, type TopicConfig, type TopicConfigInput } from './topic-config.js';
import { validateTopicName } from './topic-name.js';
import { validateCompatibility, type CompatibilityMode } from './compatibility-mode.js';

/** A record key as the typed layer produces it. `null`/`undefined` spreads records over partitions. */
export type KeyValue = string | Uint8Array | null | undefined;

export interface TopicDefinitionInput<E extends readonly EventContract<string, any>[]> {
  /** The topic name (Kafka's rules: `[a-zA-Z0-9._-]`, 1–249 characters). */
  readonly name: string;
  /** Number of partitions. @default 1 */
  readonly partitions?: number;
  /** The events this topic may carry. Publishing any other event type is refused. */
  readonly events: E;
  /** Derives a record's key from an event payload. Omit for null keys (sticky spread). */
  readonly key?: (event: EventOf<E[number]>) => KeyValue;
  /** Kafka topic config keys (`retention.ms`, `cleanup.policy`, …). */
  readonly config?: TopicConfigInput;
  /**
   * Compatibility mode of the events this topic carries (an event's own `compatibility` wins).
   * @default 'backward'
   */
  readonly compatibility?: CompatibilityMode;
}

/** A typed topic contract. Made by {@link defineTopic}. */
export interface TopicContract<E extends readonly EventContract<string, any>[] = readonly EventContract<string, any>[]> {
  readonly kind: 'annals.topic';
  readonly name: string;
  readonly partitions: number;
  readonly events: E;
  readonly config: TopicConfig;
  /** The compatibility mode declared on the topic, if any. */
  readonly compatibility: CompatibilityMode | undefined;
  /** The key of an event payload (undefined when the topic has no key function). */
  keyOf(event: EventOf<E[number]>): KeyValue;
  /** The contract of an event type carried by this topic, or undefined. */
  eventByType(type: string): E[number] | undefined;
}

/**
 * Defines a topic contract: its name, partition count, the events it carries, how a key is
 * derived from an event, and its config.
 *
 * @example
 * ```ts
 * const orders = defineTopic({
 *   name: 'orders',
 *   partitions: 6,
 *   events: [OrderCreated, OrderPaid],
 *   key: (e) => e.customerId,
 *   config: { 'retention.ms': 7 * 86_400_000 },
 * });
 * await annals.admin().createTopics({ topics: [orders] });
 * ```
 */
export function defineTopic<const E extends readonly EventContract<string, any>[]>(
  definition: TopicDefinitionInput<E>,
): TopicContract<E> {
  validateTopicName(definition.name);
  const partitions = definition.partitions ?? 1;
  if (!Number.isSafeInteger(partitions) || partitions < 1) {
    throw new InvalidOptionsError(`Topic "${definition.name}": partitions must be a positive integer, got ${String(partitions)}.`, {
      topic: definition.name,
    });
  }
  if (!Array.isArray(definition.events) || definition.events.length === 0) {
    throw new InvalidOptionsError(`Topic "${definition.name}" must list at least one event contract in events: [...].`, {
      topic: definition.name,
    });
  }
  const byType = new Map<string, E[number]>();
  for (const event of definition.events) {
    if (!isEventContract(event)) {
      throw new InvalidOptionsError(`Topic "${definition.name}": every entry of events must come from defineEvent().`, {
        topic: definition.name,
      });
    }
    if (byType.has(event.type)) {
      throw new InvalidOptionsError(`Topic "${definition.name}" lists event "${event.type}" twice.`, { topic: definition.name });
    }
    byType.set(event.type, event);
  }
  const config = resolveTopicConfig(definition.config, undefined, definition.name);
  const key = definition.key;
  const compatibility = validateCompatibility(definition.compatibility, `Topic "${definition.name}"`);
  return Object.freeze({
    kind: 'annals.topic' as const,
    name: definition.name,
    partitions,
    events: definition.events,
    config,
    compatibility,
    keyOf: (event: EventOf<E[number]>) => (key ? key(event) : undefined),
    eventByType: (type: string) => byType.get(type),
  });
}

export function isTopicContract(value: unknown): value is TopicContract {
  return typeof value === 'object' && value !== null && (value as TopicContract).kind === 'annals.topic';
}
