import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { CorruptRecordError, InvalidOptionsError } from '../errors.js';
import { jsonCodec } from './index.js';

const utf8 = (text: string): Uint8Array => new TextEncoder().encode(text);

/** The error `fn` throws (fails the test when it does not throw). */
function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (error) {
    return error;
  }
  throw new Error('expected a throw, but the call returned');
}

/** JSON writes -0 as `0`; everything else in a JSON value comes back unchanged. */
function withoutNegativeZero(value: unknown): unknown {
  if (Object.is(value, -0)) return 0;
  if (Array.isArray(value)) return value.map(withoutNegativeZero);
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [key, entry] of Object.entries(value)) {
      Object.defineProperty(out, key, { value: withoutNegativeZero(entry), enumerable: true, writable: true, configurable: true });
    }
    return out;
  }
  return value;
}

describe('jsonCodec: round trips', () => {
  const codec = jsonCodec();

  it('names itself', () => {
    expect(codec.name).toBe('json');
    expect(codec.contentType).toBe('application/json');
  });

  it('decodes every encoded JSON value to an equal value', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        expect(codec.decode(codec.encode(value))).toStrictEqual(withoutNegativeZero(value));
      }),
      { numRuns: 1000 },
    );
  });

  it('writes UTF-8 JSON text', () => {
    expect(new TextDecoder().decode(codec.encode({ a: 'é', b: [1, null] }))).toBe('{"a":"é","b":[1,null]}');
  });

  it('turns a Date into its ISO string (documented: use msgpack to keep Dates)', () => {
    const decoded = codec.decode(codec.encode({ at: new Date(Date.UTC(2026, 10, 25, 10, 11, 12, 345)) })) as { at: unknown };
    expect(decoded.at).toBe('2026-11-25T10:11:12.345Z');
  });
});

describe('jsonCodec: encode', () => {
  const codec = jsonCodec();

  it.each([
    ['at the top', 1n],
    ['nested', { order: { totalCents: 10n } }],
  ])('throws a TypeError that points to msgpack for a bigint %s', (_, value) => {
    const error = thrown(() => codec.encode(value));
    expect(error).toBeInstanceOf(TypeError);
    expect((error as Error).message).toMatch(/no bigint.*msgpackCodec\(\)/);
    expect((error as Error).cause).toBeInstanceOf(TypeError);
  });

  it('throws TypeError for a cycle', () => {
    const cyclic: Record<string, unknown> = {};
    cyclic['self'] = cyclic;
    expect(() => codec.encode(cyclic)).toThrow(TypeError);
  });

  it.each([
    ['undefined', undefined],
    ['a function', () => 1],
    ['a symbol', Symbol('x')],
  ])('throws TypeError for a top-level %s (JSON.stringify returns undefined)', (_, value) => {
    expect(() => codec.encode(value)).toThrow(/cannot encode a top-level/);
  });

  it('lets an error from a toJSON method through unchanged', () => {
    const failure = new Error('toJSON failed');
    const error = thrown(() => codec.encode({ toJSON: () => { throw failure; } }));
    expect(error).toBe(failure);
  });

  it('refuses to write nesting deeper than maxDepth, which decode would refuse', () => {
    const shallow = jsonCodec({ maxDepth: 2 });
    expect(() => shallow.encode([[1]])).not.toThrow();
    expect(() => shallow.encode([[[1]]])).toThrow(RangeError);
    expect(() => shallow.encode({ a: { b: {} } })).toThrow(RangeError);
  });
});

