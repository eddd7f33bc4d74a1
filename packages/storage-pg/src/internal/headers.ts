import { CorruptRecordError, msgpackCodec, type StoredHeaders } from '@annals/core';

// Headers are stored as one msgpack map of name → bin, decoded with the same hardened decoder as
// payloads: a header column is as untrusted as any other stored byte.
const codec = msgpackCodec();

export function encodeHeaders(headers: StoredHeaders | null): Uint8Array | null {
  if (!headers) return null;
  const names = Object.keys(headers);
  return names.length === 0 ? null : codec.encode(headers);
}

const EMPTY: StoredHeaders = Object.freeze({});

export function decodeHeaders(bytes: Uint8Array | null): StoredHeaders {
  if (!bytes) return EMPTY;
  const decoded = codec.decode(bytes);
  if (typeof decoded !== 'object' || decoded === null || Array.isArray(decoded)) {
    throw new CorruptRecordError('Stored record headers are not a map of name to bytes.');
  }
  for (const value of Object.values(decoded)) {
    if (!(value instanceof Uint8Array)) throw new CorruptRecordError('A stored header value is not bytes.');
  }
  return decoded as StoredHeaders;
}
