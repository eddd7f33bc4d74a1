/**
 * The codec port: how a record's value becomes bytes in the log and back.
 *
 * Records are read by consumers that did not write them, possibly years later and possibly from a
 * log someone else can write to, so `decode` treats its input as untrusted: it must fail with a
 * `CorruptRecordError` instead of allocating what a header claims, recursing without bound
 * or returning objects that can pollute a prototype. The limits below say how much a single
 * decode may build; they are validated once and frozen.
 */
import { InvalidOptionsError } from '../errors.js';

/**
 * Turns record values into bytes and back. The `name` is stored with each record so a reader
 * knows which codec wrote it.
 *
 * @example
 * ```ts
 * const codec = msgpackCodec();
 * const bytes = codec.encode({ orderId: 'o-1', placedAt: new Date() });
 * const value = codec.decode(bytes); // { orderId: 'o-1', placedAt: Date }
 * ```
 */
export interface Codec {
  /** Short stable name stored with records, e.g. 'msgpack' | 'json'. */
  readonly name: string;
  /** MIME type, e.g. 'application/msgpack'. */
  readonly contentType: string;
  /**
   * @throws TypeError when the value holds something the codec cannot represent faithfully
   * (each codec documents what), RangeError when it is larger or deeper than the codec's
   * {@link DecodeLimits} (a record that could not be read back is never written).
   */
  encode(value: unknown): Uint8Array;
  /** Throws CorruptRecordError on bytes it cannot decode safely. */
  decode(bytes: Uint8Array): unknown;
}

/**
 * How much one `decode` call may build. Lengths are checked against the header before anything
 * is allocated. Every field is optional; the defaults suit event payloads.
 *
 * @example
 * ```ts
 * const codec = msgpackCodec({ limits: { maxStringLength: 1024 * 1024, maxDepth: 16 } });
 * ```
 */
export interface DecodeLimitsInput {
  /**
   * Longest string, in UTF-8 bytes (map keys included).
   * @default 16_777_216 (16 MiB)
   */
  readonly maxStringLength?: number;
  /**
   * Longest byte array (`Uint8Array`), in bytes.
   * @default 16_777_216 (16 MiB)
   */
  readonly maxBinaryLength?: number;
  /**
   * Most elements in one array.
   * @default 1_000_000
   */
  readonly maxArrayLength?: number;
  /**
   * Most entries in one object (map).
   * @default 1_000_000
   */
  readonly maxMapLength?: number;
  /**
   * Deepest nesting of arrays and objects: `[]` and `{}` have depth 1, `[[1]]` has depth 2.
   * At most 1000, because encoders (ours and `JSON.stringify`) recurse once per level.
   * @default 64
   */
  readonly maxDepth?: number;
}

/** {@link DecodeLimitsInput} resolved: every field set, validated, frozen. */
export interface DecodeLimits {
  readonly maxStringLength: number;
  readonly maxBinaryLength: number;
  readonly maxArrayLength: number;
  readonly maxMapLength: number;
  readonly maxDepth: number;
}

// msgpack cannot express a length above 2^32 - 1, so a larger limit would only pretend.
const UINT32_MAX = 0xffff_ffff;

const LIMIT_SPECS: Readonly<Record<keyof DecodeLimits, { readonly default: number; readonly max: number }>> = {
  maxStringLength: { default: 16 * 1024 * 1024, max: UINT32_MAX },
  maxBinaryLength: { default: 16 * 1024 * 1024, max: UINT32_MAX },
  maxArrayLength: { default: 1_000_000, max: UINT32_MAX },
  maxMapLength: { default: 1_000_000, max: UINT32_MAX },
  maxDepth: { default: 64, max: 1000 },
};

const LIMIT_KEYS = Object.keys(LIMIT_SPECS) as readonly (keyof DecodeLimits)[];

/**
 * Validates decode limits and fills in the defaults.
 *
 * @throws InvalidOptionsError for an unknown key (a typo would otherwise be ignored silently) or
 * a value that is not an integer in `1..max`.
 *
 * @example
 * ```ts
 * resolveDecodeLimits({ maxDepth: 16 }).maxDepth; // 16
 * resolveDecodeLimits().maxArrayLength;           // 1_000_000
 * resolveDecodeLimits({ maxDepth: 0 });           // throws InvalidOptionsError
 * ```
 */
export function resolveDecodeLimits(input: DecodeLimitsInput = {}): DecodeLimits {
  if (input === null || typeof input !== 'object' || Array.isArray(input)) {
    throw new InvalidOptionsError(`decode limits must be an object, got ${describe(input)}`);
  }
  for (const key of Object.keys(input)) {
    if (!Object.hasOwn(LIMIT_SPECS, key)) {
      throw new InvalidOptionsError(`unknown decode limit "${key}"; known limits: ${LIMIT_KEYS.join(', ')}`);
    }
  }
  const resolved = {} as Record<keyof DecodeLimits, number>;
  for (const key of LIMIT_KEYS) {
    const spec = LIMIT_SPECS[key];
    const value: unknown = input[key];
    if (value === undefined) {
      resolved[key] = spec.default;
    } else if (typeof value === 'number' && Number.isInteger(value) && value >= 1 && value <= spec.max) {
      resolved[key] = value;
    } else {
      throw new InvalidOptionsError(`decode limit ${key} must be an integer from 1 to ${spec.max}, got ${describe(value)}`);
    }
  }
  return Object.freeze(resolved);
}

function describe(value: unknown): string {
  return typeof value === 'string' ? JSON.stringify(value) : typeof value === 'bigint' ? `${value}n` : String(value);
}

