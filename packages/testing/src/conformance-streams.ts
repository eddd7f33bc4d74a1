/**
 * The stream part of the storage conformance suite (`stream-storage.ts` in `@annals/core`):
 * expected-version appends, stream reads, snapshots. Declared inside
 * `describeLogStorageConformance`, so every store runs it.
 *
 * Named invariants, each pinned by a test:
 * - **one winner**: of concurrent appends expecting the same version, exactly one commits; every
 *   other one throws `WrongExpectedVersionError` and writes nothing (a test with 12 writers, and a
 *   fast-check property over random interleavings with plain appends and rolled-back transactions);
 * - **version = records of the key**: plain appends with the stream's key count, other keys and
 *   partitions do not; a rolled-back or failed append counts nothing;
 * - **streams refuse deleting topics**: retention or compaction → `InvalidConfigError`, nothing
 *   written; a stream whose start was removed reads as `StreamTruncatedError`.
 */
import type { AppendRecord, LogStorage, PartitionAppend, StreamExpectation, TopicConfig, TopicSpec } from '@annals/core';
import { DEFAULT_TOPIC_CONFIG } from '@annals/core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const bytes = (s: string): Uint8Array => encoder.encode(s);
const text = (b: Uint8Array | null): string | null => (b === null ? null : decoder.decode(b));

/** Streams need retention.ms = -1. */
function streamSpec(name: string, partitions = 1, overrides: Partial<Record<keyof TopicConfig, unknown>> = {}): TopicSpec {
  return { name, partitions, config: { ...DEFAULT_TOPIC_CONFIG, 'retention.ms': -1, ...overrides } as TopicConfig };
}

function rec(key: string | null, value: string): AppendRecord {
  return { key: key === null ? null : bytes(key), value: bytes(value), headers: null, timestamp: null };
}

function events(topic: string, key: string, values: readonly string[], partition = 0): PartitionAppend {
  return { topic, partition, records: values.map((v) => rec(key, v)) };
}

function stream(topic: string, key: string, expectedVersion: StreamExpectation['expectedVersion'], partition = 0): StreamExpectation {
  return { topic, partition, key: bytes(key), expectedVersion };
}

async function rejection(promise: Promise<unknown>, errorName: string): Promise<any> {
  let error: any;
  try {
    await promise;
  } catch (e) {
    error = e;
  }
  expect(error, `expected a rejection with ${errorName}, but the promise resolved`).toBeDefined();
  expect(error?.name, `expected ${errorName}, got ${error?.name}: ${error?.message}`).toBe(errorName);
  return error;
}

async function values(storage: LogStorage<any>, topic: string, key: string, partition = 0): Promise<string[]> {
  const slice = await storage.readStream(topic, partition, bytes(key));
  return slice.records.map((r) => text(r.value)!);
}

export interface StreamConformanceContext {
  readonly storage: () => LogStorage<any>;
  readonly fcParams: (numRuns: number) => { numRuns: number; seed?: number };
  readonly propertyRuns: number;
}

