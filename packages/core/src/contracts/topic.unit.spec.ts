import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { InvalidConfigError, InvalidOptionsError, InvalidTopicError } from '../errors.js';
import { defineEvent } from './event.js';
import { defineTopic } from './topic.js';
import { DEFAULT_TOPIC_CONFIG, resolveTopicConfig, topicConfigEntries } from './topic-config.js';
import { validateTopicName } from './topic-name.js';

const Created = defineEvent({ type: 'created', versions: { 1: z.object({ id: z.string(), customerId: z.string() }) } });
const Paid = defineEvent({ type: 'paid', versions: { 1: z.object({ id: z.string(), customerId: z.string(), cents: z.number() }) } });

describe('topic names', () => {
  it.each(['orders', 'a', 'A.b_c-9', 'x'.repeat(249)])('accepts %s', (name) => {
    expect(() => validateTopicName(name)).not.toThrow();
  });
  it.each(['', '.', '..', 'x'.repeat(250), 'orders;drop', 'ä', 'a b', 'a/b', "o'rders"])('refuses %j', (name) => {
    expect(() => validateTopicName(name)).toThrow(InvalidTopicError);
  });
});

describe('topic config', () => {
  it('has a default for every key and parses Kafka-style strings', () => {
    const c = resolveTopicConfig([
      { name: 'retention.ms', value: '1000' },
      { name: 'cleanup.policy', value: 'delete,compact' },
    ]);
    expect(c['retention.ms']).toBe(1000);
    expect(c['cleanup.policy']).toBe('compact,delete');
    expect(c['max.message.bytes']).toBe(DEFAULT_TOPIC_CONFIG['max.message.bytes']);
    expect(Object.isFrozen(c)).toBe(true);
    expect(topicConfigEntries(c).find((e) => e.name === 'retention.ms')?.value).toBe('1000');
  });
  it('refuses unknown keys and invalid values with the key named', () => {
    expect(() => resolveTopicConfig({ 'retention.mss': 1 } as never)).toThrow(/Unknown topic config key "retention.mss"/);
    expect(() => resolveTopicConfig({ 'retention.ms': -2 })).toThrow(InvalidConfigError);
    expect(() => resolveTopicConfig({ 'retention.ms': '12abc' })).toThrow(/retention.ms/);
    expect(() => resolveTopicConfig({ 'cleanup.policy': 'archive' })).toThrow(/cleanup.policy/);
    expect(() => resolveTopicConfig({ 'max.message.bytes': 0 })).toThrow(InvalidConfigError);
  });
  it('restores the default for a null entry', () => {
    const base = resolveTopicConfig({ 'retention.ms': 5 });
    expect(resolveTopicConfig([{ name: 'retention.ms', value: null }], base)['retention.ms']).toBe(604_800_000);
  });
});

describe('defineTopic', () => {
  const orders = defineTopic({
    name: 'orders',
    partitions: 6,
    events: [Created, Paid],
    key: (e) => e.customerId,
    config: { 'retention.ms': 60_000 },
  });
  it('keeps the events, the key function and the resolved config', () => {
    expect(orders.partitions).toBe(6);
    expect(orders.eventByType('paid')).toBe(Paid);
    expect(orders.eventByType('refunded')).toBeUndefined();
    expect(orders.keyOf({ id: '1', customerId: 'c42' })).toBe('c42');
    expect(orders.config['retention.ms']).toBe(60_000);
  });
  it('refuses bad definitions', () => {
    expect(() => defineTopic({ name: 'bad name', events: [Created] })).toThrow(InvalidTopicError);
    expect(() => defineTopic({ name: 't', partitions: 0, events: [Created] })).toThrow(InvalidOptionsError);
    expect(() => defineTopic({ name: 't', events: [] })).toThrow(/at least one event/);
    expect(() => defineTopic({ name: 't', events: [Created, Created] })).toThrow(/twice/);
    expect(() => defineTopic({ name: 't', events: [Created], config: { 'cleanup.policy': 'x' } })).toThrow(InvalidConfigError);
  });
});
