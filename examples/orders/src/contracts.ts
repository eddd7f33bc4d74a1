/** The events and topics of the orders story. */
import { defineEvent, defineTopic } from '@annals/core';
import { z } from 'zod';

export const OrderPlaced = defineEvent({
  type: 'order.placed',
  versions: {
    1: z.object({ orderId: z.string(), customerId: z.string(), total: z.number() }),
    2: z.object({ orderId: z.string(), customerId: z.string(), totalCents: z.number().int(), currency: z.string() }),
  },
  upcast: { 1: (v1) => ({ orderId: v1.orderId, customerId: v1.customerId, totalCents: Math.round(v1.total * 100), currency: 'EUR' }) },
});

export const PaymentCompleted = defineEvent({
  type: 'payment.completed',
  versions: { 1: z.object({ orderId: z.string(), customerId: z.string(), amountCents: z.number().int(), paymentId: z.string() }) },
});

export const UserStateChanged = defineEvent({
  type: 'user.state-changed',
  versions: { 1: z.object({ userId: z.string(), name: z.string(), tier: z.enum(['basic', 'gold', 'platinum']) }) },
});

/** Orders, keyed by customer: a customer's orders stay in one partition, in order. */
export const orders = defineTopic({ name: 'orders', partitions: 6, events: [OrderPlaced], key: (e) => e.customerId });

export const payments = defineTopic({ name: 'payments', partitions: 3, events: [PaymentCompleted], key: (e) => e.orderId });

/** The latest state of every user: a compacted topic keeps the last record of each key. */
export const userState = defineTopic({
  name: 'user-state',
  partitions: 2,
  events: [UserStateChanged],
  key: (e) => e.userId,
  config: { 'cleanup.policy': 'compact' },
});