describe('jsonCodec: decode refuses bad bytes with CorruptRecordError', () => {
  const codec = jsonCodec();

  function expectCorrupt(input: Uint8Array, message: RegExp, codecUnderTest = codec): unknown {
    const error = thrown(() => codecUnderTest.decode(input));
    expect(error).toBeInstanceOf(CorruptRecordError);
    expect((error as Error).message).toMatch(message);
    return error;
  }

  it.each([
    ['empty input', utf8('')],
    ['a truncated object', utf8('{"a":')],
    ['trailing garbage', utf8('{"a":1}x')],
    ['two values', utf8('1 2')],
    ['a single quote string', utf8("'a'")],
  ])('for %s, with the SyntaxError as cause', (_, input) => {
    const error = expectCorrupt(input, /^json: /);
    expect((error as Error).cause).toBeInstanceOf(SyntaxError);
  });

  it('for invalid UTF-8 (a lone 0xff inside a string), instead of decoding it as U+FFFD', () => {
    // '"' 0xff '"': a JSON string whose only byte is not UTF-8
    expectCorrupt(Uint8Array.of(0x22, 0xff, 0x22), /not valid UTF-8/);
    // The same shape with a valid two-byte character decodes
    expect(codec.decode(Uint8Array.of(0x22, 0xc3, 0xa9, 0x22))).toBe('é');
  });

  it('for nesting deeper than maxDepth, and accepts exactly maxDepth', () => {
    const shallow = jsonCodec({ maxDepth: 2 });
    expect(shallow.decode(utf8('[[1]]'))).toStrictEqual([[1]]);
    expect(shallow.decode(utf8('{"a":[1]}'))).toStrictEqual({ a: [1] });
    expectCorrupt(utf8('[[[1]]]'), /nesting deeper than maxDepth 2 \(at byte 2\)/, shallow);
    expectCorrupt(utf8('{"a":{"b":{}}}'), /nesting deeper than maxDepth 2/, shallow);
    // Siblings do not add up: depth goes back down after each closing bracket.
    expect(shallow.decode(utf8('[[1],[2],{"a":1},[]]'))).toStrictEqual([[1], [2], { a: 1 }, []]);
  });

  it('does not count brackets inside strings, including after an escaped quote', () => {
    const flat = jsonCodec({ maxDepth: 1 });
    expect(flat.decode(utf8('["[[[{{{"]'))).toStrictEqual(['[[[{{{']);
    // "a\"[[[" : the escaped quote does not end the string
    expect(flat.decode(utf8('["a\\"[[["]'))).toStrictEqual(['a"[[[']);
    // "\\" then [[ : an escaped backslash does end before the quote, so these brackets count
    expectCorrupt(utf8('["\\\\",[[1]]]'), /nesting deeper than maxDepth 1/, flat);
  });

  it('at the default maxDepth of 64, and refuses a million levels quickly', () => {
    expect(() => codec.decode(utf8('['.repeat(64) + ']'.repeat(64)))).not.toThrow();
    expectCorrupt(utf8('['.repeat(65) + ']'.repeat(65)), /maxDepth 64/);
    const deep = utf8('['.repeat(1_000_000) + ']'.repeat(1_000_000));
    const started = performance.now();
    expectCorrupt(deep, /maxDepth 64 \(at byte 64\)/);
    expect(performance.now() - started).toBeLessThan(250);
  });

  it('throws TypeError for input that is not a Uint8Array', () => {
    expect(() => codec.decode('{}' as unknown as Uint8Array)).toThrow(TypeError);
  });
});

describe('jsonCodec: "__proto__" keys do not pollute', () => {
  const codec = jsonCodec();

  afterEach(() => {
    delete (Object.prototype as Record<string, unknown>)['polluted'];
  });

  it('reads "__proto__" as an own data property, at the top and nested', () => {
    const decoded = codec.decode(utf8('{"__proto__":{"polluted":true},"nested":{"__proto__":{"polluted":true}}}')) as Record<string, unknown>;
    expect(Object.getPrototypeOf(decoded)).toBe(Object.prototype);
    expect(Object.hasOwn(decoded, '__proto__')).toBe(true);
    expect(Object.getOwnPropertyDescriptor(decoded, '__proto__')?.value).toStrictEqual({ polluted: true });
    expect(decoded['polluted']).toBeUndefined();
    expect(Object.getPrototypeOf(decoded['nested'])).toBe(Object.prototype);
    expect(({} as Record<string, unknown>)['polluted']).toBeUndefined();
  });

  it('reads "constructor" and "prototype" keys as own properties', () => {
    const decoded = codec.decode(utf8('{"constructor":{"prototype":{"polluted":true}}}')) as Record<string, unknown>;
    expect(Object.hasOwn(decoded, 'constructor')).toBe(true);
    expect(Object.getPrototypeOf(decoded)).toBe(Object.prototype);
    expect(({} as Record<string, unknown>)['polluted']).toBeUndefined();
  });

  it('round-trips an own "__proto__" key', () => {
    const value = JSON.parse('{"__proto__":1}') as unknown;
    const decoded = codec.decode(codec.encode(value));
    expect(Object.getOwnPropertyDescriptor(decoded, '__proto__')?.value).toBe(1);
  });
});

describe('jsonCodec: options', () => {
  it.each([
    ['zero', { maxDepth: 0 }],
    ['a fraction', { maxDepth: 2.5 }],
    ['over 1000', { maxDepth: 1001 }],
  ])('throws InvalidOptionsError for a maxDepth of %s', (_, options) => {
    expect(() => jsonCodec(options)).toThrow(InvalidOptionsError);
  });
});
