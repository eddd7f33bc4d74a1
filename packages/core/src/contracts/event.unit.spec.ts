import { describe, expect, expectTypeOf, it } from 'vitest';
import { z } from 'zod';
import { InvalidOptionsError, SchemaValidationError, UpcastError } from '../errors.js';
import { defineEvent, type EventOf } from './event.js';

const OrderCreated = defineEvent({
  type: 'order.created',
  versions: {
    1: z.object({ orderId: z.string(), total: z.number() }),
    2: z.object({ orderId: z.string(), totalCents: z.number().int() }),
    3: z.object({ orderId: z.string(), totalCents: z.number().int(), currency: z.string() }),
  },
  upcast: {
    1: (v1) => ({ orderId: v1.orderId, totalCents: Math.round(v1.total * 100) }),
    2: (v2) => ({ ...v2, currency: 'EUR' }),
  },
});

describe('defineEvent', () => {
  it('infers the latest version as the payload type', () => {
    expect(OrderCreated.latestVersion).toBe(3);
    expectTypeOf(OrderCreated.latestVersion).toEqualTypeOf<3>();
    expectTypeOf<EventOf<typeof OrderCreated>>().toEqualTypeOf<{
      orderId: string;
      totalCents: number;
      currency: string;
    }>();
  });

  it('upcasts a version-1 payload across two steps to the latest', () => {
    expect(OrderCreated.upcast(1, { orderId: 'o1', total: 12.345 })).toEqual({
      orderId: 'o1',
      totalCents: 1235,
      currency: 'EUR',
    });
    expect(OrderCreated.upcast(2, { orderId: 'o1', totalCents: 5 })).toEqual({ orderId: 'o1', totalCents: 5, currency: 'EUR' });
    expect(OrderCreated.upcast(3, { orderId: 'o1', totalCents: 5, currency: 'USD' })).toEqual({
      orderId: 'o1',
      totalCents: 5,
      currency: 'USD',
    });
  });

  it('refuses an invalid payload on publish with the zod issues attached', () => {
    const error = (() => {
      try {
        OrderCreated.validate({ orderId: 'o1', totalCents: 1.5, currency: 'EUR' });
      } catch (e) {
        return e;
      }
    })();
    expect(error).toBeInstanceOf(SchemaValidationError);
    const v = error as SchemaValidationError;
    expect(v.code).toBe('SCHEMA_VALIDATION');
    expect(v.eventType).toBe('order.created');
    expect(v.schemaVersion).toBe(3);
    expect(v.issues[0]?.path).toEqual(['totalCents']);
    expect(v.message).toMatch(/totalCents/);
  });

  it('refuses a stored payload that does not match its own version on read', () => {
    expect(() => OrderCreated.upcast(1, { orderId: 'o1', total: 'ten' })).toThrow(SchemaValidationError);
    try {
      OrderCreated.upcast(1, { orderId: 'o1' });
    } catch (e) {
      expect((e as SchemaValidationError).schemaVersion).toBe(1);
      expect((e as SchemaValidationError).issues.length).toBeGreaterThan(0);
    }
  });

  it('refuses a result the upcaster got wrong, validated again at the next version', () => {
    const Broken = defineEvent({
      type: 'broken',
      versions: { 1: z.object({ a: z.number() }), 2: z.object({ b: z.number() }) },
      upcast: { 1: (v) => ({ b: String(v.a) }) as unknown as { b: number } },
    });
    expect(() => Broken.upcast(1, { a: 1 })).toThrow(SchemaValidationError);
  });

  it('wraps a throwing upcaster in UpcastError and refuses unknown versions', () => {
    const Throws = defineEvent({
      type: 'throws',
      versions: { 1: z.object({ a: z.number() }), 2: z.object({ a: z.number() }) },
      upcast: {
        1: () => {
          throw new Error('boom');
        },
      },
    });
    expect(() => Throws.upcast(1, { a: 1 })).toThrow(UpcastError);
    expect(() => OrderCreated.upcast(4, {})).toThrow(/knows versions 1–3/);
    expect(() => OrderCreated.upcast(0, {})).toThrow(UpcastError);
  });

  it('refuses malformed definitions', () => {
    expect(() => defineEvent({ type: 'x', versions: {} })).toThrow(InvalidOptionsError);
    expect(() => defineEvent({ type: 'x', versions: { 1: z.object({}), 3: z.object({}) } } as never)).toThrow(/without gaps/);
    expect(() => defineEvent({ type: 'x', versions: { 1: z.object({}), 2: z.object({}) } } as never)).toThrow(
      /no upcaster from version 1/,
    );
    expect(() => defineEvent({ type: 'has space', versions: { 1: z.object({}) } })).toThrow(/not valid/);
  });
});
