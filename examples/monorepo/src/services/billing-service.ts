/**
 * The billing service: charges placed orders. It may be deployed on an older contract than the
 * orders service; `onUnknownVersion` says what it does with an order event of a version it does
 * not know yet. Orders are `full`-compatible, so it reads such an event as the latest version it
 * knows; for an event whose mode does not allow that, the record goes to the dead-letter topic
 * (its `onFailure`), never silently dropped.
 */
import { Annals, type Consumer } from '@annals/core';
import { OrderPlaced, orders, PaymentCaptured, payments } from '../contracts/index.js';

export async function startBilling<TDb>(annals: Annals<TDb>, onCharged?: (orderId: string) => void): Promise<Consumer<TDb>> {
  await annals.admin().createTopics({ topics: [orders, payments, { topic: 'billing.dlq' }], ignoreExisting: true });
  const consumer = annals.consumer({
    groupId: 'billing',
    onUnknownVersion: 'read-as-latest-known',
    onFailure: 'dead-letter',
    deadLetterTopic: 'billing.dlq',
  });
  await consumer.subscribe({ topics: [orders], fromBeginning: true });
  await consumer.run({
    eachEvent: async ({ event, tx }) => {
      if (event.type !== OrderPlaced.type) return;
      const order = event.payload as ReturnType<typeof OrderPlaced.validate>;
      await tx.publish(payments, PaymentCaptured, { orderId: order.orderId, amountCents: order.totalCents });
      onCharged?.(order.orderId);
    },
  });
  return consumer;
}
