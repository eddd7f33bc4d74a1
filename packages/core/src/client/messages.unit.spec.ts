import { describe, expect, it } from 'vitest';
import type { StoredRecord } from '../storage/log-storage.js';
import { recordSize, toKafkaMessage } from './messages.js';

const bytes = (s: string) => new TextEncoder().encode(s);

describe('toKafkaMessage', () => {
  it('converts a stored record: Buffers, string offset and timestamp, every header, and the size recordSize counts', () => {
    const headers = { 'trace-id': bytes('abc'), empty: new Uint8Array(0), 'ünï': bytes('ü') };
    const record: StoredRecord = { topic: 't', partition: 2, offset: 9_007_199_254_740_993n, timestamp: 1_700_000_000_123, key: bytes('k1'), value: bytes('value'), headers };
    const m = toKafkaMessage(record);
    expect(m.offset).toBe('9007199254740993');
    expect(m.timestamp).toBe('1700000000123');
    expect(Buffer.isBuffer(m.key) && m.key.toString()).toBe('k1');
    expect(Buffer.isBuffer(m.value) && m.value.toString()).toBe('value');
    expect(Object.keys(m.headers)).toEqual(['trace-id', 'empty', 'ünï']);
    expect(Object.values(m.headers).every((h) => Buffer.isBuffer(h))).toBe(true);
    expect(m.headers['trace-id']!.toString()).toBe('abc');
    expect(m.size).toBe(recordSize(record.key, record.value, record.headers));
    // Header names count in UTF-8 bytes, like everything else ('ünï' is 3 characters, 5 bytes).
    expect(m.size).toBe(2 + 5 + ('trace-id'.length + 3) + ('empty'.length + 0) + (bytes('ünï').length + 2));
    expect(m.attributes).toBe(0);
  });

  it('a tombstone without key or headers: nulls, empty headers, size 0', () => {
    const m = toKafkaMessage({ topic: 't', partition: 0, offset: 0n, timestamp: 0, key: null, value: null, headers: Object.freeze({}) });
    expect(m).toMatchObject({ key: null, value: null, headers: {}, size: 0, offset: '0', timestamp: '0' });
  });

  it('headers inherited through a prototype are not headers of the record', () => {
    const headers = Object.create({ inherited: bytes('no') }) as Record<string, Uint8Array>;
    headers.own = bytes('yes');
    const m = toKafkaMessage({ topic: 't', partition: 0, offset: 1n, timestamp: 1, key: null, value: null, headers });
    expect(Object.keys(m.headers)).toEqual(['own']);
    expect(m.size).toBe('own'.length + 3);
  });
});
