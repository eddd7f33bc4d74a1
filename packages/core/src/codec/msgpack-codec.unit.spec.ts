import { Decoder } from '@msgpack/msgpack';
import fc from 'fast-check';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { CorruptRecordError, InvalidOptionsError } from '../errors.js';
import { msgpackCodec, resolveDecodeLimits } from './index.js';

/** Builds a byte array from numbers (single bytes) and strings (their UTF-8 bytes). */
function bytes(...parts: (number | string)[]): Uint8Array {
  const out: number[] = [];
  for (const part of parts) {
    if (typeof part === 'number') out.push(part);
    else out.push(...new TextEncoder().encode(part));
  }
  return Uint8Array.from(out);
}

/** The error `fn` throws (fails the test when it does not throw). */
function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (error) {
    return error;
  }
  throw new Error('expected a throw, but the call returned');
}

const UINT32_MAX = 0xffff_ffff;
const noLimits = { maxStringLength: UINT32_MAX, maxBinaryLength: UINT32_MAX, maxArrayLength: UINT32_MAX, maxMapLength: UINT32_MAX };

// JSON-like values plus the three extra types msgpack carries. -0 is left out (it comes back as
// 0, tested on its own) and so is the "__proto__" key (refused, tested on its own).
const { value: payload } = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.constant(null),
    fc.boolean(),
    fc.integer(),
    fc.double().filter((x) => !Object.is(x, -0)),
    fc.string({ unit: 'grapheme', maxLength: 80 }),
    fc.date({ noInvalidDate: true }),
    fc.bigInt({ min: -(1n << 63n), max: (1n << 64n) - 1n }),
    fc.uint8Array({ maxLength: 40 }),
    fc.array(tie('value'), { maxLength: 6 }),
    fc.dictionary(
      fc.string({ maxLength: 12 }).filter((key) => key !== '__proto__'),
      tie('value'),
      { maxKeys: 6, noNullPrototype: true },
    ),
  ),
}));

describe('msgpackCodec: round trips', () => {
  const codec = msgpackCodec();

  it('names itself', () => {
    expect(codec.name).toBe('msgpack');
    expect(codec.contentType).toBe('application/msgpack');
  });

  it('decodes every encoded JSON-like value (with Dates, bigints, byte arrays) to an equal value of the same types', () => {
    fc.assert(
      fc.property(payload, (value) => {
        expect(codec.decode(codec.encode(value))).toStrictEqual(value);
      }),
      { numRuns: 1000 },
    );
  });

  it('keeps a Date a Date, to the millisecond, before and after 1970 and beyond 2106 (timestamp 32/64/96)', () => {
    for (const date of [new Date(0), new Date('2026-11-25T10:11:12.345Z'), new Date(-1), new Date('1901-02-03T04:05:06.789Z'), new Date('2500-01-01T00:00:00.001Z')]) {
      const decoded = codec.decode(codec.encode({ at: date })) as { at: unknown };
      expect(decoded.at).toBeInstanceOf(Date);
      expect((decoded.at as Date).getTime()).toBe(date.getTime());
    }
  });

  it('keeps bigints bigints across the whole int64/uint64 range, and numbers numbers', () => {
    const value = { small: 5n, zero: 0n, max: (1n << 64n) - 1n, min: -(1n << 63n), n: 5, big: 2 ** 40, negBig: -(2 ** 40), float: 1.5 };
    const decoded = codec.decode(codec.encode(value)) as Record<string, unknown>;
    expect(decoded).toStrictEqual(value);
    expect(typeof decoded['small']).toBe('bigint');
    expect(typeof decoded['n']).toBe('number');
    expect(typeof decoded['big']).toBe('number');
  });

  it('returns Uint8Array (not Buffer) for Uint8Array and Buffer values, and for a Buffer input', () => {
    const encoded = codec.encode({ raw: Uint8Array.of(1, 2, 3), buf: Buffer.from([4, 5]) });
    for (const input of [encoded, Buffer.from(encoded)]) {
      const decoded = codec.decode(input) as { raw: Uint8Array; buf: Uint8Array };
      expect(decoded.raw.constructor).toBe(Uint8Array);
      expect(decoded.buf.constructor).toBe(Uint8Array);
      expect([...decoded.raw]).toEqual([1, 2, 3]);
      expect([...decoded.buf]).toEqual([4, 5]);
    }
  });

  it('returns byte arrays that do not alias the input bytes', () => {
    const encoded = codec.encode(Uint8Array.of(7, 7, 7));
    const decoded = codec.decode(encoded) as Uint8Array;
    encoded.fill(0);
    expect([...decoded]).toEqual([7, 7, 7]);
  });

  it('leaves out undefined properties and turns undefined array items into null, like JSON', () => {
    expect(codec.decode(codec.encode({ a: undefined, b: 1, c: [undefined] }))).toStrictEqual({ b: 1, c: [null] });
  });

  it('turns -0 into 0 (documented)', () => {
    expect(Object.is(codec.decode(codec.encode(-0)), 0)).toBe(true);
  });

  it('encodes null-prototype objects and returns plain objects', () => {
    const value = Object.assign(Object.create(null) as object, { a: 1 });
    const decoded = codec.decode(codec.encode(value));
    expect(Object.getPrototypeOf(decoded)).toBe(Object.prototype);
    expect(decoded).toStrictEqual({ a: 1 });
  });

  it('keeps key order', () => {
    expect(Object.keys(codec.decode(codec.encode({ z: 1, a: 2, m: 3 })) as object)).toEqual(['z', 'a', 'm']);
  });
});

