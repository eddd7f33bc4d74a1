/** The monorepo example's two services, on the in-memory store: orders publishes, billing charges. */
import { Annals } from '@annals/core';
import { InMemoryLogStorage } from '@annals/testing';
import { describe, expect, it } from 'vitest';
import { payments } from './contracts/index.js';
import { startBilling } from './services/billing-service.js';
import { placeOrder } from './services/orders-service.js';

describe('monorepo example services', () => {
  it('billing charges the orders the orders service places; the order version is registered once', async () => {
    const storage = new InMemoryLogStorage();
    await using orders = new Annals({ clientId: 'orders-service', storage });
    await using billing = new Annals({ clientId: 'billing-service', storage });
    const charged: string[] = [];
    await startBilling(billing, (id) => charged.push(id));
    await placeOrder(orders, { orderId: 'o-1', customerId: 'c-1', totalCents: 1250 });
    await placeOrder(orders, { orderId: 'o-2', customerId: 'c-2', totalCents: 990 });
    // The payments commit with billing's offset advance, after the handler returns.
    const capturedRecords = async () =>
      (await Promise.all([0, 1, 2].map((p) => storage.fetch(payments.name, p, 0n, { maxRecords: 10, maxBytes: 1 << 20 })))).flatMap((r) => r.records);
    const deadline = Date.now() + 10_000;
    while ((await capturedRecords()).length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(charged.sort()).toEqual(['o-1', 'o-2']);
    const registered = await storage.schemaRegistry.list();
    expect(registered.map((r) => [r.eventType, r.version, r.registeredBy])).toEqual([
      ['order.placed', 2, 'orders-service'],
      ['payment.captured', 1, 'billing-service'],
    ]);
    expect(await capturedRecords()).toHaveLength(2);
  });
});
