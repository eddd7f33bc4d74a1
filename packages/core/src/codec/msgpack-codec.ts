/**
 * The msgpack codec, Annals' default: values are JSON-like objects plus `Date`, `bigint` and
 * `Uint8Array`, all of which come back as the same type.
 *
 * Invariant: every record this codec writes, a codec with the same limits can read back equal,
 * and every byte string it is given to read either decodes within the limits or fails with
 * `CorruptRecordError`, without allocating what a header merely claims.
 *
 * How the code keeps it:
 * - **Decode = scan, then decode.** `@msgpack/msgpack` checks lengths against its max options but
 *   has no depth limit, allocates an array of the declared size before reading its elements, and
 *   turns unknown extension types into `ExtData` objects. So `scanMsgpack` first walks the bytes
 *   once: it reads only headers (no values are built), checks every declared length against the
 *   limits *and* against the bytes actually left (an array of n elements needs at least n bytes,
 *   a map of n entries at least 2n), counts nesting depth, accepts only string map keys and only
 *   the timestamp extension (-1), refuses `__proto__` keys and trailing bytes. Only bytes that
 *   pass reach the library's decoder, which gets the same limits as a second line of defence. The
 *   scan reads headers only and skips string and byte contents: about 0.35 µs for a 200-byte
 *   event, against about 1.3 µs for the library's decode of it.
 * - **`__proto__` keys are refused, not tolerated.** The library assigns decoded entries with
 *   `map[key] = value`, where `__proto__` would reach the prototype setter; it refuses that key
 *   itself, and so do we, in the scan. The alternative, null-prototype objects, would surprise
 *   every consumer (`toString`, `hasOwnProperty`, `instanceof Object`, test equality) for the sake
 *   of a key no legitimate payload needs. Keys like `constructor` and `prototype` are plain own
 *   properties on a fresh object and change no prototype.
 * - **Encode = check, then encode.** The library silently turns `Map`/`Set`/class instances into
 *   `{}` or their own fields, wraps out-of-range bigints modulo 2^64, and writes invalid dates as
 *   garbage. Zod cannot be relied on to stop these (`z.map()`, `z.unknown()`), so `checkEncodable`
 *   walks the value first and throws `TypeError` for anything that would not come back as itself
 *   and `RangeError` for anything over the limits (a cycle shows up as too deep). No Annals error
 *   class fits a programmer passing an unsupported value; the producer can wrap these with
 *   topic and event-type context.
 * - **Instances are reused.** One `Encoder` and one `Decoder` per codec: each call resets their
 *   state (also after a throw) and their limits are read-only. The encoder's scratch buffer only
 *   grows, so after an unusually large record it is replaced rather than kept for ever.
 */
import {
  Decoder,
  EXT_TIMESTAMP,
  Encoder,
  ExtData,
  decodeTimestampToTimeSpec,
  encodeTimestampExtension,
  type ExtensionCodecType,
} from '@msgpack/msgpack';
import { CorruptRecordError, InvalidOptionsError } from '../errors.js';
import { resolveDecodeLimits, type Codec, type DecodeLimits, type DecodeLimitsInput } from './codec.js';

/** Options of {@link msgpackCodec}. */
export interface MsgpackCodecOptions {
  /**
   * How much one decode may build; encode refuses values beyond the same limits.
   * @default the defaults of {@link DecodeLimitsInput}
   */
  readonly limits?: DecodeLimitsInput;
}

/**
 * The default codec: MessagePack, with `Date` as the timestamp extension and `bigint` as 64-bit
 * integers, safe to use on untrusted bytes.
 *
 * What round-trips: `null`, booleans, numbers (`-0` becomes `0`), strings, `bigint` from -2^63
 * to 2^64 - 1 (always back as `bigint`, while numbers stay numbers), valid `Date`s (millisecond
 * precision), `Uint8Array` and `Buffer` (back as a `Uint8Array` that owns its bytes), arrays,
 * and plain or null-prototype objects (back as plain objects, own enumerable string keys in
 * order). Like JSON, a property whose value is `undefined` is left out and `undefined` in an
 * array (or at the top) becomes `null`.
 *
 * `encode` throws `TypeError` for `Map`, `Set`, class instances, functions, symbols, typed
 * arrays other than `Uint8Array`, invalid dates and `__proto__` keys; `RangeError` for bigints
 * out of range and for values over the limits (cycles included). `decode` throws
 * `CorruptRecordError` for anything it cannot decode within the limits.
 *
 * @example
 * ```ts
 * const codec = msgpackCodec({ limits: { maxDepth: 16 } });
 * const bytes = codec.encode({ id: 42n, at: new Date(0), tags: ['a'] });
 * codec.decode(bytes); // { id: 42n, at: Date(1970-01-01T00:00:00.000Z), tags: ['a'] }
 * codec.decode(Uint8Array.of(0xc1)); // throws CorruptRecordError
 * ```
 */