describe('msgpackCodec: encode refuses values it would mangle', () => {
  const codec = msgpackCodec();

  class Money {
    constructor(readonly cents: number) {}
  }

  it.each([
    ['a Map', { m: new Map([['a', 1]]) }, /value\.m: a Map/],
    ['a Set', { s: new Set([1]) }, /value\.s: a Set/],
    ['a class instance', { price: new Money(5) }, /value\.price: a Money/],
    ['a function', { f: () => 1 }, /value\.f: a function/],
    ['a symbol', [Symbol('x')], /value\[0\]: a symbol/],
    ['a Float64Array', { xs: Float64Array.of(1.5) }, /Float64Array would come back as Uint8Array/],
    ['a DataView', new DataView(new ArrayBuffer(2)), /DataView/],
    ['an ArrayBuffer', { b: new ArrayBuffer(2) }, /an ArrayBuffer/],
    ['a boxed string', { s: new String('x') }, /a String/],
    ['a RegExp', { r: /x/ }, /a RegExp/],
    ['an Error', { e: new Error('x') }, /an Error/],
    ['an invalid Date', { d: new Date(Number.NaN) }, /invalid Date/],
    ['a "__proto__" own key', { nested: JSON.parse('{"__proto__": 1}') as unknown }, /"__proto__"/],
    ['a key that is not an identifier, in the path', { 'a b': [new Map()] }, /value\["a b"\]\[0\]: a Map/],
  ])('throws TypeError for %s', (_, value, message) => {
    const error = thrown(() => codec.encode(value));
    expect(error).toBeInstanceOf(TypeError);
    expect((error as Error).message).toMatch(message);
  });

  it.each([
    ['2^64', 1n << 64n],
    ['-2^63 - 1', -(1n << 63n) - 1n],
  ])('throws RangeError for a bigint outside int64/uint64 (%s), which the library would wrap silently', (_, big) => {
    expect(() => codec.encode({ big })).toThrow(RangeError);
  });

  it('throws RangeError for a cycle (seen as nesting deeper than maxDepth)', () => {
    const cyclic: Record<string, unknown> = {};
    cyclic['self'] = cyclic;
    expect(() => codec.encode(cyclic)).toThrow(/deeper than maxDepth 64/);
  });

  it('refuses to write what the same limits would refuse to read, and accepts exactly the limit', () => {
    const small = msgpackCodec({ limits: { maxStringLength: 3, maxBinaryLength: 2, maxArrayLength: 2, maxMapLength: 1, maxDepth: 2 } });
    expect(() => small.encode('abc')).not.toThrow();
    expect(() => small.encode('abcd')).toThrow(RangeError);
    // 'éé' is 2 UTF-16 code units but 4 UTF-8 bytes: the limit counts bytes.
    expect(() => small.encode('éé')).toThrow(/4 UTF-8 bytes exceeds maxStringLength 3/);
    expect(() => small.encode({ abcd: 1 })).toThrow(RangeError); // keys count too
    expect(() => small.encode(Uint8Array.of(1, 2))).not.toThrow();
    expect(() => small.encode(Uint8Array.of(1, 2, 3))).toThrow(RangeError);
    expect(() => small.encode([1, 2])).not.toThrow();
    expect(() => small.encode([1, 2, 3])).toThrow(RangeError);
    expect(() => small.encode({ a: 1 })).not.toThrow();
    expect(() => small.encode({ a: 1, b: 2 })).toThrow(RangeError);
    expect(() => small.encode({ a: 1, b: undefined })).not.toThrow(); // b is left out, so one entry
    expect(() => small.encode([[1]])).not.toThrow();
    expect(() => small.encode([[[1]]])).toThrow(RangeError);
    expect(() => small.encode([[{}]])).toThrow(RangeError);
  });
});

