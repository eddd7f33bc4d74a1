/**
 * The primer's "Producing with KafkaJS" snippet. Only the construction changed:
 * `new Annals({ clientId, storage })` in place of `new Kafka({ clientId, brokers })`.
 */
import { Annals, type LogStorage } from '@annals/core';

export interface Order {
  id: string;
  customerId: string;
  total: number;
}

export async function produceOrders(storage: LogStorage<any>, order: Order, orders: Order[]): Promise<void> {
  const kafka = new Annals({
    clientId: 'order-service',
    storage,
    retry: {
      retries: 8,
      initialRetryTime: 300,
    },
  });

  const producer = kafka.producer({
    allowAutoTopicCreation: false,
    transactionTimeout: 30_000,
  });
  await producer.connect();

  // Single message
  await producer.send({
    topic: 'orders',
    messages: [
      {
        key: order.customerId, // same customer → same partition → ordered
        value: JSON.stringify(order),
        headers: {
          'event-type': 'order.created',
          'schema-version': '1',
        },
      },
    ],
  });

  // Batch for throughput
  await producer.send({
    topic: 'orders',
    messages: orders.map((order) => ({
      key: order.customerId,
      value: JSON.stringify(order),
    })),
  });
  await producer.disconnect();
}
