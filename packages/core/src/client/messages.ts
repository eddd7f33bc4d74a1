/** KafkaJS-shaped message types, and their conversion to and from stored records. */
import { InvalidOptionsError } from '../errors.js';
import type { StoredHeaders, StoredRecord } from '../storage/log-storage.js';

/** Header values as producers give them (KafkaJS's `IHeaders`). */
export interface IHeaders {
  [name: string]: Buffer | string | undefined;
}

/** A message to send (KafkaJS's `Message`). */
export interface Message {
  /** Messages with the same key go to the same partition (Kafka's murmur2 partitioner). */
  readonly key?: Buffer | Uint8Array | string | null;
  /** `null` is a tombstone. */
  readonly value: Buffer | Uint8Array | string | null;
  /** Send to this partition instead of the key's. */
  readonly partition?: number;
  readonly headers?: IHeaders;
  /** Milliseconds since the epoch, as a string or number. @default the database clock at append */
  readonly timestamp?: string | number;
}

/** A consumed message (KafkaJS's `KafkaMessage`): offsets are strings; keys and values Buffers. */
export interface KafkaMessage {
  readonly key: Buffer | null;
  readonly value: Buffer | null;
  /** Milliseconds since the epoch, as a string. */
  readonly timestamp: string;
  readonly offset: string;
  readonly headers: { [name: string]: Buffer };
  readonly size: number;
  readonly attributes: number;
}

/** Per partition, what a send wrote (KafkaJS's `RecordMetadata`). */
export interface RecordMetadata {
  readonly topicName: string;
  readonly partition: number;
  readonly errorCode: number;
  /** Offset of the first record this send wrote to the partition. */
  readonly baseOffset: string;
  readonly logAppendTime: string;
  readonly logStartOffset: string;
}

const encoder = new TextEncoder();

export function toBytes(value: Buffer | Uint8Array | string, what: string): Uint8Array {
  if (typeof value === 'string') return encoder.encode(value);
  if (value instanceof Uint8Array) return value;
  throw new InvalidOptionsError(`${what} must be a string, a Buffer or a Uint8Array, got ${typeof value}.`);
}

export function toStoredHeaders(headers: IHeaders | undefined): StoredHeaders | null {
  if (!headers) return null;
  let out: Record<string, Uint8Array> | null = null;
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue;
    if (Array.isArray(value)) {
      throw new InvalidOptionsError(`Header "${name}" has several values; Annals stores one value per header name.`);
    }
    out ??= Object.create(null) as Record<string, Uint8Array>;
    out[name] = toBytes(value, `Header "${name}"`);
  }
  return out;
}

export function toTimestamp(timestamp: string | number | undefined): number | null {
  if (timestamp === undefined) return null;
  const n = typeof timestamp === 'string' ? Number(timestamp) : timestamp;
  if (!Number.isSafeInteger(n) || n < 0) {
    throw new InvalidOptionsError(`Message timestamp must be milliseconds since the epoch, got ${JSON.stringify(timestamp)}.`);
  }
  return n;
}

const asBuffer = (bytes: Uint8Array): Buffer =>
  Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);

/** Size of a record as `max.message.bytes` counts it: key + value + header names and values. */
export function recordSize(key: Uint8Array | null, value: Uint8Array | null, headers: StoredHeaders | null): number {
  let size = (key?.byteLength ?? 0) + (value?.byteLength ?? 0);
  if (headers) for (const [name, v] of Object.entries(headers)) size += Buffer.byteLength(name, 'utf8') + v.byteLength;
  return size;
}

export function toKafkaMessage(record: StoredRecord): KafkaMessage {
  // Once per consumed record: one pass over the headers (no entries arrays), size counted as
  // recordSize counts it.
  const stored = record.headers;
  const headers: { [name: string]: Buffer } = {};
  let size = (record.key?.byteLength ?? 0) + (record.value?.byteLength ?? 0);
  for (const name in stored) {
    if (!Object.prototype.hasOwnProperty.call(stored, name)) continue;
    const v = stored[name]!;
    headers[name] = asBuffer(v);
    size += Buffer.byteLength(name, 'utf8') + v.byteLength;
  }
  return {
    key: record.key ? asBuffer(record.key) : null,
    value: record.value ? asBuffer(record.value) : null,
    timestamp: String(record.timestamp),
    offset: record.offset.toString(),
    headers,
    size,
    attributes: 0,
  };
}
