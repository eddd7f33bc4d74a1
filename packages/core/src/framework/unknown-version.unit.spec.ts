/**
 * Subscribers (the handler layer over the consumer) meeting a record of a schema version newer
 * than their contract: each `onUnknownVersion` policy, through the consumer's own failure paths.
 */
import { InMemoryLogStorage } from '@annals/testing';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { Annals } from '../client/annals.js';
import { defineEvent } from '../contracts/event.js';
import { defineTopic } from '../contracts/topic.js';
import { defineSubscriber, on } from './definitions.js';

const v1 = z.object({ id: z.string() });
const v2 = z.object({ id: z.string(), carrier: z.string() });
const newer = (compatibility: 'forward' | 'backward') =>
  defineEvent({ type: 'booked', versions: { 1: v1, 2: v2 }, upcast: { 1: (p) => ({ ...p, carrier: '?' }) }, compatibility });
const older = (compatibility: 'forward' | 'backward') => defineEvent({ type: 'booked', versions: { 1: v1 }, compatibility });

async function until(what: string, condition: () => boolean | Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('subscribers and unknown schema versions', () => {
  for (const mode of ['forward', 'backward'] as const) {
    it(`read-as-latest-known on a ${mode} event: ${mode === 'forward' ? 'handled as v1' : 'refused, routed by onFailure (dead-letter)'}`, async () => {
      const storage = new InMemoryLogStorage();
      const New = newer(mode);
      const Old = older(mode);
      await using producer = new Annals({ clientId: 'newer', storage });
      await using consumer = new Annals({ clientId: 'older', storage });
      await producer.admin().createTopics({ topics: [defineTopic({ name: 'bookings', events: [New] }), { topic: 'dlq' }] });
      await producer.producer().publish(defineTopic({ name: 'bookings', events: [New] }), New, { id: 'b-1', carrier: 'DHL' });
      const seen: unknown[] = [];
      const registration = consumer.register(
        defineSubscriber({
          groupId: 'older',
          topics: [defineTopic({ name: 'bookings', events: [Old] })],
          fromBeginning: true,
          onUnknownVersion: 'read-as-latest-known',
          onFailure: 'dead-letter',
          deadLetterTopic: 'dlq',
          maxWaitTimeInMs: 50,
          handlers: [on(Old, (e, ctx) => void seen.push([e, ctx.metadata.storedVersion]))],
        }),
      );
      await consumer.start();
      const dlq = async () => (await storage.fetch('dlq', 0, 0n, { maxRecords: 10, maxBytes: 1 << 20 })).records;
      if (mode === 'forward') {
        await until('the event is handled', () => seen.length === 1);
        expect(seen).toEqual([[{ id: 'b-1' }, 2]]);
        expect(await dlq()).toEqual([]);
      } else {
        await until('the record is dead-lettered', async () => (await dlq()).length === 1);
        const [record] = await dlq();
        expect(new TextDecoder().decode(record!.headers['annals-dlq-error-message'])).toMatch(/"booked" is backward-compatible, and only forward or full/);
        expect(seen).toEqual([]);
        expect(registration.stats().handled).toBe(0);
      }
    });
  }

  it("dead-letter sends the newer record to the dead-letter topic although onFailure is 'stop'; fail stops the subscriber", async () => {
    const storage = new InMemoryLogStorage();
    const New = newer('forward');
    const Old = older('forward');
    await using annals = new Annals({ clientId: 'both', storage });
    const newTopic = defineTopic({ name: 'bookings', events: [New] });
    const oldTopic = defineTopic({ name: 'bookings', events: [Old] });
    await annals.admin().createTopics({ topics: [newTopic, { topic: 'dlq' }] });
    await annals.producer().publish(newTopic, New, { id: 'b-1', carrier: 'DHL' });
    const handled: string[] = [];
    const common = { topics: [oldTopic], fromBeginning: true, maxWaitTimeInMs: 50, handlers: [on(Old, (e) => void handled.push(e.id))] };
    annals.register(defineSubscriber({ ...common, groupId: 'dlq-group', onUnknownVersion: 'dead-letter', deadLetterTopic: 'dlq', onFailure: 'stop' }));
    const failing = annals.register(defineSubscriber({ ...common, groupId: 'fail-group', onUnknownVersion: 'fail', onFailure: 'stop' }));
    await annals.start();
    await until('dead-lettered', async () => (await storage.fetch('dlq', 0, 0n, { maxRecords: 10, maxBytes: 1 << 20 })).records.length === 1);
    await until('the failing subscriber stops', () => failing.error() !== undefined);
    expect(String((failing.error() as Error).cause)).toMatch(/newer than this contract knows \(v1–v1\)/);
    expect(handled).toEqual([]);
  });
});

describe('onUnknownVersion options', () => {
  it('are validated when the consumer is created', () => {
    const annals = new Annals({ clientId: 'options', storage: new InMemoryLogStorage() });
    expect(() => annals.consumer({ groupId: 'g', onUnknownVersion: 'dead-letter' })).toThrow(/onUnknownVersion: 'dead-letter' needs deadLetterTopic/);
    expect(() => annals.consumer({ groupId: 'g', onUnknownVersion: 'skip' as never })).toThrow(/onUnknownVersion must be 'fail', 'dead-letter', 'read-as-latest-known'/);
    expect(() => new Annals({ clientId: 'x', storage: new InMemoryLogStorage(), registerSchemas: 'yes' as never })).toThrow(/registerSchemas must be true or false/);
    expect(() => defineEvent({ type: 'x', versions: { 1: v1 }, compatibility: 'sideways' as never })).toThrow(/compatibility must be one of 'backward', 'forward', 'full', 'none'/);
  });
});
