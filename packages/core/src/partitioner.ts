/**
 * Kafka's default key partitioner: `toPositive(murmur2(keyBytes)) % numPartitions`.
 *
 * Invariant: a key lands on the partition a Java Kafka producer (and KafkaJS's
 * `DefaultPartitioner`) would pick for the same key bytes and partition count, so a topic can be
 * mirrored to or from Kafka without re-keying. That needs murmur2 bit for bit as
 * `org.apache.kafka.common.utils.Utils.murmur2` computes it with Java's 32-bit `int`: every
 * multiplication goes through `Math.imul` (a plain `*` would lose the low bits past 2^53), every
 * `>>>` is followed by an XOR that brings the value back to a signed 32-bit int, and the result is
 * signed, as in Java.
 *
 * String keys are hashed as their UTF-8 bytes, as Kafka's `StringSerializer` does. One
 * difference: a string with a lone surrogate (not valid Unicode) encodes here, as in KafkaJS, with
 * U+FFFD, while Java writes `?`; such keys may land elsewhere than with a Java producer.
 */
import { InvalidOptionsError } from './errors.js';

const SEED = 0x9747b28c;
const M = 0x5bd1e995;
const R = 24;

/**
 * Kafka's murmur2 hash of `bytes`, as the signed 32-bit integer Java returns.
 *
 * @example
 * ```ts
 * murmur2(new TextEncoder().encode('foobar')); // -790332482
 * ```
 */
export function murmur2(bytes: Uint8Array): number {
  return murmur2Prefix(bytes, bytes.length);
}

/** murmur2 of the first `length` bytes of `data` (lets a scratch buffer be hashed in place). */
function murmur2Prefix(data: Uint8Array, length: number): number {
  let h = SEED ^ length;
  const blocks = length >>> 2;
  for (let i = 0; i < blocks; i++) {
    const i4 = i << 2;
    let k = data[i4]! | (data[i4 + 1]! << 8) | (data[i4 + 2]! << 16) | (data[i4 + 3]! << 24);
    k = Math.imul(k, M);
    k ^= k >>> R;
    k = Math.imul(k, M);
    h = Math.imul(h, M) ^ k;
  }
  const tail = length & ~3;
  switch (length & 3) {
    case 3:
      h ^= data[tail + 2]! << 16;
    // falls through, as in Java
    case 2:
      h ^= data[tail + 1]! << 8;
    // falls through
    case 1:
      h ^= data[tail]!;
      h = Math.imul(h, M);
  }
  h ^= h >>> 13;
  h = Math.imul(h, M);
  h ^= h >>> 15;
  return h;
}

/**
 * Kafka's `Utils.toPositive`: clears the sign bit. Not `Math.abs`, which gives other partitions
 * than Kafka for every negative hash (and a negative number for -2^31).
 *
 * @example
 * ```ts
 * toPositive(-790332482); // 1357151166
 * ```
 */
export function toPositive(n: number): number {
  return n & 0x7fffffff;
}

// Keys are short; hashing them from one reused buffer saves an allocation per record. The
// functions here are synchronous, so nothing else can touch the buffer mid-use.
const SCRATCH = new Uint8Array(1024);
const utf8 = new TextEncoder();

/**
 * The partition Kafka's default partitioner picks for a keyed record:
 * `toPositive(murmur2(utf8(key))) % numPartitions`.
 *
 * @throws InvalidOptionsError when `numPartitions` is not a positive integer, or the key is
 * neither a string nor a Uint8Array.
 *
 * @example
 * ```ts
 * partitionFor('foobar', 50);                              // 16
 * partitionFor(new TextEncoder().encode('foobar'), 50);    // 16: a string hashes as its UTF-8 bytes
 * ```
 */
export function partitionFor(key: Uint8Array | string, numPartitions: number): number {
  if (!Number.isSafeInteger(numPartitions) || numPartitions < 1) {
    throw new InvalidOptionsError(`numPartitions must be a positive integer, got ${String(numPartitions)}`);
  }
  let hash: number;
  if (typeof key === 'string') {
    // A UTF-16 code unit takes at most 3 UTF-8 bytes, so this guarantees the whole key fits.
    if (key.length * 3 <= SCRATCH.length) {
      const { written } = utf8.encodeInto(key, SCRATCH);
      hash = murmur2Prefix(SCRATCH, written);
    } else {
      hash = murmur2(utf8.encode(key));
    }
  } else if (key instanceof Uint8Array) {
    hash = murmur2(key);
  } else {
    throw new InvalidOptionsError(`a partition key must be a string or a Uint8Array, got ${typeof key}`);
  }
  return toPositive(hash) % numPartitions;
}
