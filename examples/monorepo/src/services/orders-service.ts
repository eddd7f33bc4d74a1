/**
 * The orders service: places orders. It publishes with the shared contracts; the first publish of
 * each version registers it in the schema registry (a changed schema under a registered version
 * is refused with SchemaVersionConflictError before anything is written).
 */
import { Annals } from '@annals/core';
import { postgres } from '@annals/storage-pg';
import { OrderPlaced, orders } from '../contracts/index.js';

export async function placeOrder<TDb>(annals: Annals<TDb>, order: { orderId: string; customerId: string; totalCents: number }): Promise<void> {
  await annals.producer().publish(orders, OrderPlaced, order);
}

/** Runs the service against `DATABASE_URL`: places one order and exits. */
export async function main(connectionString = process.env['DATABASE_URL']): Promise<void> {
  if (!connectionString) throw new Error('Set DATABASE_URL to a PostgreSQL database.');
  const annals = new Annals({ clientId: 'orders-service', storage: postgres({ connectionString }) });
  try {
    await annals.admin().createTopics({ topics: [orders], ignoreExisting: true });
    await placeOrder(annals, { orderId: `o-${Date.now()}`, customerId: 'c-1', totalCents: 1250 });
  } finally {
    await annals.disconnect();
  }
}