describe('msgpackCodec: decode refuses hostile bytes with CorruptRecordError', () => {
  const codec = msgpackCodec();
  const unlimited = msgpackCodec({ limits: noLimits });

  function expectCorrupt(codecUnderTest: ReturnType<typeof msgpackCodec>, input: Uint8Array, message: RegExp): void {
    const error = thrown(() => codecUnderTest.decode(input));
    expect(error).toBeInstanceOf(CorruptRecordError);
    expect((error as CorruptRecordError).code).toBe('CORRUPT_MESSAGE');
    expect((error as Error).message).toMatch(message);
  }

  describe('huge declared lengths fail fast, before anything is allocated', () => {
    // Each header claims 2^32 - 1 (4 GiB or 4 G entries); only a few bytes follow.
    const str32 = bytes(0xdb, 0xff, 0xff, 0xff, 0xff, 'abc'); // str 32, length 0xffffffff, then "abc"
    const bin32 = bytes(0xc6, 0xff, 0xff, 0xff, 0xff, 1, 2, 3); // bin 32, length 0xffffffff, then 3 bytes
    const array32 = bytes(0xdd, 0xff, 0xff, 0xff, 0xff, 0x01); // array 32, 0xffffffff elements, then fixint 1
    const map32 = bytes(0xdf, 0xff, 0xff, 0xff, 0xff, 0xa1, 'a', 0x01); // map 32, 0xffffffff entries, then "a": 1

    it('over the default limits', () => {
      expectCorrupt(codec, str32, /string of 4294967295 bytes exceeds maxStringLength 16777216/);
      expectCorrupt(codec, bin32, /byte array of 4294967295 bytes exceeds maxBinaryLength 16777216/);
      expectCorrupt(codec, array32, /array of 4294967295 entries exceeds maxArrayLength 1000000/);
      expectCorrupt(codec, map32, /map of 4294967295 entries exceeds maxMapLength 1000000/);
    });

    it('even with every length limit at its maximum: the bytes left bound what a header may claim', () => {
      const started = performance.now();
      expectCorrupt(unlimited, str32, /string declares 4294967295 bytes but only 3 follow/);
      expectCorrupt(unlimited, bin32, /byte array declares 4294967295 bytes but only 3 follow/);
      expectCorrupt(unlimited, array32, /array declares 4294967295 entries but only 1 bytes follow/);
      expectCorrupt(unlimited, map32, /map declares 4294967295 entries but only 3 bytes follow/);
      expect(performance.now() - started).toBeLessThan(250);
    });

    it('a map needs two bytes per entry: fixmap of 2 with 3 bytes left is refused', () => {
      // fixmap 2 entries, then "a" (2 bytes) and fixint 1: 3 bytes for at least 4
      expectCorrupt(codec, bytes(0x82, 0xa1, 'a', 0x01), /map declares 2 entries but only 3 bytes follow/);
    });

    it('an array32 of 1,000,001 entries is over the limit, 3 entries with 2 present is truncated', () => {
      expectCorrupt(codec, bytes(0xdd, 0x00, 0x0f, 0x42, 0x41, 0x01), /array of 1000001 entries exceeds maxArrayLength/);
      // array 16, 3 elements, then fixint 1 and fixint 2: the third is missing
      expectCorrupt(codec, bytes(0xdc, 0x00, 0x03, 0x01, 0x02), /array declares 3 entries but only 2 bytes follow/);
    });
  });

  it('lengths over configured limits are refused, lengths at the limits accepted', () => {
    const small = msgpackCodec({ limits: { maxStringLength: 4, maxBinaryLength: 2, maxArrayLength: 2, maxMapLength: 1 } });
    expect(small.decode(bytes(0xa4, 'abcd'))).toBe('abcd'); // fixstr of 4 bytes
    expectCorrupt(small, bytes(0xa5, 'abcde'), /string of 5 bytes exceeds maxStringLength 4/); // fixstr of 5 bytes
    expectCorrupt(small, bytes(0x81, 0xa5, 'abcde', 0x01), /string of 5 bytes/); // fixmap 1: "abcde" (a key) => 1
    expect(small.decode(bytes(0xc4, 0x02, 9, 9))).toStrictEqual(Uint8Array.of(9, 9)); // bin 8 of 2 bytes
    expectCorrupt(small, bytes(0xc4, 0x03, 9, 9, 9), /byte array of 3 bytes exceeds maxBinaryLength 2/); // bin 8 of 3
    expect(small.decode(bytes(0x92, 0x01, 0x02))).toStrictEqual([1, 2]); // fixarray of 2
    expectCorrupt(small, bytes(0x93, 0x01, 0x02, 0x03), /array of 3 entries exceeds maxArrayLength 2/); // fixarray of 3
    expect(small.decode(bytes(0x81, 0xa1, 'a', 0x01))).toStrictEqual({ a: 1 }); // fixmap of 1
    expectCorrupt(small, bytes(0x82, 0xa1, 'a', 0x01, 0xa1, 'b', 0x02), /map of 2 entries exceeds maxMapLength 1/);
  });

  describe('nesting deeper than maxDepth', () => {
    // 0x91 = fixarray of one element; n of them then fixint 1 = n nested arrays
    const nested = (levels: number): Uint8Array => {
      const out = new Uint8Array(levels + 1).fill(0x91);
      out[levels] = 0x01;
      return out;
    };

    it('is refused at maxDepth + 1 and accepted at maxDepth', () => {
      const shallow = msgpackCodec({ limits: { maxDepth: 2 } });
      expect(shallow.decode(nested(2))).toStrictEqual([[1]]);
      expectCorrupt(shallow, nested(3), /nesting deeper than maxDepth 2 \(at byte 2\)/);
      // 0x81 0xa1 "a" = fixmap {"a": ...}; maps count as levels too: {"a": {"a": 1}} then one more
      expect(shallow.decode(bytes(0x81, 0xa1, 'a', 0x81, 0xa1, 'a', 0x01))).toStrictEqual({ a: { a: 1 } });
      expectCorrupt(shallow, bytes(0x81, 0xa1, 'a', 0x81, 0xa1, 'a', 0x90), /nesting deeper than maxDepth 2/); // 0x90: []
    });

    it('is refused at the default maxDepth of 64', () => {
      expect(() => codec.decode(nested(64))).not.toThrow();
      expectCorrupt(codec, nested(65), /nesting deeper than maxDepth 64/);
    });

    it('a million levels are refused quickly (the library alone would build them all)', () => {
      const started = performance.now();
      expectCorrupt(unlimited, nested(1_000_000), /nesting deeper than maxDepth 64/);
      expect(performance.now() - started).toBeLessThan(250);
      // The unguarded library does decode it: this is the gap the scan closes.
      expect(() => new Decoder().decode(nested(1_000_000))).not.toThrow();
    });
  });

  describe('extensions other than the timestamp', () => {
    it.each([
      ['fixext 1 of type 5', bytes(0xd4, 0x05, 0x00)], // fixext 1, type 5, one data byte
      ['fixext 4 of type 0', bytes(0xd6, 0x00, 1, 2, 3, 4)], // fixext 4, type 0, 4 data bytes
      ['ext 8 of type 127', bytes(0xc7, 0x02, 0x7f, 1, 2)], // ext 8, length 2, type 127, 2 bytes
      ['ext 8 of type -2', bytes(0xc7, 0x01, 0xfe, 1)], // ext 8, length 1, type -2 (0xfe), 1 byte
    ])('refuses %s', (_, input) => {
      expectCorrupt(codec, input, /extension type -?\d+ is not accepted/);
    });

    it('accepts a timestamp 32 and refuses malformed timestamps', () => {
      // fixext 4 (0xd6), type -1 (0xff), seconds = 1 as uint32 big-endian
      expect(codec.decode(bytes(0xd6, 0xff, 0x00, 0x00, 0x00, 0x01))).toStrictEqual(new Date(1000));
      // fixext 1, type -1, one byte: timestamps are 4, 8 or 12 bytes
      expectCorrupt(codec, bytes(0xd4, 0xff, 0x00), /timestamp of 1 bytes/);
      // fixext 8, type -1, nsec30 = 0x3fffffff (> 999,999,999) in the top 30 bits, seconds 0
      expectCorrupt(codec, bytes(0xd7, 0xff, 0xff, 0xff, 0xff, 0xfc, 0x00, 0x00, 0x00, 0x00), /nanoseconds 1073741823 out of range/);
      // ext 8, length 12, type -1: nsec32 = 0, sec64 = 0x7fff... (far beyond what a Date holds)
      expectCorrupt(
        codec,
        bytes(0xc7, 0x0c, 0xff, 0, 0, 0, 0, 0x00, 0x00, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff),
        /outside the range of Date/,
      );
    });
  });

  describe('prototype pollution', () => {
    afterEach(() => {
      // Belt and braces: a failing test must not leave Object.prototype polluted for the next.
      delete (Object.prototype as Record<string, unknown>)['polluted'];
    });

    it('refuses a "__proto__" key, at the top and nested, and pollutes nothing', () => {
      // fixmap 1: fixstr 9 "__proto__" => fixmap 1: fixstr 8 "polluted" => true
      const top = bytes(0x81, 0xa9, '__proto__', 0x81, 0xa8, 'polluted', 0xc3);
      expectCorrupt(codec, top, /"__proto__" is refused/);
      // fixarray 1: the same map inside
      expectCorrupt(codec, bytes(0x91, ...top), /"__proto__" is refused/);
      // str 8 (0xd9) form of the same key: the key check does not depend on the string header
      expectCorrupt(codec, bytes(0x81, 0xd9, 0x09, '__proto__', 0xc3), /"__proto__" is refused/);
      expect(({} as Record<string, unknown>)['polluted']).toBeUndefined();
    });

    it('reads "constructor" and "prototype" keys as own properties that change no prototype', () => {
      // {"constructor": {"prototype": {"polluted": true}}}: fixmap 1, fixstr 11 "constructor",
      // fixmap 1, fixstr 9 "prototype", fixmap 1, fixstr 8 "polluted", true
      const input = bytes(0x81, 0xab, 'constructor', 0x81, 0xa9, 'prototype', 0x81, 0xa8, 'polluted', 0xc3);
      const decoded = codec.decode(input) as Record<string, unknown>;
      // (toStrictEqual on the whole would compare the own "constructor" key as the object's type)
      expect(Object.keys(decoded)).toEqual(['constructor']);
      expect(decoded['constructor']).toStrictEqual({ prototype: { polluted: true } });
      expect(Object.getPrototypeOf(decoded)).toBe(Object.prototype);
      expect(Object.hasOwn(decoded, 'constructor')).toBe(true);
      expect(({} as Record<string, unknown>)['polluted']).toBeUndefined();
      expect((Object as unknown as Record<string, unknown>)['polluted']).toBeUndefined();
    });
  });

  it.each([
    ['fixint 1 then 0x02', bytes(0x01, 0x02)],
    ['nil then 0x00', bytes(0xc0, 0x00)],
    ['a complete map then 0xc1', bytes(0x81, 0xa1, 'a', 0x01, 0xc1)],
  ])('refuses trailing bytes after a valid value (%s)', (_, input) => {
    expectCorrupt(codec, input, /trailing byte/);
  });

  it.each([
    ['an integer', bytes(0x81, 0x01, 0x02)], // fixmap 1: key fixint 1 => fixint 2
    ['nil', bytes(0x81, 0xc0, 0x02)], // key nil
    ['a uint 16', bytes(0x81, 0xcd, 0x01, 0x00, 0x02)], // key uint 16 = 256
    ['an array', bytes(0x81, 0x90, 0x02)], // key [] (fixarray 0)
    ['a map', bytes(0x81, 0x80, 0x02)], // key {} (fixmap 0)
    ['a byte array', bytes(0x81, 0xc4, 0x01, 0x61, 0x02)], // key bin 8 of "a"
    ['a timestamp', bytes(0x81, 0xd6, 0xff, 0, 0, 0, 1, 0x02)], // key fixext 4 timestamp
    ['an integer in the second entry', bytes(0x82, 0xa1, 'a', 0x01, 0x05, 0x02)], // {"a": 1, 5: 2}
  ])('refuses a map key that is %s', (_, input) => {
    expectCorrupt(codec, input, /map key is not a string/);
  });

  it.each([
    ['no bytes at all', bytes(), /truncated/],
    ['the never-used byte 0xc1', bytes(0xc1), /0xc1 is never used/],
    ['a float 64 with one byte of eight', bytes(0xcb, 0x00), /truncated: 9 bytes needed, 2 left/],
    ['a str 16 header cut short', bytes(0xda, 0x00), /truncated/],
    ['an ext 32 header cut short', bytes(0xc9, 0x00, 0x00, 0x00, 0x04), /truncated/],
    ['a fixmap missing its value', bytes(0x81, 0xa1, 'a'), /map declares 1 entries but only 2 bytes follow|truncated/],
  ])('refuses %s', (_, input, message) => {
    expectCorrupt(codec, input, message);
  });

  it('wraps an exception from the library in CorruptRecordError with the cause', () => {
    const failure = new RangeError('boom from the library');
    const spy = vi.spyOn(Decoder.prototype, 'decode').mockImplementation(() => {
      throw failure;
    });
    try {
      const error = thrown(() => codec.decode(bytes(0x01)));
      expect(error).toBeInstanceOf(CorruptRecordError);
      expect((error as Error).cause).toBe(failure);
      expect((error as Error).message).toContain('boom from the library');
    } finally {
      spy.mockRestore();
    }
  });

  it('throws TypeError for input that is not a Uint8Array (a programming error, not corruption)', () => {
    expect(() => codec.decode('abc' as unknown as Uint8Array)).toThrow(TypeError);
  });

  describe('properties over arbitrary bytes', () => {
    it('never throws anything but CorruptRecordError, whatever the bytes', () => {
      const encodings = payload.map((value) => codec.encode(value));
      const mutated = fc
        .tuple(encodings, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 4 }))
        .map(([encoded, edits]) => {
          const copy = Uint8Array.from(encoded);
          for (const [index, byte] of edits) if (copy.length > 0) copy[index % copy.length] = byte;
          return copy;
        });
      fc.assert(
        fc.property(fc.oneof(fc.uint8Array({ maxLength: 64 }), mutated), (input) => {
          try {
            codec.decode(input);
          } catch (error) {
            expect(error).toBeInstanceOf(CorruptRecordError);
          }
        }),
        { numRuns: 3000 },
      );
    });

    it('refuses every proper prefix of a valid encoding (truncation) and every extension of it (trailing bytes)', () => {
      fc.assert(
        fc.property(payload, fc.nat(), fc.uint8Array({ minLength: 1, maxLength: 4 }), (value, cut, extra) => {
          const encoded = codec.encode(value);
          const prefix = encoded.subarray(0, cut % encoded.length);
          expect(() => codec.decode(prefix)).toThrow(CorruptRecordError);
          const extended = new Uint8Array(encoded.length + extra.length);
          extended.set(encoded);
          extended.set(extra, encoded.length);
          expect(() => codec.decode(extended)).toThrow(/trailing byte/);
        }),
        { numRuns: 500 },
      );
    });
  });
});

