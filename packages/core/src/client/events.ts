/**
 * The typed layer's bridge between event contracts and stored records: encoding a payload with
 * its headers on publish, and decoding + upcasting a stored record on read.
 */
import type { Codec } from '../codec/codec.js';
import { jsonCodec } from '../codec/json-codec.js';
import { msgpackCodec } from '../codec/msgpack-codec.js';
import type { EventContract } from '../contracts/event.js';
import type { TopicContract } from '../contracts/topic.js';
import { DEFAULT_COMPATIBILITY, directionsOf, type CompatibilityMode } from '../contracts/compatibility-mode.js';
import { CorruptRecordError, SchemaValidationError, UnknownEventTypeError, UnknownSchemaVersionError } from '../errors.js';
import type { StoredHeaders, StoredRecord } from '../storage/log-storage.js';

/** Header names the typed layer sets on every record it writes. */
export const EVENT_TYPE_HEADER = 'event-type';
export const SCHEMA_VERSION_HEADER = 'schema-version';
export const CONTENT_TYPE_HEADER = 'content-type';

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

/** An event decoded from a stored record: the latest version's payload, plus what was stored. */
export interface DecodedEvent<P = unknown> {
  readonly type: string;
  /** The version the record was written with. */
  readonly storedVersion: number;
  /** The payload, upcast to the contract's latest version and validated. */
  readonly payload: P;
  readonly contract: EventContract;
  /**
   * Set when the record's version was newer than the contract knows and it was read as the
   * latest known version (`onUnknownVersion: 'read-as-latest-known'`): that version's number.
   */
  readonly readAsVersion?: number;
}

/**
 * What a reader does with a stored event whose `schema-version` is newer than its contract knows
 * (written by a service on a newer contract). It is never dropped silently:
 * - `fail` — `UnknownSchemaVersionError`; a consumer routes it by its failure policy
 *   (`onFailure`: stop, pause or dead-letter);
 * - `dead-letter` — a consumer writes it to its `deadLetterTopic` and goes on, whatever `onFailure` says;
 * - `read-as-latest-known` — parse it with the latest known version's schema (unknown fields are
 *   stripped; it must still validate). Only for events whose compatibility mode is `forward` or
 *   `full`, which promise that version n can read n+1's records; otherwise it is treated as `fail`
 *   with an error that says so.
 */
export type UnknownVersionPolicy = 'fail' | 'dead-letter' | 'read-as-latest-known';

/** Every {@link UnknownVersionPolicy}. */
export const UNKNOWN_VERSION_POLICIES: readonly UnknownVersionPolicy[] = Object.freeze(['fail', 'dead-letter', 'read-as-latest-known']);

/** Options of {@link decodeEvent}. */
export interface DecodeOptions {
  /** @default 'fail' */
  readonly unknownVersion?: UnknownVersionPolicy;
}

/** The compatibility mode that applies to `event` on `topic`: the event's, else the topic's, else `backward`. */
export function compatibilityOf(topic: TopicContract, event: EventContract): CompatibilityMode {
  return event.compatibility ?? topic.compatibility ?? DEFAULT_COMPATIBILITY;
}

export function encodeEvent(
  contract: EventContract,
  payload: unknown,
  codec: Codec,
  topic: string,
): { value: Uint8Array; headers: Record<string, Uint8Array>; payload: unknown } {
  let valid: unknown;
  try {
    valid = contract.validate(payload);
  } catch (error) {
    if (error && typeof error === 'object') Object.assign(error, { topic });
    throw error;
  }
  let value: Uint8Array;
  try {
    value = codec.encode(valid);
  } catch (cause) {
    // The codec refuses values it cannot round-trip (Map, Set, class instances, …).
    const message = cause instanceof Error ? cause.message : String(cause);
    throw new SchemaValidationError(
      `Payload for "${contract.type}" cannot be encoded with ${codec.name}: ${message}. Nothing was written.`,
      [{ code: 'unencodable', path: [], message }],
      { topic, eventType: contract.type, schemaVersion: contract.latestVersion, cause },
    );
  }
  return {
    value,
    headers: {
      [EVENT_TYPE_HEADER]: encoder.encode(contract.type),
      [SCHEMA_VERSION_HEADER]: encoder.encode(String(contract.latestVersion)),
      [CONTENT_TYPE_HEADER]: encoder.encode(codec.contentType),
    },
    payload: valid,
  };
}

