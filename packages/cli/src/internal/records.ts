/**
 * How `annals consume` shows a record. Values written by the typed layer carry a `content-type`
 * header naming their codec (`application/msgpack`, `application/json`); those are decoded with
 * core's codecs — which treat the bytes as untrusted — and shown as JSON. Other values are shown
 * as UTF-8 text, or as base64 when they are not UTF-8.
 */
import { CONTENT_TYPE_HEADER, jsonCodec, msgpackCodec, type Codec, type KafkaMessage } from '@annals/core';
import { toJson } from '../context.js';
import { CliUsageError } from '../exit-codes.js';

const CODECS: ReadonlyMap<string, Codec> = new Map([msgpackCodec(), jsonCodec()].map((c) => [c.contentType, c]));
const utf8 = new TextDecoder('utf-8', { fatal: true });

/** A byte string shown for people and scripts. */
export interface ShownBytes {
  readonly text: string;
  /** 'utf8' for text, 'base64' for bytes that are not UTF-8. */
  readonly encoding: 'utf8' | 'base64';
}

/** Bytes as UTF-8 text, or base64 when they are not UTF-8. */
export function showBytes(bytes: Uint8Array): ShownBytes {
  try {
    return { text: utf8.decode(bytes), encoding: 'utf8' };
  } catch {
    return { text: Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64'), encoding: 'base64' };
  }
}

/** A record's value, decoded. */
export type ShownValue =
  | { readonly kind: 'null' }
  | { readonly kind: 'decoded'; readonly contentType: string; readonly value: unknown }
  | { readonly kind: 'bytes'; readonly bytes: ShownBytes };

/** Decodes a value by its `content-type` header (a codec's failure is the record's, and is thrown). */
export function showValue(message: KafkaMessage): ShownValue {
  if (message.value === null) return { kind: 'null' };
  const contentType = message.headers[CONTENT_TYPE_HEADER]?.toString('utf8');
  const codec = contentType === undefined ? undefined : CODECS.get(contentType);
  if (codec && contentType !== undefined) return { kind: 'decoded', contentType, value: codec.decode(message.value) };
  return { kind: 'bytes', bytes: showBytes(message.value) };
}

/** A consumed record as `annals consume --json` prints it (one JSON object per line). */
export interface RecordJson {
  readonly topic: string;
  readonly partition: number;
  readonly offset: string;
  /** Milliseconds since the epoch. */
  readonly timestamp: number;
  readonly key: string | null;
  readonly keyEncoding?: 'base64';
  readonly headers: Readonly<Record<string, string>>;
  /** Decoded JSON for typed records, text for UTF-8 values, base64 otherwise; null for a tombstone. */
  readonly value: unknown;
  readonly valueEncoding?: 'base64';
  /** The codec's content type when the value was decoded. */
  readonly contentType?: string;
}

/** The JSON form of a record. */
export function recordJson(topic: string, partition: number, message: KafkaMessage): RecordJson {
  const key = message.key === null ? null : showBytes(message.key);
  const value = showValue(message);
  return {
    topic,
    partition,
    offset: message.offset,
    timestamp: Number(message.timestamp),
    key: key?.text ?? null,
    ...(key?.encoding === 'base64' && { keyEncoding: 'base64' as const }),
    headers: Object.fromEntries(Object.entries(message.headers).map(([k, v]) => [k, showBytes(v).text])),
    value: value.kind === 'null' ? null : value.kind === 'decoded' ? value.value : value.bytes.text,
    ...(value.kind === 'bytes' && value.bytes.encoding === 'base64' && { valueEncoding: 'base64' as const }),
    ...(value.kind === 'decoded' && { contentType: value.contentType }),
  };
}

type Piece = string | { readonly field: 'k' | 's' | 'o' | 'p' | 't' | 'h' | 'T' | 'S' | 'K' };

/**
 * A kcat-style format string, compiled once: `%k` key, `%s` value, `%o` offset, `%p` partition,
 * `%t` topic, `%h` headers (`name=value,…`), `%T` timestamp (ms), `%S` value size, `%K` key size,
 * `%%` a percent sign; `\n`, `\t`, `\r` and `\\` escapes.
 */
export function compileFormat(format: string): (topic: string, partition: number, message: KafkaMessage) => string {
  const pieces: Piece[] = [];
  let literal = '';
  for (let i = 0; i < format.length; i++) {
    const ch = format[i]!;
    const next = format[i + 1];
    if (ch === '\\' && next !== undefined && 'ntr\\'.includes(next)) {
      literal += next === 'n' ? '\n' : next === 't' ? '\t' : next === 'r' ? '\r' : '\\';
      i++;
    } else if (ch === '%') {
      if (next === '%') literal += '%';
      else if (next !== undefined && 'ksopthTSK'.includes(next)) {
        if (literal) pieces.push(literal);
        literal = '';
        pieces.push({ field: next as 'k' });
      } else {
        throw new CliUsageError(`-f: unknown format token %${next ?? ''}; known: %k %s %o %p %t %h %T %S %K %%.`);
      }
      i++;
    } else literal += ch;
  }
  if (literal) pieces.push(literal);
  return (topic, partition, message) => {
    let out = '';
    for (const piece of pieces) {
      if (typeof piece === 'string') {
        out += piece;
        continue;
      }
      switch (piece.field) {
        case 'k':
          out += message.key === null ? '' : showBytes(message.key).text;
          break;
        case 's': {
          const v = showValue(message);
          out += v.kind === 'null' ? '' : v.kind === 'decoded' ? toJson(v.value) : v.bytes.text;
          break;
        }
        case 'o':
          out += message.offset;
          break;
        case 'p':
          out += String(partition);
          break;
        case 't':
          out += topic;
          break;
        case 'h':
          out += Object.entries(message.headers)
            .map(([k, v]) => `${k}=${showBytes(v).text}`)
            .join(',');
          break;
        case 'T':
          out += message.timestamp;
          break;
        case 'S':
          out += message.value === null ? '-1' : String(message.value.byteLength);
          break;
        case 'K':
          out += message.key === null ? '-1' : String(message.key.byteLength);
          break;
      }
    }
    return out;
  };
}