describe('msgpackCodec: reused encoder and decoder', () => {
  it('stay correct across failures, large records and interleaved calls', () => {
    const codec = msgpackCodec();
    const big = { blob: new Uint8Array(3 * 1024 * 1024).fill(1), s: 'x'.repeat(100_000) };
    const small = { id: 1n, at: new Date(5), name: 'a' };
    // Passes the check (first read of b), then throws inside the library's encoder (second read),
    // half-way through writing: the next encode must not see anything of it.
    let reads = 0;
    const flaky = {
      a: 'x'.repeat(10),
      get b(): number {
        if (++reads % 2 === 0) throw new Error('second read');
        return 1;
      },
    };
    for (let round = 0; round < 3; round++) {
      expect(() => codec.decode(bytes(0xc1))).toThrow(CorruptRecordError);
      expect(() => codec.encode({ m: new Map() })).toThrow(TypeError);
      expect(() => codec.encode(flaky)).toThrow('second read');
      expect(codec.decode(codec.encode(small))).toStrictEqual(small);
      const decodedBig = codec.decode(codec.encode(big)) as typeof big;
      expect(decodedBig.blob.length).toBe(big.blob.length);
      expect(decodedBig.s).toBe(big.s);
      expect(codec.decode(codec.encode(small))).toStrictEqual(small);
    }
  });

  it('keep their limits per codec', () => {
    const strict = msgpackCodec({ limits: { maxStringLength: 2 } });
    const lenient = msgpackCodec();
    const input = bytes(0xa3, 'abc'); // fixstr "abc"
    expect(() => strict.decode(input)).toThrow(CorruptRecordError);
    expect(lenient.decode(input)).toBe('abc');
    expect(() => strict.decode(input)).toThrow(CorruptRecordError);
  });
});

