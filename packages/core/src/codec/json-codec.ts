/**
 * The JSON codec: UTF-8 JSON, for topics that other tools read as text. It has exactly the
 * semantics of `JSON.stringify` / `JSON.parse`, which is why msgpack is the default:
 * a `Date` is written as its ISO string and read back as a string, `Map`/`Set` become `{}`,
 * `undefined` properties vanish, and `bigint` cannot be written at all.
 *
 * Reading untrusted bytes: invalid UTF-8 and invalid JSON fail with `CorruptRecordError`.
 * Lengths need no limits here (nothing is declared ahead of the bytes that hold it), but
 * nesting does: `JSON.parse` happily builds a million levels that the consumer's next
 * recursive step (`JSON.stringify`, zod) then overflows on. So a scan over the bytes counts
 * brackets outside strings and refuses anything deeper than `maxDepth` before parsing, and
 * `encode` refuses to write what `decode` would refuse. `"__proto__"` keys are harmless:
 * `JSON.parse` defines every key as an own data property, so no prototype changes.
 */
import { CorruptRecordError, InvalidOptionsError } from '../errors.js';
import { resolveDecodeLimits, type Codec } from './codec.js';

/** Options of {@link jsonCodec}. */
export interface JsonCodecOptions {
  /**
   * Deepest nesting of arrays and objects, on decode and on encode (as `DecodeLimitsInput.maxDepth`).
   * @default 64
   */
  readonly maxDepth?: number;
}

/**
 * A codec writing UTF-8 JSON (`application/json`).
 *
 * `encode` throws `TypeError` for values JSON cannot hold (`bigint`, cycles, a top-level
 * `undefined`, function or symbol) and `RangeError` for nesting deeper than `maxDepth`.
 * `decode` throws `CorruptRecordError` for invalid UTF-8, invalid JSON or nesting deeper than
 * `maxDepth`.
 *
 * @example
 * ```ts
 * const codec = jsonCodec();
 * const bytes = codec.encode({ id: 'o-1', at: new Date(0) });
 * codec.decode(bytes); // { id: 'o-1', at: '1970-01-01T00:00:00.000Z' }, a string, not a Date
 * codec.encode({ id: 1n }); // throws TypeError: use msgpackCodec() for bigint
 * ```
 */
export function jsonCodec(options: JsonCodecOptions = {}): Codec {
  if (options === null || typeof options !== 'object') {
    throw new InvalidOptionsError(`jsonCodec options must be an object, got ${String(options)}`);
  }
  return new JsonCodec(resolveDecodeLimits({ maxDepth: options.maxDepth }).maxDepth);
}

const utf8Encoder = new TextEncoder();
// fatal: invalid UTF-8 is corruption, not something to paper over with U+FFFD.
const utf8Decoder = new TextDecoder('utf-8', { fatal: true });

class JsonCodec implements Codec {
  readonly name = 'json';
  readonly contentType = 'application/json';
  readonly #maxDepth: number;

  constructor(maxDepth: number) {
    this.#maxDepth = maxDepth;
  }

  encode(value: unknown): Uint8Array {
    let text: string | undefined;
    try {
      text = JSON.stringify(value);
    } catch (error) {
      // TypeError is what JSON.stringify throws for bigint and cycles; anything else (a throwing
      // toJSON, a stack overflow) is not ours to rename.
      if (!(error instanceof TypeError)) throw error;
      throw new TypeError(
        `json codec cannot encode this value (${error.message}); JSON has no bigint and no cycles. ` +
          'Use msgpackCodec() for bigint values.',
        { cause: error },
      );
    }
    if (text === undefined) {
      throw new TypeError(`json codec cannot encode a top-level ${typeof value}`);
    }
    const bytes = utf8Encoder.encode(text);
    const deepAt = firstTooDeep(bytes, this.#maxDepth);
    if (deepAt >= 0) {
      throw new RangeError(`json codec cannot encode a value nested deeper than maxDepth ${this.#maxDepth}`);
    }
    return bytes;
  }

  decode(bytes: Uint8Array): unknown {
    if (!(bytes instanceof Uint8Array)) {
      throw new TypeError(`json codec decodes a Uint8Array, got ${typeof bytes}`);
    }
    const deepAt = firstTooDeep(bytes, this.#maxDepth);
    if (deepAt >= 0) {
      throw new CorruptRecordError(`json: nesting deeper than maxDepth ${this.#maxDepth} (at byte ${deepAt})`);
    }
    let text: string;
    try {
      text = utf8Decoder.decode(bytes);
    } catch (error) {
      throw new CorruptRecordError('json: the bytes are not valid UTF-8', { cause: error });
    }
    try {
      return JSON.parse(text) as unknown;
    } catch (error) {
      throw new CorruptRecordError(`json: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
    }
  }
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_ARRAY = 0x5b;
const OPEN_OBJECT = 0x7b;
const CLOSE_ARRAY = 0x5d;
const CLOSE_OBJECT = 0x7d;

/**
 * The offset of the first `[` or `{` that opens level `maxDepth + 1`, or -1. Works on the bytes:
 * the six ASCII bytes it looks at never occur inside a multi-byte UTF-8 sequence. Exact for valid
 * JSON; on invalid JSON its answer does not matter, since `JSON.parse` refuses it anyway.
 */
function firstTooDeep(bytes: Uint8Array, maxDepth: number): number {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < bytes.length; i++) {
    const byte = bytes[i];
    if (inString) {
      if (byte === BACKSLASH) i++; // skip the escaped byte, which may be a quote
      else if (byte === QUOTE) inString = false;
    } else if (byte === QUOTE) {
      inString = true;
    } else if (byte === OPEN_ARRAY || byte === OPEN_OBJECT) {
      if (++depth > maxDepth) return i;
    } else if (byte === CLOSE_ARRAY || byte === CLOSE_OBJECT) {
      depth--;
    }
  }
  return -1;
}