export function msgpackCodec(options: MsgpackCodecOptions = {}): Codec {
  if (options === null || typeof options !== 'object') {
    throw new InvalidOptionsError(`msgpackCodec options must be an object, got ${String(options)}`);
  }
  return new MsgpackCodec(resolveDecodeLimits(options.limits));
}

// An encoder whose buffer grew past this is dropped after use, so one big record does not pin
// twice its size in memory for the life of the codec.
const ENCODER_BUFFER_KEEP_BYTES = 1024 * 1024;

class MsgpackCodec implements Codec {
  readonly name = 'msgpack';
  readonly contentType = 'application/msgpack';
  readonly #limits: DecodeLimits;
  readonly #decoder: Decoder;
  readonly #scanStack: ScanStack;
  #encoder: Encoder;

  constructor(limits: DecodeLimits) {
    this.#limits = limits;
    this.#encoder = this.#newEncoder();
    this.#decoder = new Decoder({
      extensionCodec: timestampOnly,
      useBigInt64: true,
      maxStrLength: limits.maxStringLength,
      maxBinLength: limits.maxBinaryLength,
      maxArrayLength: limits.maxArrayLength,
      maxMapLength: limits.maxMapLength,
      maxExtLength: 12, // the largest timestamp
      mapKeyConverter: stringKeysOnly,
    });
    this.#scanStack = { remaining: new Float64Array(limits.maxDepth), state: new Uint8Array(limits.maxDepth) };
  }

  encode(value: unknown): Uint8Array {
    checkEncodable(value, 0, this.#limits, []);
    const bytes = this.#encoder.encode(value);
    if (bytes.byteLength > ENCODER_BUFFER_KEEP_BYTES) this.#encoder = this.#newEncoder();
    return bytes;
  }

  decode(bytes: Uint8Array): unknown {
    if (!(bytes instanceof Uint8Array)) {
      throw new TypeError(`msgpack codec decodes a Uint8Array, got ${typeof bytes}`);
    }
    try {
      const hasBinary = scanMsgpack(bytes, this.#limits, this.#scanStack);
      // Decoded byte arrays are views into the input. Copy the input when there are any, so a
      // value never aliases bytes the caller (or an in-memory log shared by consumers) still
      // owns; the copy is also a plain Uint8Array, so a Buffer input gives Uint8Array values.
      return this.#decoder.decode(hasBinary ? new Uint8Array(bytes) : bytes);
    } catch (error) {
      if (error instanceof CorruptRecordError) throw error;
      const reason = error instanceof Error ? error.message : String(error);
      throw new CorruptRecordError(`msgpack: ${reason}`, { cause: error });
    }
  }

  #newEncoder(): Encoder {
    return new Encoder({
      extensionCodec: timestampOnly,
      useBigInt64: true,
      ignoreUndefined: true,
      // A backstop only: checkEncodable already refused anything deeper. The library counts the
      // top-level value as depth 1 and a scalar inside the deepest container as maxDepth + 1.
      maxDepth: this.#limits.maxDepth + 1,
    });
  }
}

// ---------------------------------------------------------------------------------------------
// Extensions: the timestamp and nothing else.

const NANOS_PER_SECOND = 1_000_000_000;

