/** The primer's "Consuming with KafkaJS" snippet, with only the construction changed. */
import { Annals, type Consumer, type LogStorage } from '@annals/core';

export async function consumeOrders(storage: LogStorage<any>, processOrder: (order: unknown) => Promise<void>): Promise<Consumer<any>> {
  const kafka = new Annals({ clientId: 'payment-service', storage });

  const consumer = kafka.consumer({
    groupId: 'payment-service',
    sessionTimeout: 30_000,
    heartbeatInterval: 3_000,
    maxBytesPerPartition: 1_048_576, // 1MB per fetch
  });
  await consumer.connect();
  await consumer.subscribe({ topic: 'orders', fromBeginning: false });
  await consumer.run({
    eachMessage: async ({ topic, partition, message }) => {
      const order = JSON.parse(message.value!.toString());
      const offset = message.offset;
      void topic;
      void partition;
      void offset;
      try {
        await processOrder(order);
        // Offset committed automatically after successful return
      } catch (err) {
        // Don't ack — consumer will retry from this offset
        throw err;
      }
    },
  });
  return consumer;
}
