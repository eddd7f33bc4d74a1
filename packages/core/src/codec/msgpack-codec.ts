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
 *   scan costs one pass over the headers, far less than a second decode.
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
 * array becomes `null`.
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
    this.#scanStack = { remaining: new Float64Array(limits.maxDepth), isMap: new Uint8Array(limits.maxDepth) };
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
  /** Per open container: values still to read (a map counts keys and values). */
  readonly remaining: Float64Array;
  /** Per open container: 1 for a map, 0 for an array. */
  readonly isMap: Uint8Array;
}

const PROTO_KEY = [0x5f, 0x5f, 0x70, 0x72, 0x6f, 0x74, 0x6f, 0x5f, 0x5f]; // "__proto__" in UTF-8

function corrupt(message: string, at: number): CorruptRecordError {
  return new CorruptRecordError(`msgpack: ${message} (at byte ${at})`);
}

/**
 * Checks that `bytes` hold exactly one msgpack value the decoder may build under `limits`.
 * Returns whether it contains byte arrays. Throws `CorruptRecordError` otherwise.
 * Not re-entrant per `stack`; it calls nothing that could re-enter.
 */
function scanMsgpack(bytes: Uint8Array, limits: DecodeLimits, stack: ScanStack): boolean {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const end = bytes.byteLength;
  const { remaining, isMap } = stack;
  let pos = 0;
  let depth = 0;
  let hasBinary = false;

  for (;;) {
    if (pos >= end) throw corrupt('truncated: a value is missing', pos);
    const head = bytes[pos]!;
    const expectingKey = depth > 0 && isMap[depth - 1] === 1 && remaining[depth - 1]! % 2 === 0;
    const left = end - pos;
    // Each branch below either consumes a complete scalar (advancing pos) or opens a container.
    let containerSize = -1;
    let containerIsMap = false;
    let headerSize = 1;

    if (head <= 0x7f || head >= 0xe0 || head === 0xc0 || head === 0xc2 || head === 0xc3) {
      // positive/negative fixint, nil, false, true: the head byte is the whole value
      if (expectingKey) throw corrupt('map key is not a string', pos);
      pos += 1;
    } else if (head >= 0xa0 && head <= 0xbf) {
      pos = scanString(bytes, pos, 1, head - 0xa0, expectingKey, limits);
    } else if (head <= 0x8f) {
      containerSize = head - 0x80; // fixmap
      containerIsMap = true;
    } else if (head <= 0x9f) {
      containerSize = head - 0x90; // fixarray
    } else {
      if (expectingKey && head !== 0xd9 && head !== 0xda && head !== 0xdb) throw corrupt('map key is not a string', pos);
      switch (head) {
        case 0xc1:
          throw corrupt('byte 0xc1 is never used in msgpack', pos);
        case 0xcc: // uint 8
        case 0xd0: // int 8
          pos += need(left, 2, pos);
          break;
        case 0xcd: // uint 16
        case 0xd1: // int 16
          pos += need(left, 3, pos);
          break;
        case 0xca: // float 32
        case 0xce: // uint 32
        case 0xd2: // int 32
          pos += need(left, 5, pos);
          break;
        case 0xcb: // float 64
        case 0xcf: // uint 64
        case 0xd3: // int 64
          pos += need(left, 9, pos);
          break;
        case 0xd9: // str 8
          need(left, 2, pos);
          pos = scanString(bytes, pos, 2, bytes[pos + 1]!, expectingKey, limits);
          break;
        case 0xda: // str 16
          need(left, 3, pos);
          pos = scanString(bytes, pos, 3, view.getUint16(pos + 1), expectingKey, limits);
          break;
        case 0xdb: // str 32
          need(left, 5, pos);
          pos = scanString(bytes, pos, 5, view.getUint32(pos + 1), expectingKey, limits);
          break;
        case 0xc4: // bin 8
        case 0xc5: // bin 16
        case 0xc6: {
          // bin 32
          const lengthBytes = head === 0xc4 ? 1 : head === 0xc5 ? 2 : 4;
          need(left, 1 + lengthBytes, pos);
          const length = readLength(view, pos + 1, lengthBytes);
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
          pos = scanExtension(view, pos, 0, 1 << (head - 0xd4), left);
          break;
        case 0xc7: // ext 8
        case 0xc8: // ext 16
        case 0xc9: {
          // ext 32
          const lengthBytes = head === 0xc7 ? 1 : head === 0xc8 ? 2 : 4;
          need(left, 1 + lengthBytes, pos);
          pos = scanExtension(view, pos, lengthBytes, readLength(view, pos + 1, lengthBytes), left);
          break;
        }
        case 0xdc: // array 16
          need(left, 3, pos);
          containerSize = view.getUint16(pos + 1);
          headerSize = 3;
          break;
        case 0xdd: // array 32
          need(left, 5, pos);
          containerSize = view.getUint32(pos + 1);
          headerSize = 5;
          break;
        case 0xde: // map 16
          need(left, 3, pos);
          containerSize = view.getUint16(pos + 1);
          containerIsMap = true;
          headerSize = 3;
          break;
        case 0xdf: // map 32
          need(left, 5, pos);
          containerSize = view.getUint32(pos + 1);
          containerIsMap = true;
          headerSize = 5;
          break;
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
      const values = containerIsMap ? containerSize * 2 : containerSize;
      if (values > left - headerSize) {
        throw corrupt(`${kind} declares ${containerSize} entries but only ${left - headerSize} bytes follow`, pos);
      }
      pos += headerSize;
      if (values > 0) {
        remaining[depth] = values;
        isMap[depth] = containerIsMap ? 1 : 0;
        depth++;
        continue;
      }
    }

    // A value is complete: count it against the containers it completes.
    while (depth > 0) {
      const stillToRead = remaining[depth - 1]! - 1;
      remaining[depth - 1] = stillToRead;
      if (stillToRead > 0) break;
      depth--;
    }
    if (depth === 0) break;
  }

  if (pos !== end) throw corrupt(`${end - pos} trailing byte(s) after the value`, pos);
  return hasBinary;
}

function need(left: number, size: number, at: number): number {
  if (left < size) throw corrupt(`truncated: ${size} bytes needed, ${left} left`, at);
  return size;
}

function readLength(view: DataView, offset: number, lengthBytes: number): number {
  return lengthBytes === 1 ? view.getUint8(offset) : lengthBytes === 2 ? view.getUint16(offset) : view.getUint32(offset);
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
  if (isKey && length === PROTO_KEY.length && PROTO_KEY.every((byte, i) => bytes[pos + headerSize + i] === byte)) {
    throw corrupt('the map key "__proto__" is refused', pos);
  }
  return pos + headerSize + length;
}

/** Accepts only the timestamp extension (type -1, 4, 8 or 12 bytes). Returns the position after it. */
function scanExtension(view: DataView, pos: number, lengthBytes: number, length: number, left: number): number {
  const headerSize = 1 + lengthBytes + 1; // head, length, type
  need(left, headerSize, pos);
  const type = view.getInt8(pos + 1 + lengthBytes);
  if (type !== EXT_TIMESTAMP) throw corrupt(`extension type ${type} is not accepted (only the timestamp, -1)`, pos);
  if (length !== 4 && length !== 8 && length !== 12) throw corrupt(`timestamp of ${length} bytes (4, 8 or 12 expected)`, pos);
  if (headerSize + length > left) throw corrupt(`timestamp declares ${length} bytes but only ${left - headerSize} follow`, pos);
  return pos + headerSize + length;
}