/** Encodes `Date` as the timestamp extension; decodes only that extension, checked. */
const timestampOnly: ExtensionCodecType<undefined> = {
  tryToEncode(object: unknown): ExtData | null {
    if (!(object instanceof Date)) return null;
    // checkEncodable has refused invalid dates, so the library's encoder returns bytes here.
    return new ExtData(EXT_TIMESTAMP, encodeTimestampExtension(object)!);
  },
  decode(data: Uint8Array, extensionType: number): unknown {
    if (extensionType !== EXT_TIMESTAMP) {
      throw new CorruptRecordError(`msgpack: extension type ${extensionType} is not accepted (only the timestamp, -1)`);
    }
    const { sec, nsec } = decodeTimestampToTimeSpec(data);
    if (nsec >= NANOS_PER_SECOND) {
      throw new CorruptRecordError(`msgpack: timestamp nanoseconds ${nsec} out of range`);
    }
    const date = new Date(sec * 1000 + nsec / 1_000_000);
    if (Number.isNaN(date.getTime())) {
      throw new CorruptRecordError(`msgpack: timestamp ${sec}s is outside the range of Date`);
    }
    return date;
  },
};

function stringKeysOnly(key: unknown): string {
  if (typeof key === 'string') return key;
  // The scan refuses non-string keys first; this stays as the library-level backstop.
  throw new CorruptRecordError(`msgpack: map key of type ${typeof key}; only string keys are accepted`);
}

// ---------------------------------------------------------------------------------------------
// Encode side: refuse what would not come back as itself.

const INT64_MIN = -(1n << 63n);
const UINT64_MAX = (1n << 64n) - 1n;

/**
 * Throws if `value` would be mangled by the encoder or refused by a decoder with these limits.
 * Recursion is bounded by `limits.maxDepth` (at most 1000), and `path` is only formatted when
 * something is wrong.
 */
function checkEncodable(value: unknown, depth: number, limits: DecodeLimits, path: (string | number)[]): void {
  switch (typeof value) {
    case 'undefined':
    case 'boolean':
    case 'number':
      return;
    case 'string':
      checkString(value, limits, path);
      return;
    case 'bigint':
      if (value < INT64_MIN || value > UINT64_MAX) {
        throw new RangeError(`msgpack codec cannot encode ${at(path)}: bigint ${value} is outside -2^63..2^64-1`);
      }
      return;
    case 'symbol':
    case 'function':
      throw new TypeError(`msgpack codec cannot encode ${at(path)}: a ${typeof value} is not data`);
  }
  if (value === null || typeof value !== 'object') return; // null; the switch handled the rest
  if (value instanceof Date) {
    if (Number.isNaN(value.getTime())) throw new TypeError(`msgpack codec cannot encode ${at(path)}: invalid Date`);
    return;
  }
  if (value instanceof Uint8Array) {
    if (value.byteLength > limits.maxBinaryLength) {
      throw new RangeError(
        `msgpack codec cannot encode ${at(path)}: ${value.byteLength} bytes exceed maxBinaryLength ${limits.maxBinaryLength}`,
      );
    }
    return;
  }
  if (depth + 1 > limits.maxDepth && (Array.isArray(value) || isPlainObject(value))) {
    throw new RangeError(
      `msgpack codec cannot encode ${at(path)}: nesting deeper than maxDepth ${limits.maxDepth} (is there a cycle?)`,
    );
  }
  if (Array.isArray(value)) {
    if (value.length > limits.maxArrayLength) {
      throw new RangeError(
        `msgpack codec cannot encode ${at(path)}: ${value.length} elements exceed maxArrayLength ${limits.maxArrayLength}`,
      );
    }
    for (let i = 0; i < value.length; i++) {
      path.push(i);
      checkEncodable(value[i], depth + 1, limits, path);
      path.pop();
    }
    return;
  }
  if (ArrayBuffer.isView(value)) {
    throw new TypeError(
      `msgpack codec cannot encode ${at(path)}: ${value.constructor.name} would come back as Uint8Array; pass a Uint8Array`,
    );
  }
  if (!isPlainObject(value)) {
    throw new TypeError(
      `msgpack codec cannot encode ${at(path)}: ${kindOf(value)} would lose its type or contents; ` +
        'convert it to a plain object or array first',
    );
  }
  const record = value as Record<string, unknown>;
  let entries = 0;
  for (const key of Object.keys(record)) {
    const entry = record[key];
    if (entry === undefined) continue; // left out by the encoder (ignoreUndefined), like JSON
    if (key === '__proto__') {
      throw new TypeError(`msgpack codec cannot encode ${at(path)}: the key "__proto__" is refused by every decoder`);
    }
    entries++;
    path.push(key);
    checkString(key, limits, path);
    checkEncodable(entry, depth + 1, limits, path);
    path.pop();
  }
  if (entries > limits.maxMapLength) {
    throw new RangeError(
      `msgpack codec cannot encode ${at(path)}: ${entries} entries exceed maxMapLength ${limits.maxMapLength}`,
    );
  }
}

