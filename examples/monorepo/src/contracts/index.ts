/**
 * The contracts package of the monorepo: every event and topic the services share, defined once.
 * In a real repository this is its own workspace (`packages/contracts`) that both services depend
 * on; the schema gate (`annals schema check`) compares it with `annals.contracts.json` in CI.
 */
import { defineEvent, defineTopic } from '@annals/core';
import { z } from 'zod';

/** An order was placed. v2 added `currency` with a default: compatible both ways. */
export const OrderPlaced = defineEvent({
  type: 'order.placed',
  versions: {
    1: z.object({ orderId: z.string(), customerId: z.string(), totalCents: z.number().int().nonnegative() }),
    2: z.object({
      orderId: z.string(),
      customerId: z.string(),
      totalCents: z.number().int().nonnegative(),
      currency: z.string().length(3).default('EUR'),
    }),
  },
  upcast: { 1: (v1) => ({ ...v1, currency: 'EUR' }) },
});

/** A payment was captured for an order. */
export const PaymentCaptured = defineEvent({
  type: 'payment.captured',
  versions: { 1: z.object({ orderId: z.string(), amountCents: z.number().int().nonnegative() }) },
});

/**
 * Orders are `full`-compatible: a billing service still on an older contract may read newer
 * order events as the latest version it knows (`onUnknownVersion: 'read-as-latest-known'`).
 */
export const orders = defineTopic({ name: 'orders', partitions: 3, events: [OrderPlaced], key: (e) => e.customerId, compatibility: 'full' });
export const payments = defineTopic({ name: 'payments', partitions: 3, events: [PaymentCaptured], key: (e) => e.orderId });