function headerText(headers: StoredHeaders, name: string, record: StoredRecord): string | undefined {
  const bytes = headers[name];
  if (!bytes) return undefined;
  try {
    return decoder.decode(bytes);
  } catch (cause) {
    throw new CorruptRecordError(`Header "${name}" of ${record.topic}[${record.partition}]@${record.offset} is not UTF-8.`, {
      topic: record.topic,
      partition: record.partition,
      offset: record.offset.toString(),
      cause,
    });
  }
}

/** Codecs by content type; records name the codec that wrote them. */
export class CodecRegistry {
  readonly #byContentType = new Map<string, Codec>();
  readonly defaultCodec: Codec;
  constructor(defaultCodec: Codec = msgpackCodec(), extra: readonly Codec[] = []) {
    this.defaultCodec = defaultCodec;
    for (const c of [msgpackCodec(), jsonCodec(), ...extra, defaultCodec]) this.#byContentType.set(c.contentType, c);
  }
  get(contentType: string | undefined): Codec | undefined {
    return contentType === undefined ? this.defaultCodec : this.#byContentType.get(contentType);
  }
}

/**
 * Decodes a stored record of `topic` into its event, upcast to the latest version.
 * Throws `UnknownEventTypeError`, `CorruptRecordError`, `UpcastError` or `SchemaValidationError`,
 * each with the record's topic, partition and offset.
 */
export function decodeEvent(topic: TopicContract, record: StoredRecord, codecs: CodecRegistry, options: DecodeOptions = {}): DecodedEvent {
  const where = { topic: record.topic, partition: record.partition, offset: record.offset.toString() };
  const type = headerText(record.headers, EVENT_TYPE_HEADER, record);
  if (type === undefined) {
    throw new UnknownEventTypeError(
      `Record ${record.topic}[${record.partition}]@${record.offset} has no "${EVENT_TYPE_HEADER}" header: it was not written by the typed layer.`,
      where,
    );
  }
  const contract = topic.eventByType(type);
  if (!contract) {
    throw new UnknownEventTypeError(
      `Topic "${topic.name}" has no contract for event type "${type}" (record ${record.partition}@${record.offset}). Add it to the topic's events.`,
      { ...where, eventType: type },
    );
  }
  const versionText = headerText(record.headers, SCHEMA_VERSION_HEADER, record) ?? '1';
  const version = Number(versionText);
  const contentType = headerText(record.headers, CONTENT_TYPE_HEADER, record);
  const codec = codecs.get(contentType);
  if (!codec) {
    throw new CorruptRecordError(`Record ${record.partition}@${record.offset} was written with unknown content type "${contentType}".`, {
      ...where,
      eventType: type,
    });
  }
  if (record.value === null) {
    throw new CorruptRecordError(`Record ${record.partition}@${record.offset} of type "${type}" is a tombstone, not an event.`, {
      ...where,
      eventType: type,
    });
  }
  const latest = contract.latestVersion;
  let readAs: number | undefined;
  if (Number.isSafeInteger(version) && version > latest) {
    const policy = options.unknownVersion ?? 'fail';
    const mode = compatibilityOf(topic, contract);
    if (policy === 'read-as-latest-known' && directionsOf(mode).forward) {
      readAs = latest;
    } else {
      const why =
        policy === 'read-as-latest-known'
          ? ` It cannot be read as v${latest}: "${type}" is ${mode}-compatible, and only forward or full compatibility promises that v${latest} reads newer records.`
          : '';
      throw new UnknownSchemaVersionError(
        `Record ${record.topic}[${record.partition}]@${record.offset} is "${type}" v${version}, newer than this contract knows (v1–v${latest}): it was published on a newer contract.${why} Deploy the newer contract here to read it.`,
        latest,
        { ...where, eventType: type, schemaVersion: version },
      );
    }
  }
  try {
    const raw = codec.decode(record.value);
    if (readAs !== undefined) return { type, storedVersion: version, payload: contract.upcast(readAs, raw), contract, readAsVersion: readAs };
    return { type, storedVersion: version, payload: contract.upcast(version, raw), contract };
  } catch (error) {
    if (error && typeof error === 'object') Object.assign(error, where);
    throw error;
  }
}
