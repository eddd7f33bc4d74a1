/** The typed contract of the hostile-bytes scenario: one event, msgpack-encoded. */
import { defineEvent, defineTopic } from '@annals/core';
import { z } from 'zod';

export const ChaosEvent = defineEvent({ type: 'chaos.event', versions: { 1: z.object({ id: z.string(), k: z.string() }) } });

export function typedTopic(name: string, partitions: number) {
  return defineTopic({ name, partitions, events: [ChaosEvent], key: (e) => e.k });
}
