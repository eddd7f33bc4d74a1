import { createRequire } from 'node:module';
import fc from 'fast-check';
import kafkajs from 'kafkajs';
import { describe, expect, it } from 'vitest';
import { InvalidOptionsError } from './errors.js';
import { murmur2, partitionFor, toPositive } from './partitioner.js';

// The oracle: KafkaJS 2.x's Java-compatible partitioner (DefaultPartitioner since 2.0), public
// API, plus its murmur2 itself (not exported, loaded by path) to compare the raw signed hash.
const require = createRequire(import.meta.url);
const kafkajsMurmur2 = require('kafkajs/src/producer/partitioners/default/murmur2.js') as (key: Buffer) => number;

function kafkajsPartition(key: Uint8Array | string, numPartitions: number): number {
  const partitioner = kafkajs.Partitioners.DefaultPartitioner();
  const partitionMetadata = Array.from({ length: numPartitions }, (_, partitionId) => ({
    partitionErrorCode: 0,
    partitionId,
    leader: 0,
    replicas: [0],
    isr: [0],
  }));
  // KafkaJS hashes a Buffer as is and anything else as Buffer.from(String(key)).
  const keyForKafkajs = typeof key === 'string' ? key : Buffer.from(key);
  return partitioner({ topic: 't', partitionMetadata, message: { key: keyForKafkajs, value: null } });
}

const utf8 = (text: string): Uint8Array => new TextEncoder().encode(text);

describe('murmur2', () => {
  // From Kafka's own clients/src/test/java/org/apache/kafka/common/utils/UtilsTest.java (testMurmur2).
  it.each([
    ['21', -973932308],
    ['foobar', -790332482],
    ['a-little-bit-long-string', -985981536],
    ['a-little-bit-longer-string', -1486304829],
    ['lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8', -58897971],
    ['abc', 479470107],
  ])("matches Kafka's UtilsTest vector %j -> %i", (key, expected) => {
    expect(murmur2(utf8(key))).toBe(expected);
  });

  // Not in Kafka's UtilsTest; the value asserted by kafka-python's pure_murmur2 tests and by
  // Apache Commons Codec's MurmurHash2 (same seed), and by KafkaJS below.
  it('hashes the empty key to 275646681 (only the seed, mixed)', () => {
    expect(murmur2(new Uint8Array(0))).toBe(275646681);
    expect(kafkajsMurmur2(Buffer.alloc(0))).toBe(275646681);
  });

  // kafka-python's vectors (test_partitioner.py), unsigned there: 2291530147 is -2003437149 as a Java int.
  it.each([
    ['testing', 2291530147],
    ['PEACH!', 2546348827],
    ['Gorz!', 1742407956],
    ['987654321', 577579727],
    ['_!!_', 2335345241],
    ['CRINOID', 3603193626],
  ])("matches kafka-python's vector %j -> %i (as unsigned)", (key, unsigned) => {
    expect(murmur2(utf8(key)) >>> 0).toBe(unsigned);
    expect(murmur2(utf8(key))).toBe(unsigned | 0);
  });

  it('returns a signed 32-bit integer, as Java does', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (key) => {
        const hash = murmur2(key);
        expect(Number.isInteger(hash)).toBe(true);
        expect(hash).toBeGreaterThanOrEqual(-(2 ** 31));
        expect(hash).toBeLessThan(2 ** 31);
      }),
    );
  });

  it('hashes a subarray by its own bytes, not the whole buffer', () => {
    const whole = utf8('xxfoobarxx');
    expect(murmur2(whole.subarray(2, 8))).toBe(-790332482);
  });
});

describe('toPositive', () => {
  it('clears the sign bit (not Math.abs)', () => {
    expect(toPositive(-790332482)).toBe(1357151166);
    expect(toPositive(-1)).toBe(0x7fffffff);
    expect(toPositive(-(2 ** 31))).toBe(0);
    expect(toPositive(5)).toBe(5);
  });
});

describe('partitionFor', () => {
  it("puts 'foobar' on partition 16 of 50, as Kafka does", () => {
    expect(partitionFor('foobar', 50)).toBe(16);
    expect(partitionFor(utf8('foobar'), 50)).toBe(16);
  });

  it('hashes a string as its UTF-8 bytes, for short, multi-byte and long (past the scratch buffer) keys', () => {
    for (const key of ['', 'a', 'clé-ü-日本-😀', 'k'.repeat(341), 'k'.repeat(342), '😀'.repeat(600), 'é'.repeat(5000)]) {
      for (const numPartitions of [1, 7, 1000, 2 ** 31 - 1]) {
        expect(partitionFor(key, numPartitions)).toBe(toPositive(murmur2(utf8(key))) % numPartitions);
      }
    }
  });

  it.each([0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 53])('throws InvalidOptionsError for %d partitions', (numPartitions) => {
    expect(() => partitionFor('k', numPartitions)).toThrow(InvalidOptionsError);
  });

  it('throws InvalidOptionsError for a key that is neither a string nor a Uint8Array', () => {
    expect(() => partitionFor(null as unknown as string, 3)).toThrow(InvalidOptionsError);
    expect(() => partitionFor(42 as unknown as string, 3)).toThrow(InvalidOptionsError);
  });

  describe('agrees with KafkaJS DefaultPartitioner (the Java-compatible one) over generated keys', () => {
    const partitionCounts = [1, 3, 6, 50, 1000];
    const stringKeys = fc.oneof(
      fc.string({ unit: 'grapheme-ascii', maxLength: 40 }),
      fc.string({ unit: 'grapheme', maxLength: 40 }),
      fc.string({ unit: 'binary', maxLength: 40 }), // includes lone surrogates: both sides write U+FFFD
      fc.string({ unit: 'grapheme-ascii', minLength: 300, maxLength: 1200 }), // past the scratch buffer
    );

    it('for string keys', () => {
      fc.assert(
        fc.property(stringKeys, (key) => {
          expect(murmur2(utf8(key))).toBe(kafkajsMurmur2(Buffer.from(key, 'utf8')));
          for (const n of partitionCounts) expect(partitionFor(key, n)).toBe(kafkajsPartition(key, n));
        }),
        { numRuns: 4000 },
      );
    });

    it('for binary keys', () => {
      fc.assert(
        fc.property(fc.uint8Array({ maxLength: 100 }), (key) => {
          expect(murmur2(key)).toBe(kafkajsMurmur2(Buffer.from(key)));
          for (const n of partitionCounts) expect(partitionFor(key, n)).toBe(kafkajsPartition(key, n));
        }),
        { numRuns: 4000 },
      );
    });
  });
});
