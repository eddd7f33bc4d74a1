/** Records as the handler layer sees them: event type, decoded event, metadata. Internal. */
import type { ClientContext } from '../client/context.js';
import { decodeEvent, EVENT_TYPE_HEADER, type DecodedEvent, type DecodeOptions } from '../client/events.js';
import type { KafkaMessage } from '../client/messages.js';
import type { TopicContract } from '../contracts/topic.js';
import type { StoredHeaders, StoredRecord } from '../storage/log-storage.js';
import type { EventMetadata } from './context.js';

const decoder = new TextDecoder('utf-8', { fatal: false });

/** The `event-type` header, or undefined (a record not written by the typed layer). */
export function eventTypeOf(headers: StoredHeaders): string | undefined {
  const bytes = headers[EVENT_TYPE_HEADER];
  return bytes ? decoder.decode(bytes) : undefined;
}

const asBuffer = (bytes: Uint8Array): Buffer => (Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));

export function storedRecordOf(topic: string, partition: number, message: KafkaMessage): StoredRecord {
  return {
    topic,
    partition,
    offset: BigInt(message.offset),
    timestamp: Number(message.timestamp),
    key: message.key,
    value: message.value,
    headers: message.headers,
  };
}

export function metadataOf(record: StoredRecord, event: DecodedEvent): EventMetadata {
  let headers: Record<string, Buffer> | undefined;
  return {
    topic: record.topic,
    partition: record.partition,
    offset: record.offset.toString(),
    timestamp: record.timestamp,
    key: record.key ? asBuffer(record.key) : null,
    // Built on first read: most handlers never look at headers.
    get headers() {
      if (!headers) {
        headers = {};
        for (const [name, v] of Object.entries(record.headers)) headers[name] = asBuffer(v);
      }
      return headers;
    },
    eventType: event.type,
    storedVersion: event.storedVersion,
  };
}

export function decode<TDb>(ctx: ClientContext<TDb>, topic: TopicContract, record: StoredRecord, options: DecodeOptions = {}): DecodedEvent {
  return decodeEvent(topic, record, ctx.codecs, options);
}

/** The topics' contracts by name. */
export function topicsByName(topics: readonly TopicContract[]): ReadonlyMap<string, TopicContract> {
  return new Map(topics.map((t) => [t.name, t]));
}
