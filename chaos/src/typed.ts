/** The typed contract of the hostile-bytes scenario: one event, msgpack-encoded. */
import { defineEvent, defineProjection, defineTopic, on, type ProjectionContext } from '@annals/core';
import { z } from 'zod';

export const ChaosEvent = defineEvent({ type: 'chaos.event', versions: { 1: z.object({ id: z.string(), k: z.string() }) } });

export function typedTopic(name: string, partitions: number) {
  return defineTopic({ name, partitions, events: [ChaosEvent], key: (e) => e.k });
}

export const SEEN_PROJECTION = 'seen';
export const SEEN_GROUP = 'projection:seen';

/** A document per event id counting how many times it was applied: exactly once means every count is 1. */
export function seenProjection(input: {
  topic: string;
  partitions: number;
  schema: string;
  batchSize: number;
  delayMs?: number;
  onEvent?: (e: { id: string; k: string }, ctx: ProjectionContext) => void;
}) {
  return defineProjection({
    name: SEEN_PROJECTION,
    version: 1,
    schema: input.schema,
    topics: [typedTopic(input.topic, input.partitions)],
    documents: ['seen'],
    batchSize: input.batchSize,
    rebuildConcurrency: 1,
    autoRebuild: false,
    handlers: [
      on(ChaosEvent, async (event, ctx: ProjectionContext) => {
        input.onEvent?.(event, ctx);
        ctx.documents<{ n: number }>('seen').update(event.id, (d) => ({ n: (d?.n ?? 0) + 1 }));
        if (input.delayMs) await new Promise((r) => setTimeout(r, input.delayMs));
      }),
    ],
  });
}