export function describeStreamConformance(ctx: StreamConformanceContext): void {
  describe('streams', () => {
    it('checks the expected version (no-stream, a number, any); a mismatch throws WrongExpectedVersionError with both versions and writes nothing', async () => {
      const storage = ctx.storage();
      await storage.createTopics([streamSpec('orders')]);
      const first = await storage.appendToStreams([events('orders', 'o-1', ['created', 'priced'])], [stream('orders', 'o-1', 'no-stream')]);
      expect(first.appends.map((a) => a.baseOffset)).toEqual([0n]);
      expect(first.streams.map((s) => [s.previousVersion, s.version])).toEqual([[0, 2]]);
      expect([...first.streams[0]!.key]).toEqual([...bytes('o-1')]);

      const conflict = await rejection(storage.appendToStreams([events('orders', 'o-1', ['x'])], [stream('orders', 'o-1', 1)]), 'WrongExpectedVersionError');
      expect(conflict).toMatchObject({ code: 'WRONG_EXPECTED_VERSION', topic: 'orders', partition: 0, key: 'o-1', expectedVersion: 1, actualVersion: 2, retriable: false });
      await rejection(storage.appendToStreams([events('orders', 'o-1', ['x'])], [stream('orders', 'o-1', 'no-stream')]), 'WrongExpectedVersionError');
      await rejection(storage.appendToStreams([events('orders', 'o-1', ['x'])], [stream('orders', 'o-1', 3)]), 'WrongExpectedVersionError');
      expect((await storage.fetchWatermarks('orders'))[0]!.high).toBe(2n);

      const second = await storage.appendToStreams([events('orders', 'o-1', ['paid'])], [stream('orders', 'o-1', 2)]);
      expect(second.streams[0]).toMatchObject({ previousVersion: 2, version: 3 });
      expect(second.appends[0]!.baseOffset).toBe(2n);
      const any = await storage.appendToStreams([events('orders', 'o-1', ['shipped'])], [stream('orders', 'o-1', 'any')]);
      expect(any.streams[0]).toMatchObject({ previousVersion: 3, version: 4 });
      // Another stream of the same partition starts at 0.
      const other = await storage.appendToStreams([events('orders', 'o-2', ['created'])], [stream('orders', 'o-2', 0)]);
      expect(other.streams[0]).toMatchObject({ previousVersion: 0, version: 1 });
      expect(await values(storage, 'orders', 'o-1')).toEqual(['created', 'priced', 'paid', 'shipped']);
      const slice = await storage.readStream('orders', 0, bytes('o-1'));
      expect(slice.version).toBe(4);
      expect(slice.snapshot).toBeNull();
      expect(slice.records.map((r) => r.offset)).toEqual([0n, 1n, 2n, 3n]);
      expect(slice.records.every((r) => r.topic === 'orders' && r.partition === 0 && text(r.key) === 'o-1')).toBe(true);
    });

    it("plain appends with the stream's key count in its version; other keys and partitions do not", async () => {
      const storage = ctx.storage();
      await storage.createTopics([streamSpec('mixed', 2)]);
      await storage.append([events('mixed', 'k', ['plain-1'])]);
      expect((await storage.readStream('mixed', 0, bytes('k'))).version).toBe(1);
      await storage.appendToStreams([events('mixed', 'k', ['s-1'])], [stream('mixed', 'k', 1)]);
      await storage.append([
        { topic: 'mixed', partition: 0, records: [rec('k', 'plain-2'), rec('other', 'o'), rec(null, 'n')] },
        { topic: 'mixed', partition: 1, records: [rec('k', 'elsewhere')] },
      ]);
      await rejection(storage.appendToStreams([events('mixed', 'k', ['late'])], [stream('mixed', 'k', 2)]), 'WrongExpectedVersionError');
      const r = await storage.appendToStreams([events('mixed', 'k', ['s-2'])], [stream('mixed', 'k', 3)]);
      expect(r.streams[0]).toMatchObject({ previousVersion: 3, version: 4 });
      expect(await values(storage, 'mixed', 'k')).toEqual(['plain-1', 's-1', 'plain-2', 's-2']);
      expect((await storage.readStream('mixed', 0, bytes('nobody'))).version).toBe(0);
      expect((await storage.readStream('mixed', 0, bytes('nobody'))).records).toEqual([]);
      // Records of the call carrying the key count; records of other keys in the call do not.
      const mixedCall = await storage.appendToStreams(
        [{ topic: 'mixed', partition: 0, records: [rec('k', 'a'), rec('other', 'b'), rec('k', 'c')] }],
        [stream('mixed', 'k', 4)],
      );
      expect(mixedCall.streams[0]).toMatchObject({ previousVersion: 4, version: 6 });
      // An expectation alone (no records) checks without writing.
      const check = await storage.appendToStreams([], [stream('mixed', 'k', 6)]);
      expect(check).toEqual({ appends: [], streams: [expect.objectContaining({ previousVersion: 6, version: 6 })] });
      await rejection(storage.appendToStreams([], [stream('mixed', 'k', 5)]), 'WrongExpectedVersionError');
    });

    it("a plain record of a key still counts after other streams' appends wrote past it (the store may not lose track of it)", async () => {
      const storage = ctx.storage();
      await storage.createTopics([streamSpec('marks', 1)]);
      // k has a counter; a plain record of k follows; then only other streams append.
      await storage.appendToStreams([events('marks', 'k', ['k-1'])], [stream('marks', 'k', 0)]);
      await storage.append([events('marks', 'k', ['k-plain'])]);
      await storage.appendToStreams([events('marks', 'a', ['a-1'])], [stream('marks', 'a', 0)]);
      await storage.appendToStreams([events('marks', 'b', ['b-1'])], [stream('marks', 'b', 0)]);
      await rejection(storage.appendToStreams([events('marks', 'k', ['k-stale'])], [stream('marks', 'k', 1)]), 'WrongExpectedVersionError');
      // j has no counter yet: its plain record before the other streams' appends counts too.
      await storage.append([events('marks', 'j', ['j-plain'])]);
      await storage.appendToStreams([events('marks', 'a', ['a-2'])], [stream('marks', 'a', 1)]);
      await rejection(storage.appendToStreams([events('marks', 'j', ['j-stale'])], [stream('marks', 'j', 'no-stream')]), 'WrongExpectedVersionError');
      // A call that writes records of a key it does not check leaves them to be counted later.
      await storage.appendToStreams([{ topic: 'marks', partition: 0, records: [rec('a', 'a-3'), rec('m', 'm-unchecked')] }], [stream('marks', 'a', 2)]);
      await storage.appendToStreams([events('marks', 'b', ['b-2'])], [stream('marks', 'b', 1)]);
      await rejection(storage.appendToStreams([events('marks', 'm', ['m-stale'])], [stream('marks', 'm', 'no-stream')]), 'WrongExpectedVersionError');
      expect((await storage.appendToStreams([events('marks', 'k', ['k-3'])], [stream('marks', 'k', 2)])).streams[0]).toMatchObject({ version: 3 });
      expect((await storage.appendToStreams([events('marks', 'j', ['j-2'])], [stream('marks', 'j', 1)])).streams[0]).toMatchObject({ version: 2 });
      expect((await storage.appendToStreams([events('marks', 'm', ['m-2'])], [stream('marks', 'm', 1)])).streams[0]).toMatchObject({ version: 2 });
      expect(await values(storage, 'marks', 'k')).toEqual(['k-1', 'k-plain', 'k-3']);
      expect(await values(storage, 'marks', 'j')).toEqual(['j-plain', 'j-2']);
      expect(await values(storage, 'marks', 'm')).toEqual(['m-unchecked', 'm-2']);
    });

    it('a conflict on one stream writes nothing of the call: not its other streams, not its plain appends', async () => {
      const storage = ctx.storage();
      await storage.createTopics([streamSpec('a', 2), streamSpec('b')]);
      await storage.appendToStreams([events('a', 'x', ['1'])], [stream('a', 'x', 0)]);
      await rejection(
        storage.appendToStreams(
          [events('a', 'y', ['y1'], 1), events('a', 'x', ['x2']), { topic: 'b', partition: 0, records: [rec(null, 'side')] }],
          [stream('a', 'y', 0, 1), stream('a', 'x', 0)],
        ),
        'WrongExpectedVersionError',
      );
      expect((await storage.fetchWatermarks('a')).map((w) => w.high)).toEqual([1n, 0n]);
      expect((await storage.fetchWatermarks('b')).map((w) => w.high)).toEqual([0n]);
      const ok = await storage.appendToStreams(
        [events('a', 'y', ['y1'], 1), events('a', 'x', ['x2']), { topic: 'b', partition: 0, records: [rec(null, 'side')] }],
        [stream('a', 'y', 0, 1), stream('a', 'x', 1)],
      );
      expect(ok.appends.map((r) => [r.topic, r.partition, r.baseOffset])).toEqual([
        ['a', 1, 0n],
        ['a', 0, 1n],
        ['b', 0, 0n],
      ]);
      expect(ok.streams.map((s) => s.version)).toEqual([1, 2]);
    });

    it('refuses invalid calls before writing: unknown partitions, a stream listed twice, a bad expectedVersion, an empty key', async () => {
      const storage = ctx.storage();
      await storage.createTopics([streamSpec('strict', 2)]);
      await rejection(storage.appendToStreams([events('strict', 'k', ['x'], 5)], [stream('strict', 'k', 0, 5)]), 'UnknownTopicOrPartitionError');
      await rejection(storage.appendToStreams([events('nowhere', 'k', ['x'])], [stream('nowhere', 'k', 0)]), 'UnknownTopicOrPartitionError');
      await rejection(storage.appendToStreams([events('strict', 'k', ['x'])], [stream('strict', 'k', 0), stream('strict', 'k', 0)]), 'InvalidOptionsError');
      await rejection(storage.appendToStreams([events('strict', 'k', ['x'])], [stream('strict', 'k', -1)]), 'InvalidOptionsError');
      await rejection(storage.appendToStreams([events('strict', 'k', ['x'])], [stream('strict', 'k', 1.5)]), 'InvalidOptionsError');
      await rejection(storage.appendToStreams([events('strict', '', ['x'])], [stream('strict', '', 0)]), 'InvalidOptionsError');
      await rejection(storage.readStream('strict', 7, bytes('k')), 'UnknownTopicOrPartitionError');
      expect((await storage.fetchWatermarks('strict')).map((w) => w.high)).toEqual([0n, 0n]);
    });

    it('refuses topics whose retention or compaction would delete events (InvalidConfigError), writing nothing', async () => {
      const storage = ctx.storage();
      await storage.createTopics([
        streamSpec('timed', 1, { 'retention.ms': 86_400_000 }),
        streamSpec('sized', 1, { 'retention.bytes': 1_000_000 }),
        streamSpec('compacted', 1, { 'cleanup.policy': 'compact' }),
      ]);
      for (const topic of ['timed', 'sized', 'compacted']) {
        const error = await rejection(storage.appendToStreams([events(topic, 'k', ['x'])], [stream(topic, 'k', 'any')]), 'InvalidConfigError');
        expect(error.topic).toBe(topic);
        expect(error.message).toMatch(/cannot hold event-sourced streams/);
      }
      expect(error2message(await rejection(storage.appendToStreams([events('timed', 'k', ['x'])], [stream('timed', 'k', 0)]), 'InvalidConfigError'))).toMatch(
        /retention\.ms is 86400000/,
      );
      for (const topic of ['timed', 'sized', 'compacted']) expect((await storage.fetchWatermarks(topic))[0]!.high).toBe(0n);
    });

    it('in a transaction: its own stream appends are read back and counted; a rollback or a rolled-back savepoint counts nothing', async () => {
      const storage = ctx.storage();
      await storage.createTopics([streamSpec('tx')]);
      await storage.transaction(async (tx) => {
        expect((await tx.readStream('tx', 0, bytes('k'))).version).toBe(0);
        await tx.appendToStreams([events('tx', 'k', ['a'])], [stream('tx', 'k', 0)]);
        const mine = await tx.readStream('tx', 0, bytes('k'));
        expect([mine.version, mine.records.map((r) => text(r.value))]).toEqual([1, ['a']]);
        await tx.appendToStreams([events('tx', 'k', ['b'])], [stream('tx', 'k', 1)]);
        await rejection(tx.appendToStreams([events('tx', 'k', ['c'])], [stream('tx', 'k', 1)]), 'WrongExpectedVersionError');
        // Not visible outside before the commit.
        expect((await storage.readStream('tx', 0, bytes('k'))).version).toBe(0);
      });
      expect(await values(storage, 'tx', 'k')).toEqual(['a', 'b']);

      await rejection(
        storage.transaction(async (tx) => {
          await tx.appendToStreams([events('tx', 'k', ['rolled-back'])], [stream('tx', 'k', 2)]);
          throw Object.assign(new Error('boom'), { name: 'Boom' });
        }),
        'Boom',
      );
      expect((await storage.readStream('tx', 0, bytes('k'))).version).toBe(2);

      const tx = storage.deferredTransaction();
      try {
        // An expectation without records begins the transaction (and checks): the savepoint below is a real one.
        await tx.appendToStreams([], [stream('tx', 'k', 2)]);
        await rejection(
          tx.savepoint(async () => {
            await tx.appendToStreams([events('tx', 'k', ['undone'])], [stream('tx', 'k', 2)]);
            throw Object.assign(new Error('undo'), { name: 'Undo' });
          }),
          'Undo',
        );
        const r = await tx.appendToStreams([events('tx', 'k', ['c'])], [stream('tx', 'k', 2)]);
        expect(r.streams[0]).toMatchObject({ previousVersion: 2, version: 3 });
        await tx.commit();
      } finally {
        await tx.rollback();
      }
      expect(await values(storage, 'tx', 'k')).toEqual(['a', 'b', 'c']);
      const next = await storage.appendToStreams([events('tx', 'k', ['d'])], [stream('tx', 'k', 3)]);
      expect(next.appends[0]!.baseOffset).toBe(3n);
    });

    it('a savepoint taken before the transaction began rolls back what its callback wrote (appends and stream appends), and the transaction stays usable', async () => {
      const storage = ctx.storage();
      await storage.createTopics([streamSpec('sp')]);
      const tx = storage.deferredTransaction();
      try {
        await rejection(
          tx.savepoint(async () => {
            await tx.append([events('sp', 'plain', ['p'])]);
            await tx.appendToStreams([events('sp', 'k', ['s'])], [stream('sp', 'k', 0)]);
            throw Object.assign(new Error('handler failed'), { name: 'HandlerFailed' });
          }),
          'HandlerFailed',
        );
        // As a consumer does after a failed record: go on with the same transaction.
        await tx.appendToStreams([events('sp', 'k', ['retried'])], [stream('sp', 'k', 0)]);
        await tx.commit();
      } finally {
        await tx.rollback();
      }
      const slice = await storage.readStream('sp', 0, bytes('k'));
      expect([slice.version, slice.records.map((r) => [r.offset, text(r.value)])]).toEqual([1, [[0n, 'retried']]]);
      expect((await storage.fetchWatermarks('sp'))[0]!.high).toBe(1n);
    });

    it('12 concurrent appends expecting the same version: exactly one wins, every other one throws WrongExpectedVersionError and writes nothing', async () => {
      const storage = ctx.storage();
      await storage.createTopics([streamSpec('race')]);
      await storage.appendToStreams([events('race', 'k', ['start'])], [stream('race', 'k', 'no-stream')]);
      const outcomes = await Promise.allSettled(
        Array.from({ length: 12 }, (_, i) => storage.appendToStreams([events('race', 'k', [`w${i}-a`, `w${i}-b`])], [stream('race', 'k', 1)])),
      );
      const won = outcomes.filter((o) => o.status === 'fulfilled');
      const lost = outcomes.filter((o): o is PromiseRejectedResult => o.status === 'rejected');
      expect(won).toHaveLength(1);
      expect(lost.map((o) => o.reason?.name)).toEqual(Array(11).fill('WrongExpectedVersionError'));
      expect(lost.every((o) => o.reason.actualVersion === 3 && o.reason.expectedVersion === 1)).toBe(true);
      const slice = await storage.readStream('race', 0, bytes('k'));
      expect(slice.version).toBe(3);
      expect(slice.records.map((r) => r.offset)).toEqual([0n, 1n, 2n]);
      expect((await storage.fetchWatermarks('race'))[0]!.high).toBe(3n);
    });

    it('snapshots: the newest is kept (a newer schema version replaces any), a read starts after it, another schema version is ignored, deleteSnapshots removes them', async () => {
      const storage = ctx.storage();
      await storage.createTopics([streamSpec('snaps')]);
      await storage.appendToStreams([events('snaps', 'k', ['1', '2', '3'])], [stream('snaps', 'k', 0)]);
      const snap = { name: 'order', topic: 'snaps', key: bytes('k'), schemaVersion: 1, version: 2, offset: 1n, state: bytes('{"n":2}') };
      expect(await storage.saveSnapshot(snap)).toBe(true);
      expect(await storage.saveSnapshot({ ...snap, version: 1, offset: 0n })).toBe(false);
      expect(await storage.saveSnapshot(snap)).toBe(false);
      const read = await storage.readStream('snaps', 0, bytes('k'), { snapshot: { name: 'order', schemaVersion: 1 } });
      expect(read.version).toBe(3);
      expect(read.snapshot).toMatchObject({ name: 'order', topic: 'snaps', schemaVersion: 1, version: 2, offset: 1n });
      expect(text(read.snapshot!.state)).toBe('{"n":2}');
      expect(Math.abs(read.snapshot!.takenAt - Date.now())).toBeLessThan(300_000);
      expect(read.records.map((r) => text(r.value))).toEqual(['3']);
      const other = await storage.readStream('snaps', 0, bytes('k'), { snapshot: { name: 'order', schemaVersion: 2 } });
      expect([other.snapshot, other.records.length]).toEqual([null, 3]);
      expect((await storage.readStream('snaps', 0, bytes('k'), { snapshot: { name: 'invoice', schemaVersion: 1 } })).snapshot).toBeNull();
      // A newer schema version replaces the stored one even at a lower stream version; an older one never does.
      expect(await storage.saveSnapshot({ ...snap, schemaVersion: 2, version: 1, offset: 0n })).toBe(true);
      expect(await storage.saveSnapshot({ ...snap, schemaVersion: 1, version: 3, offset: 2n })).toBe(false);
      expect((await storage.readStream('snaps', 0, bytes('k'), { snapshot: { name: 'order', schemaVersion: 1 } })).snapshot).toBeNull();
      expect((await storage.readStream('snaps', 0, bytes('k'), { snapshot: { name: 'order', schemaVersion: 2 } })).records).toHaveLength(2);
      await rejection(storage.saveSnapshot({ ...snap, topic: 'nowhere' }), 'UnknownTopicOrPartitionError');
      expect(await storage.deleteSnapshots('order')).toBe(1);
      expect(await storage.deleteSnapshots('order')).toBe(0);
      expect((await storage.readStream('snaps', 0, bytes('k'), { snapshot: { name: 'order', schemaVersion: 2 } })).snapshot).toBeNull();
    });

    it('a stream whose first records were removed reads as StreamTruncatedError, unless a snapshot covers them; appends go on counting', async () => {
      const storage = ctx.storage();
      await storage.createTopics([streamSpec('cut')]);
      await storage.appendToStreams([events('cut', 'k', ['1', '2', '3', '4'])], [stream('cut', 'k', 0)]);
      await storage.deleteRecords('cut', [{ partition: 0, offset: 2n }]);
      const error = await rejection(storage.readStream('cut', 0, bytes('k')), 'StreamTruncatedError');
      expect(error).toMatchObject({ code: 'STREAM_TRUNCATED', topic: 'cut', key: 'k' });
      const r = await storage.appendToStreams([events('cut', 'k', ['5'])], [stream('cut', 'k', 4)]);
      expect(r.streams[0]!.version).toBe(5);
      await storage.saveSnapshot({ name: 'agg', topic: 'cut', key: bytes('k'), schemaVersion: 1, version: 2, offset: 1n, state: bytes('s') });
      const read = await storage.readStream('cut', 0, bytes('k'), { snapshot: { name: 'agg', schemaVersion: 1 } });
      expect([read.version, read.records.map((x) => text(x.value))]).toEqual([5, ['3', '4', '5']]);
    });

    it('a stream stays in the partition it began in: naming another partition (the key moved after createPartitions) throws InvalidPartitionsError', async () => {
      const storage = ctx.storage();
      await storage.createTopics([streamSpec('home', 2)]);
      await storage.appendToStreams([events('home', 'k', ['1'])], [stream('home', 'k', 0)]);
      await storage.createPartitions('home', 4);
      await rejection(storage.appendToStreams([events('home', 'k', ['2'], 3)], [stream('home', 'k', 1, 3)]), 'InvalidPartitionsError');
      await rejection(storage.readStream('home', 3, bytes('k')), 'InvalidPartitionsError');
      expect((await storage.fetchWatermarks('home')).map((w) => w.high)).toEqual([1n, 0n, 0n, 0n]);
      expect(await values(storage, 'home', 'k')).toEqual(['1']);
    });

    it('a deleted topic takes its streams and snapshots with it', async () => {
      const storage = ctx.storage();
      await storage.createTopics([streamSpec('gone')]);
      await storage.appendToStreams([events('gone', 'k', ['1', '2'])], [stream('gone', 'k', 0)]);
      await storage.saveSnapshot({ name: 'agg', topic: 'gone', key: bytes('k'), schemaVersion: 1, version: 1, offset: 0n, state: bytes('s') });
      await storage.deleteTopics(['gone']);
      await storage.createTopics([streamSpec('gone')]);
      const fresh = await storage.readStream('gone', 0, bytes('k'), { snapshot: { name: 'agg', schemaVersion: 1 } });
      expect([fresh.version, fresh.snapshot, fresh.records]).toEqual([0, null, []]);
      const r = await storage.appendToStreams([events('gone', 'k', ['again'])], [stream('gone', 'k', 'no-stream')]);
      expect(r.streams[0]!.version).toBe(1);
    });

    it('property: random interleavings of expected-version appends, plain appends and rolled-back transactions keep one winner per version and a dense stream', async () => {
      let run = 0;
      type Op =
        | { kind: 'stream'; ahead: number; count: number; delay: number }
        | { kind: 'plain'; count: number; delay: number }
        | { kind: 'rollback'; delay: number };
      const op: fc.Arbitrary<Op> = fc.oneof(
        { weight: 6, arbitrary: fc.record({ kind: fc.constant('stream' as const), ahead: fc.integer({ min: -1, max: 1 }), count: fc.integer({ min: 1, max: 3 }), delay: fc.integer({ min: 0, max: 3 }) }) },
        { weight: 1, arbitrary: fc.record({ kind: fc.constant('plain' as const), count: fc.integer({ min: 1, max: 2 }), delay: fc.integer({ min: 0, max: 3 }) }) },
        { weight: 1, arbitrary: fc.record({ kind: fc.constant('rollback' as const), delay: fc.integer({ min: 0, max: 3 }) }) },
      );
      await fc.assert(
        fc.asyncProperty(fc.array(fc.array(op, { minLength: 1, maxLength: 4 }), { minLength: 2, maxLength: 6 }), async (writers) => {
          const storage = ctx.storage();
          const topic = `prop-streams-${++run}`;
          await storage.createTopics([streamSpec(topic, 2)]);
          const committed: string[] = [];
          let failures = 0;
          await Promise.all(
            writers.map(async (ops, w) => {
              for (const [i, o] of ops.entries()) {
                await new Promise((r) => setTimeout(r, o.delay));
                const tag = `w${w}.${i}`;
                if (o.kind === 'plain') {
                  await storage.append([events(topic, 'k', Array.from({ length: o.count }, (_, j) => `${tag}.${j}`))]);
                  committed.push(...Array.from({ length: o.count }, (_, j) => `${tag}.${j}`));
                  continue;
                }
                const seen = await storage.readStream(topic, 0, bytes('k'));
                if (o.kind === 'rollback') {
                  await storage
                    .transaction(async (tx) => {
                      await tx.appendToStreams([events(topic, 'k', [`${tag}.rb`])], [stream(topic, 'k', seen.version)]);
                      throw new Error('roll back');
                    })
                    .catch(() => {});
                  continue;
                }
                const expected = Math.max(0, seen.version + o.ahead);
                const vals = Array.from({ length: o.count }, (_, j) => `${tag}.${j}`);
                try {
                  const r = await storage.appendToStreams([events(topic, 'k', vals)], [stream(topic, 'k', expected)]);
                  expect(r.streams[0]!.previousVersion).toBe(expected);
                  expect(r.streams[0]!.version).toBe(expected + o.count);
                  committed.push(...vals);
                } catch (error: any) {
                  expect(error?.name).toBe('WrongExpectedVersionError');
                  expect(error.expectedVersion).toBe(expected);
                  expect(error.actualVersion).not.toBe(expected);
                  failures++;
                }
              }
            }),
          );
          const slice = await storage.readStream(topic, 0, bytes('k'));
          const stored = slice.records.map((r) => text(r.value)!);
          expect(slice.version).toBe(stored.length);
          expect([...stored].sort()).toEqual([...committed].sort());
          expect(stored.some((v) => v.endsWith('.rb'))).toBe(false);
          // Each writer's own records stay in its order, and every append's records are contiguous.
          expect(slice.records.map((r) => r.offset)).toEqual(stored.map((_, i) => BigInt(i)));
          for (let i = 0; i < stored.length; i++) {
            const [t, j] = [stored[i]!.slice(0, stored[i]!.lastIndexOf('.')), Number(stored[i]!.slice(stored[i]!.lastIndexOf('.') + 1))];
            if (j > 0) expect(stored[i - 1]).toBe(`${t}.${j - 1}`);
          }
          expect(failures).toBeGreaterThanOrEqual(0);
        }),
        ctx.fcParams(Math.max(1, Math.ceil(ctx.propertyRuns / 2))),
      );
    });
  });
}

function error2message(error: { message?: string } | undefined): string {
  return error?.message ?? '';
}
