/**
 * Topic configuration, with Kafka's keys. Every key is defined exactly once below, with its
 * default, its validator and its documentation (as Kafka's `LogConfig` does); everything else —
 * parsing `configEntries`, `describeConfigs`, the typed `TopicConfig` — is derived from this table.
 */
import { InvalidConfigError } from '../errors.js';

interface ConfigKeyDefinition<T> {
  readonly doc: string;
  readonly default: T;
  /** Parses a string or typed value; throws a message string on invalid input. */
  readonly parse: (raw: unknown) => T;
  readonly serialize: (value: T) => string;
}

function longAtLeast(min: number): (raw: unknown) => number {
  return (raw) => {
    const n = typeof raw === 'string' && raw.trim() !== '' ? Number(raw) : raw;
    if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < min) {
      throw `must be an integer ≥ ${min}, got ${JSON.stringify(raw)}`;
    }
    return n;
  };
}

const CLEANUP_POLICIES = ['delete', 'compact', 'compact,delete'] as const;
/** Kafka's `cleanup.policy` values; `delete,compact` is accepted and normalised. */
export type CleanupPolicy = (typeof CLEANUP_POLICIES)[number];

const num = (v: number): string => String(v);

/** The topic config keys Annals understands. */
export const TOPIC_CONFIG_KEYS = {
  'retention.ms': {
    doc: 'How long a record is kept before retention may delete it, by the database clock. -1 keeps records forever.',
    default: 604_800_000,
    parse: longAtLeast(-1),
    serialize: num,
  },
  'retention.bytes': {
    doc: 'The most bytes a partition keeps before retention deletes its oldest records. -1 means no size limit.',
    default: -1,
    parse: longAtLeast(-1),
    serialize: num,
  },
  'cleanup.policy': {
    doc: "'delete' removes old records by retention; 'compact' keeps the latest record of every key; 'compact,delete' does both.",
    default: 'delete' as CleanupPolicy,
    parse: (raw: unknown): CleanupPolicy => {
      if (typeof raw !== 'string') throw `must be one of ${CLEANUP_POLICIES.join(' | ')}`;
      const parts = [...new Set(raw.split(',').map((p) => p.trim()))].sort();
      const normal = parts.join(',');
      if (normal === 'delete' || normal === 'compact' || normal === 'compact,delete') return normal;
      throw `must be one of ${CLEANUP_POLICIES.join(' | ')}, got ${JSON.stringify(raw)}`;
    },
    serialize: (v: CleanupPolicy) => v,
  },
  'delete.retention.ms': {
    doc: 'How long a tombstone (a record with a null value) is kept on a compacted topic, so consumers see the delete.',
    default: 86_400_000,
    parse: longAtLeast(0),
    serialize: num,
  },
  'min.compaction.lag.ms': {
    doc: 'Records newer than this are never compacted (the log head is left alone).',
    default: 0,
    parse: longAtLeast(0),
    serialize: num,
  },
  'segment.records': {
    doc: 'Annals: records per segment. Each partition is stored in segments (table partitions) of this many offsets; retention drops whole segments, as Kafka deletes segment files.',
    default: 100_000,
    parse: longAtLeast(1_000),
    serialize: num,
  },
  'max.message.bytes': {
    doc: 'The largest record (key + value + headers, in bytes) a producer may append. Checked before anything is written.',
    default: 1_048_588,
    parse: longAtLeast(1),
    serialize: num,
  },
} as const satisfies Record<string, ConfigKeyDefinition<any>>;

export type TopicConfigKey = keyof typeof TOPIC_CONFIG_KEYS;

/** Resolved topic config: every key present, typed. */
export type TopicConfig = {
  readonly [K in TopicConfigKey]: ReturnType<(typeof TOPIC_CONFIG_KEYS)[K]['parse']>;
};

/** Topic config as a user writes it: any subset of the keys, typed values or Kafka-style strings. */
export type TopicConfigInput = {
  readonly [K in TopicConfigKey]?: TopicConfig[K] | string;
};

/** A KafkaJS-style config entry. */
export interface ConfigEntry {
  readonly name: string;
  readonly value: string | null;
}

export function isTopicConfigKey(name: string): name is TopicConfigKey {
  return Object.prototype.hasOwnProperty.call(TOPIC_CONFIG_KEYS, name);
}

/** The defaults of every key, frozen. */
export const DEFAULT_TOPIC_CONFIG: TopicConfig = Object.freeze(
  Object.fromEntries(Object.entries(TOPIC_CONFIG_KEYS).map(([k, d]) => [k, d.default])),
) as TopicConfig;

/**
 * Resolves a partial config (object or KafkaJS `configEntries`) over `base` (the defaults unless
 * given), validating every key. Unknown keys and invalid values throw {@link InvalidConfigError}
 * naming the key, the problem, and the accepted keys.
 */
export function resolveTopicConfig(
  input: TopicConfigInput | readonly ConfigEntry[] | undefined,
  base: TopicConfig = DEFAULT_TOPIC_CONFIG,
  topic?: string,
): TopicConfig {
  const out: Record<string, unknown> = { ...base };
  const entries: Array<[string, unknown]> = Array.isArray(input)
    ? (input as readonly ConfigEntry[]).map((e) => [e.name, e.value])
    : Object.entries(input ?? {});
  for (const [name, raw] of entries) {
    if (!isTopicConfigKey(name)) {
      throw new InvalidConfigError(
        `Unknown topic config key "${name}". Known keys: ${Object.keys(TOPIC_CONFIG_KEYS).join(', ')}.`,
        topic === undefined ? {} : { topic },
      );
    }
    if (raw === undefined) continue;
    const def = TOPIC_CONFIG_KEYS[name] as ConfigKeyDefinition<unknown>;
    // A null value (KafkaJS's "delete this override") restores the default.
    if (raw === null) {
      out[name] = def.default;
      continue;
    }
    try {
      out[name] = def.parse(raw);
    } catch (problem) {
      throw new InvalidConfigError(
        `Invalid value for topic config "${name}": ${typeof problem === 'string' ? problem : String(problem)}.`,
        topic === undefined ? {} : { topic },
      );
    }
  }
  return Object.freeze(out) as TopicConfig;
}

/** The config as KafkaJS-style string entries, in key order. */
export function topicConfigEntries(config: TopicConfig): ConfigEntry[] {
  return (Object.keys(TOPIC_CONFIG_KEYS) as TopicConfigKey[]).map((name) => ({
    name,
    value: (TOPIC_CONFIG_KEYS[name].serialize as (v: unknown) => string)(config[name]),
  }));
}

/** Documentation of every key: name, default, doc. */
export function describeTopicConfigKeys(): Array<{ name: TopicConfigKey; default: string; doc: string }> {
  return (Object.keys(TOPIC_CONFIG_KEYS) as TopicConfigKey[]).map((name) => ({
    name,
    default: (TOPIC_CONFIG_KEYS[name].serialize as (v: unknown) => string)(TOPIC_CONFIG_KEYS[name].default),
    doc: TOPIC_CONFIG_KEYS[name].doc,
  }));
}