describe('resolveDecodeLimits', () => {
  it('fills in the documented defaults and freezes the result', () => {
    const limits = resolveDecodeLimits();
    expect(limits).toStrictEqual({
      maxStringLength: 16 * 1024 * 1024,
      maxBinaryLength: 16 * 1024 * 1024,
      maxArrayLength: 1_000_000,
      maxMapLength: 1_000_000,
      maxDepth: 64,
    });
    expect(Object.isFrozen(limits)).toBe(true);
  });

  it('keeps given values', () => {
    expect(resolveDecodeLimits({ maxDepth: 3, maxMapLength: 10 })).toMatchObject({ maxDepth: 3, maxMapLength: 10, maxArrayLength: 1_000_000 });
  });

  it.each([
    ['zero', { maxDepth: 0 }],
    ['a negative number', { maxArrayLength: -1 }],
    ['a fraction', { maxStringLength: 1.5 }],
    ['NaN', { maxMapLength: Number.NaN }],
    ['Infinity', { maxBinaryLength: Number.POSITIVE_INFINITY }],
    ['a string', { maxDepth: '8' }],
    ['more than msgpack can express', { maxStringLength: 2 ** 32 }],
    ['a depth over 1000', { maxDepth: 1001 }],
    ['an unknown key (a typo)', { maxStrLength: 10 }],
    ['null', null],
  ])('throws InvalidOptionsError for %s', (_, input) => {
    expect(() => resolveDecodeLimits(input as never)).toThrow(InvalidOptionsError);
  });

  it('is applied by msgpackCodec', () => {
    expect(() => msgpackCodec({ limits: { maxDepth: 0 } })).toThrow(InvalidOptionsError);
  });
});