function checkString(value: string, limits: DecodeLimits, path: (string | number)[]): void {
  // A UTF-16 code unit takes at most 3 UTF-8 bytes, so only long strings need counting.
  if (value.length * 3 <= limits.maxStringLength) return;
  const byteLength = Buffer.byteLength(value, 'utf8');
  if (byteLength > limits.maxStringLength) {
    throw new RangeError(
      `msgpack codec cannot encode ${at(path)}: a string of ${byteLength} UTF-8 bytes exceeds maxStringLength ${limits.maxStringLength}`,
    );
  }
}

/** An object whose prototype is `Object.prototype` of any realm, or `null`. */
function isPlainObject(value: object): boolean {
  const prototype: unknown = Object.getPrototypeOf(value);
  return prototype === null || Object.getPrototypeOf(prototype) === null;
}

function kindOf(value: object): string {
  const name: unknown = (value as { constructor?: { name?: unknown } }).constructor?.name;
  if (typeof name !== 'string' || name === '') return 'an object with a custom prototype';
  return /^[AEIOU]/.test(name) ? `an ${name}` : `a ${name}`;
}

function at(path: readonly (string | number)[]): string {
  let out = 'value';
  for (const segment of path) {
    out += typeof segment === 'number' ? `[${segment}]` : /^[A-Za-z_$][\w$]*$/.test(segment) ? `.${segment}` : `[${JSON.stringify(segment)}]`;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Decode side: one pass over the headers before anything is built.

interface ScanStack {
  /** Per open container: elements (array) or entries (map) still to read. */
  readonly remaining: Float64Array;
  /** Per open container: what comes next, one of ARRAY, MAP_KEY, MAP_VALUE. */
  readonly state: Uint8Array;
}

const ARRAY = 0;
const MAP_KEY = 1;
const MAP_VALUE = 2;

/**
 * For each head byte of a scalar with a fixed size (fixint, nil, booleans, floats, ints), that
 * size in bytes, head included; 0 for every other head. One table look-up replaces a chain of
 * comparisons on the hottest path.
 */
const FIXED_SIZE = (() => {
  const table = new Uint8Array(256);
  for (let head = 0x00; head <= 0x7f; head++) table[head] = 1; // positive fixint
  for (let head = 0xe0; head <= 0xff; head++) table[head] = 1; // negative fixint
  table[0xc0] = 1; // nil
  table[0xc2] = 1; // false
  table[0xc3] = 1; // true
  table[0xcc] = table[0xd0] = 2; // uint 8, int 8
  table[0xcd] = table[0xd1] = 3; // uint 16, int 16
  table[0xca] = table[0xce] = table[0xd2] = 5; // float 32, uint 32, int 32
  table[0xcb] = table[0xcf] = table[0xd3] = 9; // float 64, uint 64, int 64
  return table;
})();

const PROTO_KEY = Uint8Array.of(0x5f, 0x5f, 0x70, 0x72, 0x6f, 0x74, 0x6f, 0x5f, 0x5f); // "__proto__"

function corrupt(message: string, at: number): CorruptRecordError {
  return new CorruptRecordError(`msgpack: ${message} (at byte ${at})`);
}

/**
 * Checks that `bytes` hold exactly one msgpack value the decoder may build under `limits`.
 * Returns whether it contains byte arrays. Throws `CorruptRecordError` otherwise.
 * Not re-entrant per `stack`; it calls nothing that could re-enter.
 */
function scanMsgpack(bytes: Uint8Array, limits: DecodeLimits, stack: ScanStack): boolean {
  const end = bytes.byteLength;
  const { remaining, state } = stack;
  let pos = 0;
  let depth = 0;
  let hasBinary = false;

  for (;;) {
    if (pos >= end) throw corrupt('truncated: a value is missing', pos);
    const head = bytes[pos]!;
    const expectingKey = depth > 0 && state[depth - 1] === MAP_KEY;
    const left = end - pos;
    const fixedSize = FIXED_SIZE[head]!;
    // Each branch below either consumes a complete scalar (advancing pos) or opens a container.
    let containerSize = -1;
    let containerIsMap = false;
    let headerSize = 1;

    if (fixedSize !== 0) {
      if (expectingKey) throw corrupt('map key is not a string', pos);
      if (left < fixedSize) throw truncated(fixedSize, left, pos);
      pos += fixedSize;
    } else if ((head & 0xe0) === 0xa0) {
      pos = scanString(bytes, pos, 1, head & 0x1f, expectingKey, limits); // fixstr
    } else if ((head & 0xf0) === 0x80) {
      containerSize = head & 0x0f; // fixmap
      containerIsMap = true;
    } else if ((head & 0xf0) === 0x90) {
      containerSize = head & 0x0f; // fixarray
    } else {
      if (expectingKey && head !== 0xd9 && head !== 0xda && head !== 0xdb) throw corrupt('map key is not a string', pos);
      switch (head) {
        case 0xd9: // str 8
        case 0xda: // str 16
        case 0xdb: {
          // str 32
          const lengthBytes = head === 0xd9 ? 1 : head === 0xda ? 2 : 4;
          if (left < 1 + lengthBytes) throw truncated(1 + lengthBytes, left, pos);
          pos = scanString(bytes, pos, 1 + lengthBytes, readLength(bytes, pos + 1, lengthBytes), expectingKey, limits);
          break;
        }
        case 0xc4: // bin 8
        case 0xc5: // bin 16
        case 0xc6: {
          // bin 32
          const lengthBytes = head === 0xc4 ? 1 : head === 0xc5 ? 2 : 4;
          if (left < 1 + lengthBytes) throw truncated(1 + lengthBytes, left, pos);
          const length = readLength(bytes, pos + 1, lengthBytes);
          if (length > limits.maxBinaryLength) {
            throw corrupt(`byte array of ${length} bytes exceeds maxBinaryLength ${limits.maxBinaryLength}`, pos);
          }
          if (1 + lengthBytes + length > left) {
            throw corrupt(`byte array declares ${length} bytes but only ${left - 1 - lengthBytes} follow`, pos);
          }
          hasBinary = true;
          pos += 1 + lengthBytes + length;
          break;
        }
        case 0xd4: // fixext 1
        case 0xd5: // fixext 2
        case 0xd6: // fixext 4
        case 0xd7: // fixext 8
        case 0xd8: // fixext 16
          pos = scanExtension(bytes, pos, 0, 1 << (head - 0xd4), left);
          break;
        case 0xc7: // ext 8
        case 0xc8: // ext 16
        case 0xc9: {
          // ext 32
          const lengthBytes = head === 0xc7 ? 1 : head === 0xc8 ? 2 : 4;
          if (left < 1 + lengthBytes) throw truncated(1 + lengthBytes, left, pos);
          pos = scanExtension(bytes, pos, lengthBytes, readLength(bytes, pos + 1, lengthBytes), left);
          break;
        }
        case 0xdc: // array 16
        case 0xde: // map 16
          if (left < 3) throw truncated(3, left, pos);
          containerSize = readLength(bytes, pos + 1, 2);
          containerIsMap = head === 0xde;
          headerSize = 3;
          break;
        case 0xdd: // array 32
        case 0xdf: // map 32
          if (left < 5) throw truncated(5, left, pos);
          containerSize = readLength(bytes, pos + 1, 4);
          containerIsMap = head === 0xdf;
          headerSize = 5;
          break;
        case 0xc1:
          throw corrupt('byte 0xc1 is never used in msgpack', pos);
        default:
          // Unreachable: every byte value is a msgpack head; kept so a gap would fail closed.
          throw corrupt(`unknown type byte 0x${head.toString(16)}`, pos);
      }
    }

    if (containerSize >= 0) {
      if (expectingKey) throw corrupt('map key is not a string', pos);
      const kind = containerIsMap ? 'map' : 'array';
      const limit = containerIsMap ? limits.maxMapLength : limits.maxArrayLength;
      if (containerSize > limit) {
        throw corrupt(`${kind} of ${containerSize} entries exceeds ${containerIsMap ? 'maxMapLength' : 'maxArrayLength'} ${limit}`, pos);
      }
      if (depth >= limits.maxDepth) throw corrupt(`nesting deeper than maxDepth ${limits.maxDepth}`, pos);
      // Every element takes at least one byte, every map entry two: a header promising more
      // than the bytes left is refused before the decoder allocates anything for it.
      if ((containerIsMap ? containerSize * 2 : containerSize) > left - headerSize) {
        throw corrupt(`${kind} declares ${containerSize} entries but only ${left - headerSize} bytes follow`, pos);
      }
      pos += headerSize;
      if (containerSize > 0) {
        remaining[depth] = containerSize;
        state[depth] = containerIsMap ? MAP_KEY : ARRAY;
        depth++;
        continue;
      }
    }

    // A value is complete: count it against the containers it completes.
    while (depth > 0) {
      const top = depth - 1;
      if (state[top] === MAP_KEY) {
        state[top] = MAP_VALUE; // a key: the entry is half read
        break;
      }
      if (state[top] === MAP_VALUE) state[top] = MAP_KEY;
      const stillToRead = remaining[top]! - 1;
      remaining[top] = stillToRead;
      if (stillToRead > 0) break;
      depth = top; // the container is complete: it is the value its parent was waiting for
    }
    if (depth === 0) break;
  }

  if (pos !== end) throw corrupt(`${end - pos} trailing byte(s) after the value`, pos);
  return hasBinary;
}

function truncated(size: number, left: number, at: number): CorruptRecordError {
  return corrupt(`truncated: ${size} bytes needed, ${left} left`, at);
}

/** A big-endian unsigned length of 1, 2 or 4 bytes at `offset` (the caller checked they exist). */
function readLength(bytes: Uint8Array, offset: number, lengthBytes: number): number {
  if (lengthBytes === 1) return bytes[offset]!;
  if (lengthBytes === 2) return (bytes[offset]! << 8) | bytes[offset + 1]!;
  // * 2^24 rather than << 24, which would turn lengths from 2^31 up negative.
  return bytes[offset]! * 0x100_0000 + ((bytes[offset + 1]! << 16) | (bytes[offset + 2]! << 8) | bytes[offset + 3]!);
}

/** Returns the position after the string; `headerSize` includes the head byte. */
function scanString(
  bytes: Uint8Array,
  pos: number,
  headerSize: number,
  length: number,
  isKey: boolean,
  limits: DecodeLimits,
): number {
  if (length > limits.maxStringLength) {
    throw corrupt(`string of ${length} bytes exceeds maxStringLength ${limits.maxStringLength}`, pos);
  }
  const left = bytes.byteLength - pos;
  if (headerSize + length > left) {
    throw corrupt(`string declares ${length} bytes but only ${left - headerSize} follow`, pos);
  }
  if (isKey && length === PROTO_KEY.length && isProtoKey(bytes, pos + headerSize)) {
    throw corrupt('the map key "__proto__" is refused', pos);
  }
  return pos + headerSize + length;
}

function isProtoKey(bytes: Uint8Array, offset: number): boolean {
  for (let i = 0; i < PROTO_KEY.length; i++) if (bytes[offset + i] !== PROTO_KEY[i]) return false;
  return true;
}

/** Accepts only the timestamp extension (type -1, 4, 8 or 12 bytes). Returns the position after it. */
function scanExtension(bytes: Uint8Array, pos: number, lengthBytes: number, length: number, left: number): number {
  const headerSize = 1 + lengthBytes + 1; // head, length, type
  if (left < headerSize) throw truncated(headerSize, left, pos);
  const type = (bytes[pos + 1 + lengthBytes]! << 24) >> 24; // the type byte is signed
  if (type !== EXT_TIMESTAMP) throw corrupt(`extension type ${type} is not accepted (only the timestamp, -1)`, pos);
  if (length !== 4 && length !== 8 && length !== 12) throw corrupt(`timestamp of ${length} bytes (4, 8 or 12 expected)`, pos);
  if (headerSize + length > left) throw corrupt(`timestamp declares ${length} bytes but only ${left - headerSize} follow`, pos);
  return pos + headerSize + length;
}
