/** The primer's "Transactional Producers" snippet, with only the construction changed. */
import { Annals, type LogStorage } from '@annals/core';

export async function transactionalSend(
  storage: LogStorage<any>,
  order: { id: string },
  payment: unknown,
  notification: unknown,
  fail = false,
): Promise<void> {
  const kafka = new Annals({ clientId: 'order-processor', storage });
  const producer = kafka.producer({
    transactionalId: 'order-processor-1', // unique per producer instance
    idempotent: true,
  });
  await producer.connect();
  const transaction = await producer.transaction();
  try {
    await transaction.send({
      topic: 'payments',
      messages: [{ key: order.id, value: JSON.stringify(payment) }],
    });
    await transaction.send({
      topic: 'notifications',
      messages: [{ key: order.id, value: JSON.stringify(notification) }],
    });
    if (fail) throw new Error('simulated failure before commit');
    await transaction.commit();
  } catch (err) {
    await transaction.abort();
    throw err;
  }
}
