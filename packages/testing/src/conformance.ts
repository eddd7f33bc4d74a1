/**
 * The storage conformance suite: what every implementation of the storage port must do, run
 * against `InMemoryLogStorage` and `PgLogStorage` alike (and any store a user writes).
 *
 * ## Design note
 *
 * Each test gets a store of its own from the factory, so tests are independent and may run in
 * any order; a store is assumed empty when the factory hands it over. Tests speak only the port
 * (`LogStorage`), never a store's internals, and branch on error classes by `name`, so a store
 * compiled against another copy of `@annals/core` is judged fairly.
 *
 * The named invariants (docs: ARCHITECTURE.md) are each pinned by at least one test:
 * - dense offsets / ordered visibility: many appends, concurrent appenders, a transaction holding a
 *   partition, rolled-back transactions leaving no gap, and a fast-check model of random
 *   appends and transactions (some rolled back);
 * - atomic appends: one bad partition writes nothing anywhere; a transaction's appends appear
 *   together or not at all;
 * - idempotence and fencing: duplicates, sequence gaps, epochs.
 *
 * Property tests print their seed and path on failure (fast-check's report); rerun one with
 * `FC_SEED=<seed>` in the environment.
 */
import {
  DEFAULT_TOPIC_CONFIG,
  type AppendRecord,
  type GroupSessionEvents,
  type LogStorage,
  type MemberMetadata,
  type PartitionAppend,
  type StoredRecord,
  type TopicConfig,
  type TopicSpec,
} from '@annals/core';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { describeCleanerConformance } from './conformance-cleaner.js';
import { describeStreamConformance } from './conformance-streams.js';
import { describeSchemaRegistryConformance } from './conformance-schema-registry.js';

/** What a conformance factory returns: a new, empty store, and how to dispose of it. */
export interface ConformanceStore {
  /** A store no other test uses. It may be connected or not: the suite calls `connect()`. */
  readonly storage: LogStorage<any>;
  /** Runs after the test (after `storage.disconnect()`): drop its schema, stop its server… */
  readonly cleanup?: () => Promise<void>;
}

/** Options of {@link describeLogStorageConformance}. */
export interface ConformanceOptions {
  /** Runs of each fast-check property. @default 50 */
  readonly propertyRuns?: number;
  /** Run the cleaner tests (retention, compaction); set false for a store without `cleaner`. @default true */
  readonly cleaner?: boolean;
}

/**
 * Declares the storage conformance suite (a vitest `describe` block) for one store. Call it at
 * the top level of a spec file. `factory` is called once per test and must return a fresh, empty
 * store (for Postgres: a new schema); the store's clock must be the real one (defaulted record
 * timestamps are checked against `Date.now()` within 5 minutes).
 *
 * @example
 * ```ts
 * // my-storage.int.spec.ts
 * import { describeLogStorageConformance } from '@annals/testing';
 *
 * describeLogStorageConformance('MyStorage', async () => {
 *   const storage = new MyStorage({ url: process.env.MY_URL });
 *   return { storage, cleanup: () => storage.dropEverything() };
 * });
 * ```
 */
export function describeLogStorageConformance(
  name: string,
  factory: () => Promise<ConformanceStore>,
  options: ConformanceOptions = {},
): void {
  const propertyRuns = options.propertyRuns ?? 50;
  const seed = process.env['FC_SEED'] === undefined ? undefined : Number(process.env['FC_SEED']);
  const fcParams = (numRuns: number) => ({ numRuns, ...(seed === undefined ? {} : { seed }) });

  describe(`LogStorage conformance: ${name}`, () => {
    let storage: LogStorage<any>;
    const cleanups: Array<() => Promise<void>> = [];

    /** A further store for this test (disposed with it). */
    async function createStore(): Promise<LogStorage<any>> {
      const created = await factory();
      cleanups.push(async () => {
        await created.storage.disconnect();
        await created.cleanup?.();
      });
      return created.storage;
    }

    beforeEach(async () => {
      storage = await createStore();
      await storage.connect();
    });

    afterEach(async () => {
      const errors: unknown[] = [];
      for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch((e: unknown) => errors.push(e));
      if (errors.length > 0) throw errors[0];
    });

    const values = async (topic: string, partition: number): Promise<Array<string | null>> =>
      (await readAll(storage, topic, partition)).map((r) => text(r.value));
    const highs = async (topic: string): Promise<bigint[]> => (await storage.fetchWatermarks(topic)).map((w) => w.high);

    // ---- lifecycle ---------------------------------------------------------------------------

    describe('lifecycle', () => {
      it('connect and disconnect are idempotent; operations before connect and after disconnect throw NotConnectedError; data survives a reconnect', async () => {
        const fresh = await createStore();
        await expectRejects(fresh.listTopics(), 'NotConnectedError');
        await fresh.disconnect(); // before connect: a no-op
        await Promise.all([fresh.connect(), fresh.connect()]);
        await fresh.connect();
        await fresh.createTopics([spec('lifecycle')]);
        await fresh.append([{ topic: 'lifecycle', partition: 0, records: [rec('kept')] }]);
        await fresh.disconnect();
        await fresh.disconnect();
        await expectRejects(fresh.listTopics(), 'NotConnectedError');
        await expectRejects(fresh.append([{ topic: 'lifecycle', partition: 0, records: [rec('x')] }]), 'NotConnectedError');
        await fresh.connect();
        expect(await fresh.listTopics()).toEqual(['lifecycle']);
        expect((await readAll(fresh, 'lifecycle', 0)).map((r) => text(r.value))).toEqual(['kept']);
      });
    });

    // ---- topics ------------------------------------------------------------------------------

    describe('topics', () => {
      it('creates, lists and describes topics with their partitions and config', async () => {
        await storage.createTopics([spec('beta', 2), spec('alpha', 3, { 'retention.ms': 1000, 'cleanup.policy': 'compact' })]);
        expect(await storage.listTopics()).toEqual(['alpha', 'beta']);
        const alpha = { name: 'alpha', partitions: 3, config: config({ 'retention.ms': 1000, 'cleanup.policy': 'compact' }) };
        const beta = { name: 'beta', partitions: 2, config: config() };
        expect(await storage.describeTopics()).toEqual([alpha, beta]);
        expect(await storage.describeTopics(['beta'])).toEqual([beta]);
        expect(await storage.describeTopics([])).toEqual([]);
        expect(await storage.fetchWatermarks('alpha')).toEqual([0, 1, 2].map((partition) => ({ partition, low: 0n, high: 0n })));
      });

      it('createTopics is atomic: [new, existing] throws TopicAlreadyExistsError and creates neither', async () => {
        await storage.createTopics([spec('existing')]);
        await expectRejects(storage.createTopics([spec('new-one'), spec('existing', 4)]), 'TopicAlreadyExistsError');
        await expectRejects(storage.createTopics([spec('twice'), spec('twice')]), 'TopicAlreadyExistsError');
        expect(await storage.listTopics()).toEqual(['existing']);
        expect((await storage.describeTopics(['existing']))[0]!.partitions).toBe(1);
      });

      it('operations on an unknown topic throw UnknownTopicOrPartitionError', async () => {
        await storage.createTopics([spec('known')]);
        await expectRejects(storage.describeTopics(['known', 'unknown']), 'UnknownTopicOrPartitionError');
        await expectRejects(storage.fetchWatermarks('unknown'), 'UnknownTopicOrPartitionError');
        await expectRejects(storage.fetchOffsetsByTimestamp('unknown', 0), 'UnknownTopicOrPartitionError');
        await expectRejects(storage.fetch('unknown', 0, 0n, { maxRecords: 10, maxBytes: 1000 }), 'UnknownTopicOrPartitionError');
        await expectRejects(storage.fetch('known', 1, 0n, { maxRecords: 10, maxBytes: 1000 }), 'UnknownTopicOrPartitionError');
        await expectRejects(storage.createPartitions('unknown', 3), 'UnknownTopicOrPartitionError');
        await expectRejects(storage.alterTopicConfig('unknown', (c) => c), 'UnknownTopicOrPartitionError');
      });

      it('deleteTopics deletes topics with their records, all or none; a re-created topic starts empty', async () => {
        await storage.createTopics([spec('doomed', 2), spec('kept')]);
        await storage.append([{ topic: 'doomed', partition: 1, records: [rec('a'), rec('b')] }]);
        await expectRejects(storage.deleteTopics(['doomed', 'missing']), 'UnknownTopicOrPartitionError');
        expect(await storage.listTopics()).toEqual(['doomed', 'kept']);
        expect(await values('doomed', 1)).toEqual(['a', 'b']);

        await storage.deleteTopics(['doomed']);
        expect(await storage.listTopics()).toEqual(['kept']);
        await expectRejects(storage.fetch('doomed', 1, 0n, { maxRecords: 10, maxBytes: 1000 }), 'UnknownTopicOrPartitionError');
        await expectRejects(storage.append([{ topic: 'doomed', partition: 0, records: [rec('x')] }]), 'UnknownTopicOrPartitionError');

        await storage.createTopics([spec('doomed', 2)]);
        expect(await highs('doomed')).toEqual([0n, 0n]);
        const [r] = await storage.append([{ topic: 'doomed', partition: 1, records: [rec('again')] }]);
        expect(r!.baseOffset).toBe(0n);
        expect(await values('doomed', 1)).toEqual(['again']);
      });

      it('deleteRecords moves log start offsets forward (never back, never past the end; -1 = the end) and removes the records below', async () => {
        await storage.createTopics([spec('trim', 3)]);
        await storage.append([
          { topic: 'trim', partition: 0, records: [1000, 2000, 3000, 4000, 5000].map((t) => rec(`r${t}`, { timestamp: t })) },
          { topic: 'trim', partition: 1, records: [rec('a'), rec('b')] },
        ]);
        const moved = await storage.deleteRecords('trim', [
          { partition: 2, offset: 10n },
          { partition: 0, offset: 3n },
          { partition: 1, offset: -1n },
        ]);
        expect(moved).toEqual([
          { partition: 0, lowWatermark: 3n },
          { partition: 1, lowWatermark: 2n },
          { partition: 2, lowWatermark: 0n },
        ]);
        expect(await storage.fetchWatermarks('trim')).toEqual([
          { partition: 0, low: 3n, high: 5n },
          { partition: 1, low: 2n, high: 2n },
          { partition: 2, low: 0n, high: 0n },
        ]);
        const p0 = await storage.fetch('trim', 0, 0n, { maxRecords: 100, maxBytes: 1 << 20 });
        expect(p0.records.map((r) => [r.offset, text(r.value)])).toEqual([
          [3n, 'r4000'],
          [4n, 'r5000'],
        ]);
        expect(p0.logStartOffset).toBe(3n);
        const p1 = await storage.fetch('trim', 1, 0n, { maxRecords: 100, maxBytes: 1 << 20 });
        expect([p1.records, p1.logStartOffset, p1.highWatermark]).toEqual([[], 2n, 2n]);
        expect((await storage.fetchOffsetsByTimestamp('trim', 0)).map((x) => x.offset)).toEqual([3n, 2n, 0n]);
        expect(await storage.deleteRecords('trim', [{ partition: 0, offset: 1n }])).toEqual([{ partition: 0, lowWatermark: 3n }]);
        const [next] = await storage.append([{ topic: 'trim', partition: 0, records: [rec('next')] }]);
        expect(next!.baseOffset).toBe(5n);
        expect(await values('trim', 0)).toEqual(['r4000', 'r5000', 'next']);
      });

      it('deleteRecords with an unknown topic or partition throws UnknownTopicOrPartitionError and deletes nothing', async () => {
        await storage.createTopics([spec('trim-safe', 2)]);
        await storage.append([{ topic: 'trim-safe', partition: 0, records: [rec('a'), rec('b')] }]);
        await expectRejects(storage.deleteRecords('nowhere', [{ partition: 0, offset: 1n }]), 'UnknownTopicOrPartitionError');
        await expectRejects(
          storage.deleteRecords('trim-safe', [
            { partition: 0, offset: 2n },
            { partition: 5, offset: 1n },
          ]),
          'UnknownTopicOrPartitionError',
        );
        expect(await storage.fetchWatermarks('trim-safe')).toEqual([
          { partition: 0, low: 0n, high: 2n },
          { partition: 1, low: 0n, high: 0n },
        ]);
        expect(await values('trim-safe', 0)).toEqual(['a', 'b']);
      });

      it('createPartitions only increases the count (InvalidPartitionsError otherwise) and keeps existing records', async () => {
        await storage.createTopics([spec('grow', 2)]);
        await storage.append([{ topic: 'grow', partition: 1, records: [rec('old')] }]);
        await storage.createPartitions('grow', 4);
        expect((await storage.describeTopics(['grow']))[0]!.partitions).toBe(4);
        expect(await highs('grow')).toEqual([0n, 1n, 0n, 0n]);
        const [r] = await storage.append([{ topic: 'grow', partition: 3, records: [rec('new')] }]);
        expect(r!.baseOffset).toBe(0n);
        expect(await values('grow', 1)).toEqual(['old']);
        expect(await values('grow', 3)).toEqual(['new']);

        await expectRejects(storage.createPartitions('grow', 4), 'InvalidPartitionsError');
        await expectRejects(storage.createPartitions('grow', 2), 'InvalidPartitionsError');
        expect((await storage.describeTopics(['grow']))[0]!.partitions).toBe(4);
      });

      it('alterTopicConfig passes the current config to update and stores what it returns', async () => {
        await storage.createTopics([spec('configured', 1, { 'retention.ms': 5000 })]);
        const seen: TopicConfig[] = [];
        const next = await storage.alterTopicConfig('configured', (current) => {
          seen.push(current);
          return { ...current, 'cleanup.policy': 'compact,delete', 'min.compaction.lag.ms': 250 };
        });
        expect(seen).toEqual([config({ 'retention.ms': 5000 })]);
        const expected = config({ 'retention.ms': 5000, 'cleanup.policy': 'compact,delete', 'min.compaction.lag.ms': 250 });
        expect(next).toEqual(expected);
        expect((await storage.describeTopics(['configured']))[0]!.config).toEqual(expected);
        const again = await storage.alterTopicConfig('configured', (current) => ({ ...current, 'retention.ms': -1 }));
        expect(again).toEqual({ ...expected, 'retention.ms': -1 });
        expect((await storage.describeTopics(['configured']))[0]!.config).toEqual({ ...expected, 'retention.ms': -1 });
      });
    });

    // ---- appends -----------------------------------------------------------------------------

    describe('appends', () => {
      it('assigns dense offsets, in order, per partition, across many appends', async () => {
        await storage.createTopics([spec('dense', 3)]);
        const model: string[][] = [[], [], []];
        for (let i = 0; i < 60; i++) {
          const partitions = i % 7 === 0 ? [0, 2] : [i % 3];
          const appends = partitions.map((p) => ({
            topic: 'dense',
            partition: p,
            records: Array.from({ length: 1 + (i % 4) }, (_, j) => rec(`${i}.${j}`)),
          }));
          const results = await storage.append(appends);
          results.forEach((r, k) => {
            const p = partitions[k]!;
            expect(r).toEqual({ topic: 'dense', partition: p, baseOffset: BigInt(model[p]!.length), duplicate: false });
            model[p]!.push(...appends[k]!.records.map((x) => text(x.value)!));
          });
        }
        for (const p of [0, 1, 2]) {
          const records = await readAll(storage, 'dense', p);
          expect(records.map((r) => r.offset)).toEqual(model[p]!.map((_, i) => BigInt(i)));
          expect(records.map((r) => text(r.value))).toEqual(model[p]);
          expect(records.every((r) => r.topic === 'dense' && r.partition === p)).toBe(true);
        }
        expect(await highs('dense')).toEqual(model.map((m) => BigInt(m.length)));
      });

      it('an append to several topics and partitions is atomic: one unknown partition or topic writes nothing anywhere', async () => {
        await storage.createTopics([spec('left', 2), spec('right', 2)]);
        await storage.append([{ topic: 'left', partition: 0, records: [rec('l0')] }]);
        const bad: PartitionAppend[][] = [
          [
            { topic: 'left', partition: 0, records: [rec('x')] },
            { topic: 'right', partition: 1, records: [rec('y')] },
            { topic: 'left', partition: 7, records: [rec('z')] },
          ],
          [
            { topic: 'right', partition: 0, records: [rec('x')] },
            { topic: 'nowhere', partition: 0, records: [rec('y')] },
          ],
          [{ topic: 'left', partition: -1, records: [rec('x')] }],
        ];
        for (const appends of bad) await expectRejects(storage.append(appends), 'UnknownTopicOrPartitionError');
        expect(await highs('left')).toEqual([1n, 0n]);
        expect(await highs('right')).toEqual([0n, 0n]);
        const results = await storage.append([
          { topic: 'right', partition: 1, records: [rec('r1')] },
          { topic: 'left', partition: 0, records: [rec('l1')] },
        ]);
        expect(results.map((r) => [r.topic, r.partition, r.baseOffset])).toEqual([
          ['right', 1, 0n],
          ['left', 0, 1n],
        ]);
        expect(await values('left', 0)).toEqual(['l0', 'l1']);
      });

      it('an append that lists a partition twice throws InvalidOptionsError and writes nothing', async () => {
        await storage.createTopics([spec('twice', 2)]);
        await expectRejects(
          storage.append([
            { topic: 'twice', partition: 1, records: [rec('a')] },
            { topic: 'twice', partition: 0, records: [rec('b')] },
            { topic: 'twice', partition: 1, records: [rec('c')] },
          ]),
          'InvalidOptionsError',
        );
        expect(await highs('twice')).toEqual([0n, 0n]);
      });

      it('an empty append returns no results', async () => {
        expect(await storage.append([])).toEqual([]);
      });

      it('10 concurrent appenders × 50 appends to one partition leave dense offsets 0..499, each appender in its own order', async () => {
        await storage.createTopics([spec('contended')]);
        await Promise.all(
          Array.from({ length: 10 }, async (_, w) => {
            let last = -1n;
            for (let i = 0; i < 50; i++) {
              const [r] = await storage.append([{ topic: 'contended', partition: 0, records: [rec(`w${w}:${i}`)] }]);
              expect(r!.baseOffset).toBeGreaterThan(last);
              last = r!.baseOffset;
            }
          }),
        );
        const records = await readAll(storage, 'contended', 0);
        expect(records.map((r) => r.offset)).toEqual(Array.from({ length: 500 }, (_, i) => BigInt(i)));
        for (let w = 0; w < 10; w++) {
          const mine = records.map((r) => text(r.value)!).filter((v) => v.startsWith(`w${w}:`));
          expect(mine).toEqual(Array.from({ length: 50 }, (_, i) => `w${w}:${i}`));
        }
      });
    });

    // ---- transactions ------------------------------------------------------------------------

    describe('transactions', () => {
      it('a committed transaction makes all its appends visible together, with the offsets tx.append returned', async () => {
        await storage.createTopics([spec('tx-a', 2), spec('tx-b')]);
        await storage.append([{ topic: 'tx-a', partition: 0, records: [rec('before')] }]);
        const result = await storage.transaction(async (tx) => {
          const first = await tx.append([
            { topic: 'tx-a', partition: 0, records: [rec('a0'), rec('a1')] },
            { topic: 'tx-b', partition: 0, records: [rec('b0')] },
          ]);
          expect(first.map((r) => r.baseOffset)).toEqual([1n, 0n]);
          expect(await highs('tx-a')).toEqual([1n, 0n]);
          expect(await values('tx-a', 0)).toEqual(['before']);
          expect(await highs('tx-b')).toEqual([0n]);
          const second = await tx.append([{ topic: 'tx-a', partition: 0, records: [rec('a2')] }, { topic: 'tx-a', partition: 1, records: [rec('c0')] }]);
          expect(second.map((r) => r.baseOffset)).toEqual([3n, 0n]);
          expect(await tx.append([])).toEqual([]);
          expect(await highs('tx-a')).toEqual([1n, 0n]);
          return 'done';
        });
        expect(result).toBe('done');
        expect(await values('tx-a', 0)).toEqual(['before', 'a0', 'a1', 'a2']);
        expect(await values('tx-a', 1)).toEqual(['c0']);
        expect(await values('tx-b', 0)).toEqual(['b0']);
      });

      it('a throwing transaction leaves nothing visible and takes no offsets: the next append starts where it started', async () => {
        await storage.createTopics([spec('rollback', 2)]);
        await storage.append([{ topic: 'rollback', partition: 0, records: [rec('before')] }]);
        const boom = new Error('boom');
        const failed = storage.transaction(async (tx) => {
          const [r] = await tx.append([
            { topic: 'rollback', partition: 0, records: [rec('lost-1'), rec('lost-2')] },
            { topic: 'rollback', partition: 1, records: [rec('lost-3')] },
          ]);
          expect(r!.baseOffset).toBe(1n);
          throw boom;
        });
        await expect(failed).rejects.toBe(boom);
        expect(await highs('rollback')).toEqual([1n, 0n]);
        const results = await storage.append([
          { topic: 'rollback', partition: 0, records: [rec('after')] },
          { topic: 'rollback', partition: 1, records: [rec('after-1')] },
        ]);
        expect(results.map((r) => r.baseOffset)).toEqual([1n, 0n]);
        expect(await values('rollback', 0)).toEqual(['before', 'after']);
        expect(await values('rollback', 1)).toEqual(['after-1']);
      });

      it('a failed tx.append (unknown partition) writes nothing of that call', async () => {
        await storage.createTopics([spec('tx-bad')]);
        await expectRejects(
          storage.transaction(async (tx) => {
            await tx.append([
              { topic: 'tx-bad', partition: 0, records: [rec('x')] },
              { topic: 'tx-bad', partition: 3, records: [rec('y')] },
            ]);
          }),
          'UnknownTopicOrPartitionError',
        );
        expect(await highs('tx-bad')).toEqual([0n]);
      });

      for (const outcome of ['commits', 'rolls back'] as const) {
        it(`an append waits for a transaction holding its partition and takes the offsets after it (the transaction ${outcome}); other partitions do not wait`, async () => {
          await storage.createTopics([spec('held', 2)]);
          const appended = deferred<void>();
          const gate = deferred<void>();
          const held = storage.transaction(async (tx) => {
            await tx.append([{ topic: 'held', partition: 0, records: [rec('tx-1'), rec('tx-2')] }]);
            appended.resolve();
            await gate.promise;
            if (outcome === 'rolls back') throw new Error('roll back');
          });
          held.catch(() => {});
          await appended.promise;
          let settled = false;
          const waiting = storage.append([{ topic: 'held', partition: 0, records: [rec('plain')] }]).finally(() => {
            settled = true;
          });
          const [other] = await storage.append([{ topic: 'held', partition: 1, records: [rec('other')] }]);
          expect(other!.baseOffset).toBe(0n);
          await sleep(50);
          expect(settled).toBe(false);
          expect(await highs('held')).toEqual([0n, 1n]);
          gate.resolve();
          if (outcome === 'commits') await held;
          else await expect(held).rejects.toThrow('roll back');
          const [r] = await waiting;
          expect(r!.baseOffset).toBe(outcome === 'commits' ? 2n : 0n);
          expect(await values('held', 0)).toEqual(outcome === 'commits' ? ['tx-1', 'tx-2', 'plain'] : ['plain']);
        });
      }

      it('crossed transactions (a deadlock) end with one rolled back by a retriable ConcurrentTransactionsError and the other committed', async () => {
        await storage.createTopics([spec('crossed', 2)]);
        const aHolds = deferred<void>();
        const bHolds = deferred<void>();
        const a = storage.transaction(async (tx) => {
          await tx.append([{ topic: 'crossed', partition: 0, records: [rec('a0')] }]);
          aHolds.resolve();
          await bHolds.promise;
          await tx.append([{ topic: 'crossed', partition: 1, records: [rec('a1')] }]);
          return 'a';
        });
        const b = storage.transaction(async (tx) => {
          await aHolds.promise;
          await tx.append([{ topic: 'crossed', partition: 1, records: [rec('b1')] }]);
          bHolds.resolve();
          await sleep(50); // let A queue for partition 1 first
          await tx.append([{ topic: 'crossed', partition: 0, records: [rec('b0')] }]);
          return 'b';
        });
        const [ra, rb] = await Promise.allSettled([a, b]);
        const outcomes = [ra!.status, rb!.status].sort();
        expect(outcomes).toEqual(['fulfilled', 'rejected']);
        const loser = (ra!.status === 'rejected' ? ra : rb) as PromiseRejectedResult;
        expect(loser.reason?.name).toBe('ConcurrentTransactionsError');
        expect(loser.reason?.retriable).toBe(true);
        const winner = ra!.status === 'fulfilled' ? 'a' : 'b';
        expect(await values('crossed', 0)).toEqual([`${winner}0`]);
        expect(await values('crossed', 1)).toEqual([`${winner}1`]);
      });

      it('concurrent transactions, rollbacks and appends on shared partitions: dense offsets, each transaction contiguous, rolled-back records never visible', async () => {
        await storage.createTopics([spec('mixed', 2)]);
        const committed = new Set<string>();
        const transactional = Array.from({ length: 5 }, async (_, w) => {
          for (let i = 0; i < 8; i++) {
            const id = `t${w}.${i}`;
            const abort = (w + i) % 3 === 0;
            const run = storage.transaction(async (tx) => {
              await tx.append([{ topic: 'mixed', partition: 0, records: [rec(`${id}:0`), rec(`${id}:1`)] }]);
              await sleep((w + i) % 3);
              await tx.append([
                { topic: 'mixed', partition: 1, records: [rec(`${id}:x`)] },
                { topic: 'mixed', partition: 0, records: [rec(`${id}:2`)] },
              ]);
              if (abort) throw new Error('abort');
            });
            if (abort) await expect(run).rejects.toThrow('abort');
            else {
              await run;
              committed.add(id);
            }
          }
        });
        const plain = Array.from({ length: 5 }, async (_, w) => {
          for (let i = 0; i < 10; i++) await storage.append([{ topic: 'mixed', partition: i % 2, records: [rec(`p${w}.${i}`)] }]);
        });
        await Promise.all([...transactional, ...plain]);
        const p0 = await readAll(storage, 'mixed', 0);
        expect(p0.map((r) => r.offset)).toEqual(p0.map((_, i) => BigInt(i)));
        const v0 = p0.map((r) => text(r.value)!);
        for (const id of committed) {
          const at = v0.indexOf(`${id}:0`);
          expect(v0.slice(at, at + 3)).toEqual([`${id}:0`, `${id}:1`, `${id}:2`]);
        }
        const v1 = await values('mixed', 1);
        const seenTx = new Set([...v0, ...v1].filter((v) => v!.startsWith('t')).map((v) => v!.split(':')[0]!));
        expect([...seenTx].sort()).toEqual([...committed].sort());
        expect(v0.length + v1.length).toBe(committed.size * 4 + 50);
      });

      it('a transaction open longer than timeoutMs fails with TransactionTimeoutError, writes nothing and frees its partitions', async () => {
        await storage.createTopics([spec('slow')]);
        await expectRejects(
          storage.transaction(
            async (tx) => {
              await tx.append([{ topic: 'slow', partition: 0, records: [rec('late')] }]);
              await sleep(300);
            },
            { timeoutMs: 100 },
          ),
          'TransactionTimeoutError',
        );
        const [r] = await storage.append([{ topic: 'slow', partition: 0, records: [rec('next')] }]);
        expect(r!.baseOffset).toBe(0n);
        expect(await values('slow', 0)).toEqual(['next']);
      });
    });

    // ---- fetch and records -------------------------------------------------------------------

    describe('fetch and records', () => {
      it('fetch honours maxRecords and maxBytes (always at least one record), and past the end returns nothing with the high watermark', async () => {
        await storage.createTopics([spec('limits')]);
        await storage.append([
          { topic: 'limits', partition: 0, records: Array.from({ length: 10 }, (_, i) => rec(String(i).padStart(100, '.'))) },
        ]);
        const offsets = async (offset: bigint, maxRecords: number, maxBytes: number) => {
          const r = await storage.fetch('limits', 0, offset, { maxRecords, maxBytes });
          expect(r.highWatermark).toBe(10n);
          expect(r.logStartOffset).toBe(0n);
          return r.records.map((x) => Number(x.offset));
        };
        expect(await offsets(0n, 3, 1 << 20)).toEqual([0, 1, 2]);
        expect(await offsets(4n, 3, 1 << 20)).toEqual([4, 5, 6]);
        expect(await offsets(8n, 100, 1 << 20)).toEqual([8, 9]);
        expect(await offsets(0n, 100, 250)).toEqual([0, 1]);
        expect(await offsets(0n, 100, 200)).toEqual([0, 1]);
        expect(await offsets(5n, 100, 1)).toEqual([5]);
        expect(await offsets(0n, 100, 1 << 20)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
        expect(await offsets(10n, 100, 1 << 20)).toEqual([]);
        expect(await offsets(1000n, 100, 1 << 20)).toEqual([]);
      });

      it('keys, values and headers round-trip byte-exact; a null key and value (tombstone) stay null; empty bytes stay empty', async () => {
        await storage.createTopics([spec('bytes')]);
        const all = Uint8Array.from({ length: 256 }, (_, i) => i);
        const records: AppendRecord[] = [
          { key: all, value: all.slice().reverse(), headers: { 'event-type': bytes('order.created'), bin: Uint8Array.of(0, 255, 0, 128), empty: new Uint8Array(0) }, timestamp: null },
          { key: bytes('tombstone-key'), value: null, headers: null, timestamp: null },
          { key: null, value: null, headers: {}, timestamp: null },
          { key: new Uint8Array(0), value: new Uint8Array(0), headers: null, timestamp: null },
          { key: null, value: bytes('ünïcødé ✓'), headers: { 'h-ü': bytes('✓') }, timestamp: null },
        ];
        await storage.append([{ topic: 'bytes', partition: 0, records }]);
        const stored = await readAll(storage, 'bytes', 0);
        expect(stored.map(shape)).toEqual(
          records.map((r) => ({
            key: r.key === null ? null : [...r.key],
            value: r.value === null ? null : [...r.value],
            headers: Object.fromEntries(Object.entries(r.headers ?? {}).map(([k, v]) => [k, [...v]])),
          })),
        );
        for (const r of stored) {
          if (r.key !== null) expect(r.key).toBeInstanceOf(Uint8Array);
          if (r.value !== null) expect(r.value).toBeInstanceOf(Uint8Array);
        }
      });

      it('the log keeps its own bytes: mutating a buffer after append, or a fetched record, changes nothing', async () => {
        await storage.createTopics([spec('copies')]);
        const key = bytes('key');
        const value = bytes('value');
        const header = bytes('header');
        await storage.append([{ topic: 'copies', partition: 0, records: [{ key, value, headers: { h: header }, timestamp: null }] }]);
        key.fill(0);
        value.fill(0);
        header.fill(0);
        const [first] = await readAll(storage, 'copies', 0);
        expect(shape(first!)).toEqual({ key: [...bytes('key')], value: [...bytes('value')], headers: { h: [...bytes('header')] } });
        first!.key!.fill(1);
        first!.value!.fill(1);
        first!.headers['h']!.fill(1);
        const [again] = await readAll(storage, 'copies', 0);
        expect(shape(again!)).toEqual({ key: [...bytes('key')], value: [...bytes('value')], headers: { h: [...bytes('header')] } });
      });

      it('timestamps: a given timestamp is kept to the millisecond; null takes the store clock', async () => {
        await storage.createTopics([spec('times')]);
        const before = Date.now();
        await storage.append([
          {
            topic: 'times',
            partition: 0,
            records: [rec('given', { timestamp: 1_700_000_000_123 }), rec('now'), rec('epoch', { timestamp: 0 })],
          },
        ]);
        const after = Date.now();
        const [given, now, epoch] = await readAll(storage, 'times', 0);
        expect(given!.timestamp).toBe(1_700_000_000_123);
        expect(epoch!.timestamp).toBe(0);
        expect(Number.isSafeInteger(now!.timestamp)).toBe(true);
        const skew = 5 * 60_000;
        expect(now!.timestamp).toBeGreaterThanOrEqual(before - skew);
        expect(now!.timestamp).toBeLessThanOrEqual(after + skew);
      });

      it('fetchOffsetsByTimestamp gives, per partition, the first offset with a timestamp ≥ t, else the high watermark', async () => {
        await storage.createTopics([spec('by-time', 3)]);
        await storage.append([
          { topic: 'by-time', partition: 0, records: [1000, 2000, 3000].map((t) => rec(`t${t}`, { timestamp: t })) },
          { topic: 'by-time', partition: 2, records: [1000, 3000, 2000].map((t) => rec(`t${t}`, { timestamp: t })) },
        ]);
        const at = async (t: number) => (await storage.fetchOffsetsByTimestamp('by-time', t)).map((x) => [x.partition, x.offset]);
        expect(await at(500)).toEqual([
          [0, 0n],
          [1, 0n],
          [2, 0n],
        ]);
        expect(await at(1000)).toEqual([
          [0, 0n],
          [1, 0n],
          [2, 0n],
        ]);
        expect(await at(1500)).toEqual([
          [0, 1n],
          [1, 0n],
          [2, 1n],
        ]);
        expect(await at(2500)).toEqual([
          [0, 2n],
          [1, 0n],
          [2, 1n],
        ]);
        expect(await at(3001)).toEqual([
          [0, 3n],
          [1, 0n],
          [2, 3n],
        ]);
      });
    });

    // ---- producers ---------------------------------------------------------------------------

    describe('idempotent and transactional producers', () => {
      it('initProducer gives increasing producer ids; a transactional id keeps its producer id and bumps its epoch', async () => {
        const a = await storage.initProducer();
        const b = await storage.initProducer();
        expect(a.epoch).toBe(0);
        expect(b.producerId).toBeGreaterThan(a.producerId);
        const t1 = await storage.initProducer('tx-one');
        const t1again = await storage.initProducer('tx-one');
        const t2 = await storage.initProducer('tx-two');
        expect(t1again.producerId).toBe(t1.producerId);
        expect(t1again.epoch).toBe(t1.epoch + 1);
        expect(t2.producerId).not.toBe(t1.producerId);
        expect(t1.producerId).toBeGreaterThan(b.producerId);
      });

      it('a retried batch (same base sequence) is a duplicate: original base offset, nothing written', async () => {
        await storage.createTopics([spec('idem')]);
        await storage.append([{ topic: 'idem', partition: 0, records: [rec('other')] }]);
        const { producerId } = await storage.initProducer();
        const batch = (seq: number, ...vs: string[]) => [{ topic: 'idem', partition: 0, baseSequence: seq, records: vs.map((v) => rec(v)) }];
        expect(await storage.append(batch(0, 'a', 'b', 'c'), { producerId })).toEqual([{ topic: 'idem', partition: 0, baseOffset: 1n, duplicate: false }]);
        expect(await storage.append(batch(0, 'a', 'b', 'c'), { producerId })).toEqual([{ topic: 'idem', partition: 0, baseOffset: 1n, duplicate: true }]);
        expect(await storage.append(batch(3, 'd'), { producerId })).toEqual([{ topic: 'idem', partition: 0, baseOffset: 4n, duplicate: false }]);
        expect(await storage.append(batch(3, 'd'), { producerId })).toEqual([{ topic: 'idem', partition: 0, baseOffset: 4n, duplicate: true }]);
        expect(await values('idem', 0)).toEqual(['other', 'a', 'b', 'c', 'd']);
      });

      it('a sequence gap or a step back throws OutOfOrderSequenceError and writes nothing; a first batch must start at 0; a missing baseSequence is InvalidOptionsError', async () => {
        await storage.createTopics([spec('gaps', 2)]);
        const { producerId } = await storage.initProducer();
        const batch = (seq: number | undefined, n = 1, partition = 0): PartitionAppend[] => [
          { topic: 'gaps', partition, ...(seq === undefined ? {} : { baseSequence: seq }), records: Array.from({ length: n }, (_, i) => rec(`s${seq}.${i}`)) },
        ];
        await expectRejects(storage.append(batch(5), { producerId }), 'OutOfOrderSequenceError');
        await storage.append(batch(0, 2), { producerId });
        await storage.append(batch(2, 2), { producerId });
        await expectRejects(storage.append(batch(5), { producerId }), 'OutOfOrderSequenceError');
        await expectRejects(storage.append(batch(0), { producerId }), 'OutOfOrderSequenceError');
        await expectRejects(storage.append(batch(3), { producerId }), 'OutOfOrderSequenceError');
        await expectRejects(storage.append(batch(undefined), { producerId }), 'InvalidOptionsError');
        // Atomic with the other partitions of the append: a good partition is not written either.
        await expectRejects(storage.append([...batch(0, 1, 1), ...batch(9)], { producerId }), 'OutOfOrderSequenceError');
        expect(await highs('gaps')).toEqual([4n, 0n]);
        await storage.append(batch(4), { producerId });
        expect(await values('gaps', 0)).toEqual(['s0.0', 's0.1', 's2.0', 's2.1', 's4.0']);
      });

      it('sequences are per producer and per partition; one append may be a duplicate on one partition and new on another', async () => {
        await storage.createTopics([spec('seqs', 2)]);
        const p1 = (await storage.initProducer()).producerId;
        const p2 = (await storage.initProducer()).producerId;
        await storage.append([{ topic: 'seqs', partition: 0, baseSequence: 0, records: [rec('p1-a')] }], { producerId: p1 });
        await storage.append([{ topic: 'seqs', partition: 0, baseSequence: 0, records: [rec('p2-a')] }], { producerId: p2 });
        const results = await storage.append(
          [
            { topic: 'seqs', partition: 0, baseSequence: 0, records: [rec('p1-a')] },
            { topic: 'seqs', partition: 1, baseSequence: 0, records: [rec('p1-b')] },
          ],
          { producerId: p1 },
        );
        expect(results).toEqual([
          { topic: 'seqs', partition: 0, baseOffset: 0n, duplicate: true },
          { topic: 'seqs', partition: 1, baseOffset: 0n, duplicate: false },
        ]);
        expect(await values('seqs', 0)).toEqual(['p1-a', 'p2-a']);
        expect(await values('seqs', 1)).toEqual(['p1-b']);
      });

      it('an idempotent append in a rolled-back transaction consumes no sequence number', async () => {
        await storage.createTopics([spec('idem-tx')]);
        const { producerId } = await storage.initProducer();
        const append = (seq: number, v: string) => [{ topic: 'idem-tx', partition: 0, baseSequence: seq, records: [rec(v)] }];
        await expect(
          storage.transaction(async (tx) => {
            await tx.append(append(0, 'lost'), { producerId });
            // Within the transaction its own sequence state is visible.
            expect(await tx.append(append(0, 'lost'), { producerId })).toEqual([{ topic: 'idem-tx', partition: 0, baseOffset: 0n, duplicate: true }]);
            throw new Error('abort');
          }),
        ).rejects.toThrow('abort');
        expect(await storage.append(append(0, 'kept'), { producerId })).toEqual([{ topic: 'idem-tx', partition: 0, baseOffset: 0n, duplicate: false }]);
        expect(await values('idem-tx', 0)).toEqual(['kept']);
      });

      it('a newer initProducer with the same transactionalId fences the older epoch: its appends throw ProducerFencedError and write nothing', async () => {
        await storage.createTopics([spec('fenced')]);
        const old = await storage.initProducer('payments');
        const fenceOf = (id: { producerId: bigint; epoch: number }) => ({ transactionalId: 'payments', producerId: id.producerId, epoch: id.epoch });
        const append = (v: string) => [{ topic: 'fenced', partition: 0, records: [rec(v)] }];
        await storage.append(append('old-1'), { fence: fenceOf(old) });
        const current = await storage.initProducer('payments');
        await expectRejects(storage.append(append('zombie-1'), { fence: fenceOf(old) }), 'ProducerFencedError');
        await expectRejects(
          storage.transaction(async (tx) => {
            await tx.append(append('zombie-2'), { fence: fenceOf(old) });
          }),
          'ProducerFencedError',
        );
        await expectRejects(
          storage.append([{ topic: 'fenced', partition: 0, baseSequence: 0, records: [rec('zombie-3')] }], { producerId: old.producerId, fence: fenceOf(old) }),
          'ProducerFencedError',
        );
        await expectRejects(storage.append(append('stranger'), { fence: { transactionalId: 'never-registered', producerId: old.producerId, epoch: 0 } }), 'ProducerFencedError');
        await storage.append(append('new-1'), { fence: fenceOf(current) });
        expect(await values('fenced', 0)).toEqual(['old-1', 'new-1']);
      });
    });

    // ---- watch -------------------------------------------------------------------------------

    describe('watch', () => {
      it('calls the listener after a commit to a watched topic, and not for unwatched topics', async () => {
        await storage.createTopics([spec('watched', 2), spec('unwatched')]);
        const calls: Array<[string, number]> = [];
        const unwatch = await storage.watch(['watched'], (topic, partition) => calls.push([topic, partition]));
        await storage.append([{ topic: 'unwatched', partition: 0, records: [rec('x')] }]);
        await storage.append([{ topic: 'watched', partition: 1, records: [rec('y')] }]);
        await eventually(() => calls.some(([t, p]) => t === 'watched' && p === 1), 'a call for watched[1]');
        expect(calls.filter(([t]) => t !== 'watched')).toEqual([]);
        await unwatch();
      });

      it('a transaction wakes watchers only when it commits; a rolled-back one never does', async () => {
        await storage.createTopics([spec('tx-watched', 2)]);
        const calls: Array<[string, number]> = [];
        await storage.watch(['tx-watched'], (topic, partition) => calls.push([topic, partition]));
        const appended = deferred<void>();
        const gate = deferred<void>();
        const run = storage.transaction(async (tx) => {
          await tx.append([{ topic: 'tx-watched', partition: 0, records: [rec('a')] }]);
          appended.resolve();
          await gate.promise;
        });
        await appended.promise;
        await sleep(50);
        expect(calls.filter(([, p]) => p === 0)).toEqual([]);
        gate.resolve();
        await run;
        await eventually(() => calls.some(([, p]) => p === 0), 'a call for tx-watched[0] after commit');

        await expect(
          storage.transaction(async (tx) => {
            await tx.append([{ topic: 'tx-watched', partition: 1, records: [rec('lost')] }]);
            throw new Error('abort');
          }),
        ).rejects.toThrow('abort');
        await storage.append([{ topic: 'tx-watched', partition: 0, records: [rec('b')] }]);
        await eventually(() => calls.filter(([, p]) => p === 0).length >= 2, 'a second call for tx-watched[0]');
        expect(calls.filter(([, p]) => p === 1)).toEqual([]);
      });

      it('the function watch returns stops the calls', async () => {
        await storage.createTopics([spec('unwatch')]);
        const stopped: unknown[] = [];
        const kept: unknown[] = [];
        const unwatch = await storage.watch(['unwatch'], (...args) => stopped.push(args));
        await storage.watch(['unwatch'], (...args) => kept.push(args));
        await unwatch();
        await storage.append([{ topic: 'unwatch', partition: 0, records: [rec('x')] }]);
        await eventually(() => kept.length > 0, 'a call to the remaining watcher');
        expect(stopped).toEqual([]);
      });
    });

    // ---- deferred transactions ---------------------------------------------------------------

    describe('deferred transactions', () => {
      it('begins on first use; commit and rollback end it (commit twice: InvalidTransactionStateError; rollback: idempotent)', async () => {
        await storage.createTopics([spec('deferred')]);
        const unused = storage.deferredTransaction();
        expect(unused.begun).toBe(false);
        await unused.commit();
        await expectRejects(unused.commit(), 'InvalidTransactionStateError');
        await unused.rollback();

        const tx = storage.deferredTransaction();
        expect(await tx.append([])).toEqual([]);
        const [r] = await tx.append([{ topic: 'deferred', partition: 0, records: [rec('kept')] }]);
        expect(tx.begun).toBe(true);
        expect(r!.baseOffset).toBe(0n);
        expect(await highs('deferred')).toEqual([0n]);
        await tx.commit();
        expect(await values('deferred', 0)).toEqual(['kept']);

        const dropped = storage.deferredTransaction();
        await dropped.append([{ topic: 'deferred', partition: 0, records: [rec('dropped')] }]);
        await dropped.rollback();
        await dropped.rollback();
        await expectRejects(dropped.append([{ topic: 'deferred', partition: 0, records: [rec('late')] }]), 'InvalidTransactionStateError');
        const [next] = await storage.append([{ topic: 'deferred', partition: 0, records: [rec('next')] }]);
        expect(next!.baseOffset).toBe(1n);
        expect(await values('deferred', 0)).toEqual(['kept', 'next']);
      });

      it('a savepoint rolls back only its own appends, takes no offsets, and frees the partitions it locked', async () => {
        await storage.createTopics([spec('savepoints', 2)]);
        const tx = storage.deferredTransaction();
        try {
          await tx.append([{ topic: 'savepoints', partition: 0, records: [rec('before')] }]);
          await expect(
            tx.savepoint(async () => {
              await tx.append([
                { topic: 'savepoints', partition: 0, records: [rec('dropped-0')] },
                { topic: 'savepoints', partition: 1, records: [rec('dropped-1')] },
              ]);
              throw new Error('one record failed');
            }),
          ).rejects.toThrow('one record failed');
          // Partition 1 was locked only inside the savepoint: an append to it does not wait for tx.
          const [free] = await withTimeout(storage.append([{ topic: 'savepoints', partition: 1, records: [rec('free')] }]), 5000, 'an append to a partition freed by the savepoint');
          expect(free!.baseOffset).toBe(0n);
          expect(
            await tx.savepoint(async () => {
              const [r] = await tx.append([{ topic: 'savepoints', partition: 0, records: [rec('after')] }]);
              expect(r!.baseOffset).toBe(1n);
              return 'value';
            }),
          ).toBe('value');
          await tx.commit();
        } finally {
          await tx.rollback();
        }
        expect(await values('savepoints', 0)).toEqual(['before', 'after']);
        expect(await values('savepoints', 1)).toEqual(['free']);
      });
    });

    // ---- consumer groups ---------------------------------------------------------------------

    describe('consumer groups', () => {
      const quiet = (over: Partial<GroupSessionEvents> = {}): GroupSessionEvents => ({ onGroupChange() {}, onAppend() {}, onLost() {}, ...over });
      const member = (clientId: string, topics: string[], sessionTimeoutMs = 30_000): MemberMetadata => ({ clientId, clientHost: 'conformance', topics, sessionTimeoutMs });
      const committed = async (groupId: string) =>
        (await storage.fetchCommittedOffsets(groupId)).map((c) => [c.topic, c.partition, c.offset, c.metadata] as const);

      it('commitOffsets and fetchCommittedOffsets round-trip, sorted by topic and partition; a later commit replaces an earlier one', async () => {
        const before = Date.now();
        await storage.commitOffsets('offsets', [
          { topic: 'zeta', partition: 0, offset: 5n, metadata: 'meta' },
          { topic: 'alpha', partition: 1, offset: 3n },
          { topic: 'alpha', partition: 0, offset: 0n },
        ]);
        expect(await committed('offsets')).toEqual([
          ['alpha', 0, 0n, null],
          ['alpha', 1, 3n, null],
          ['zeta', 0, 5n, 'meta'],
        ]);
        const [first] = await storage.fetchCommittedOffsets('offsets');
        expect(Math.abs(first!.committedAt - before)).toBeLessThan(5 * 60_000);
        await storage.commitOffsets('offsets', [{ topic: 'alpha', partition: 1, offset: 7n, metadata: 'm2' }]);
        expect((await storage.fetchCommittedOffsets('offsets', ['alpha'])).map((c) => [c.topic, c.partition, c.offset, c.metadata])).toEqual([
          ['alpha', 0, 0n, null],
          ['alpha', 1, 7n, 'm2'],
        ]);
        expect(await storage.fetchCommittedOffsets('no-such-group')).toEqual([]);
        expect(await storage.listGroups()).toEqual(['offsets']);
        await storage.commitOffsets('offsets', []);
      });

      it('offsets committed in a transaction commit with its appends, or not at all', async () => {
        await storage.createTopics([spec('out')]);
        await expect(
          storage.transaction(async (tx) => {
            await tx.append([{ topic: 'out', partition: 0, records: [rec('lost')] }]);
            await tx.commitOffsets('tx-group', [{ topic: 'in', partition: 0, offset: 1n }]);
            throw new Error('abort');
          }),
        ).rejects.toThrow('abort');
        expect(await committed('tx-group')).toEqual([]);
        await storage.transaction(async (tx) => {
          await tx.append([{ topic: 'out', partition: 0, records: [rec('kept')] }]);
          await tx.commitOffsets('tx-group', [{ topic: 'in', partition: 0, offset: 2n }]);
        });
        expect(await committed('tx-group')).toEqual([['in', 0, 2n, null]]);
        expect(await values('out', 0)).toEqual(['kept']);
      });

      it('one owner per partition: a claim bumps the generation, and commits are fenced to the owner at its generation, all or none', async () => {
        await storage.createTopics([spec('claimed', 2), spec('effects')]);
        const a = await storage.joinGroup('owners', member('a', ['claimed']), quiet());
        const b = await storage.joinGroup('owners', member('b', ['claimed']), quiet());
        try {
          expect(a.groupId).toBe('owners');
          expect(a.memberId).not.toBe(b.memberId);
          expect(await a.claim('claimed', 0)).toEqual({ acquired: true, generation: 1n, committedOffset: null });
          expect(await b.claim('claimed', 0)).toEqual({ acquired: false });
          const fenceA = { memberId: a.memberId, generations: new Map([['claimed/0', 1n]]) };
          await storage.commitOffsets('owners', [{ topic: 'claimed', partition: 0, offset: 10n }], fenceA);
          await expectRejects(
            storage.commitOffsets('owners', [{ topic: 'claimed', partition: 0, offset: 11n }], { memberId: a.memberId, generations: new Map([['claimed/0', 7n]]) }),
            'IllegalGenerationError',
          );

          await a.release('claimed', 0);
          expect(await b.claim('claimed', 0)).toEqual({ acquired: true, generation: 2n, committedOffset: 10n });
          expect(await a.claim('claimed', 1)).toEqual({ acquired: true, generation: 1n, committedOffset: null });
          // A's commit for partition 0 is fenced now; with partition 1 (still A's) in the same commit, nothing commits.
          const fenceA2 = { memberId: a.memberId, generations: new Map([['claimed/0', 1n], ['claimed/1', 1n]]) };
          await expectRejects(
            storage.commitOffsets('owners', [{ topic: 'claimed', partition: 1, offset: 4n }, { topic: 'claimed', partition: 0, offset: 99n }], fenceA2),
            'IllegalGenerationError',
          );
          expect(await committed('owners')).toEqual([['claimed', 0, 10n, null]]);
          // A fenced commit in a transaction rolls back the transaction's appends with it.
          await expectRejects(
            storage.transaction(async (tx) => {
              await tx.append([{ topic: 'effects', partition: 0, records: [rec('zombie effect')] }]);
              await tx.commitOffsets('owners', [{ topic: 'claimed', partition: 0, offset: 12n }], fenceA);
            }),
            'IllegalGenerationError',
          );
          expect(await highs('effects')).toEqual([0n]);
          const fenceB = { memberId: b.memberId, generations: new Map([['claimed/0', 2n]]) };
          await storage.transaction(async (tx) => {
            await tx.append([{ topic: 'effects', partition: 0, records: [rec('effect')] }]);
            await tx.commitOffsets('owners', [{ topic: 'claimed', partition: 0, offset: 12n }], fenceB);
          });
          expect(await values('effects', 0)).toEqual(['effect']);
          expect(await committed('owners')).toEqual([['claimed', 0, 12n, null]]);
        } finally {
          await a.leave();
          await b.leave();
        }
      });

      it('heartbeat lists the members; a member silent past its session timeout is expired: partitions freed, session lost, heartbeat refused', async () => {
        await storage.createTopics([spec('beats')]);
        let lost: unknown;
        let changes = 0;
        const a = await storage.joinGroup('beats', member('a', ['beats'], 300), quiet({ onLost: (e) => (lost = e) }));
        const b = await storage.joinGroup('beats', member('b', ['beats']), quiet({ onGroupChange: () => changes++ }));
        try {
          const members = await b.heartbeat();
          expect(members.map((m) => m.memberId)).toEqual([a.memberId, b.memberId].sort());
          expect(members.find((m) => m.memberId === b.memberId)).toMatchObject({ clientId: 'b', clientHost: 'conformance', topics: ['beats'] });
          expect((await a.claim('beats', 0)).acquired).toBe(true);
          await sleep(700);
          expect((await b.heartbeat()).map((m) => m.memberId)).toEqual([b.memberId]);
          await eventually(() => lost !== undefined, 'onLost of the expired member');
          await eventually(() => changes > 0, 'onGroupChange after the expiry');
          await expectRejects(a.heartbeat(), 'IllegalGenerationError');
          let claim = await b.claim('beats', 0);
          for (let i = 0; !claim.acquired && i < 100; i++) {
            await sleep(20);
            claim = await b.claim('beats', 0);
          }
          expect(claim).toMatchObject({ acquired: true, generation: 2n });
        } finally {
          await a.leave();
          await b.leave();
        }
      });

      it('members join and leave (others are told), describeGroup shows members and partitions, and a group with members cannot be deleted', async () => {
        await storage.createTopics([spec('described', 2)]);
        await storage.append([{ topic: 'described', partition: 0, records: [1000, 2000, 3000].map((t) => rec(`r${t}`, { timestamp: t })) }]);
        const told: string[] = [];
        const a = await storage.joinGroup('described-group', member('alpha', ['described']), quiet({ onGroupChange: () => told.push('alpha') }));
        const b = await storage.joinGroup('described-group', member('beta', ['described']), quiet({ onGroupChange: () => told.push('beta') }));
        try {
          await eventually(() => told.includes('alpha'), 'alpha told that beta joined');
          await a.claim('described', 0);
          await storage.commitOffsets('described-group', [{ topic: 'described', partition: 0, offset: 1n }], {
            memberId: a.memberId,
            generations: new Map([['described/0', 1n]]),
          });
          const described = await storage.describeGroup('described-group');
          expect(described.groupId).toBe('described-group');
          expect(described.members.map((m) => m.memberId)).toEqual([a.memberId, b.memberId].sort());
          expect(described.members.map((m) => m.clientId).sort()).toEqual(['alpha', 'beta']);
          expect(described.partitions).toEqual([
            { topic: 'described', partition: 0, committedOffset: 1n, logStartOffset: 0n, logEndOffset: 3n, firstUnconsumedTimestamp: 2000, ownerMemberId: a.memberId, generation: 1n },
            { topic: 'described', partition: 1, committedOffset: null, logStartOffset: 0n, logEndOffset: 0n, firstUnconsumedTimestamp: null, ownerMemberId: null, generation: null },
          ]);
          await expectRejects(storage.deleteGroups(['described-group']), 'GroupNotEmptyError');
          expect(await storage.listGroups()).toEqual(['described-group']);

          await a.leave();
          await a.leave();
          await eventually(() => told.includes('beta'), 'beta told that alpha left');
          const after = await storage.describeGroup('described-group');
          expect(after.members.map((m) => m.memberId)).toEqual([b.memberId]);
          expect(after.partitions[0]!.ownerMemberId).toBeNull();
          await b.leave();
          await storage.deleteGroups(['described-group']);
          expect(await storage.listGroups()).toEqual([]);
          expect(await storage.fetchCommittedOffsets('described-group')).toEqual([]);
        } finally {
          await a.leave();
          await b.leave();
        }
      });

      it('describeLag reads watermarks and every group position at once, with the store clock; filters by group and topic', async () => {
        await storage.createTopics([spec('lag-a', 2), spec('lag-b'), spec('lag-idle')]);
        await storage.append([
          { topic: 'lag-a', partition: 0, records: [1000, 2000, 3000].map((t) => rec(`a${t}`, { timestamp: t })) },
          { topic: 'lag-a', partition: 1, records: [rec('a1', { timestamp: 1500 })] },
          { topic: 'lag-b', partition: 0, records: ['b0', 'b1', 'b2', 'b3', 'b4'].map((v) => rec(v)) },
        ]);
        await storage.commitOffsets('g1', [{ topic: 'lag-a', partition: 0, offset: 1n }]);
        await storage.commitOffsets('g2', [{ topic: 'lag-b', partition: 0, offset: 5n }]);
        const live = await storage.joinGroup('g1', member('live', ['lag-a', 'lag-b']), quiet());
        // A member whose session timeout has passed without a heartbeat is not live, even before anyone expires it.
        const silent = await storage.joinGroup('g3', member('silent', ['lag-idle'], 1), quiet());
        try {
          await sleep(50);
          const before = Date.now();
          const snapshot = await storage.describeLag();
          expect(Math.abs(snapshot.now - before)).toBeLessThan(5 * 60_000);
          expect(snapshot.partitions).toEqual([
            { topic: 'lag-a', partition: 0, low: 0n, high: 3n },
            { topic: 'lag-a', partition: 1, low: 0n, high: 1n },
            { topic: 'lag-b', partition: 0, low: 0n, high: 5n },
            { topic: 'lag-idle', partition: 0, low: 0n, high: 0n },
          ]);
          expect(snapshot.groups.map((g) => [g.groupId, g.liveMembers])).toEqual([
            ['g1', 1],
            ['g2', 0],
            ['g3', 0],
          ]);
          const g1 = snapshot.groups[0]!;
          // The same figures describeGroup gives, one group at a time.
          expect(g1.partitions).toEqual((await storage.describeGroup('g1')).partitions);
          expect(g1.partitions.map((p) => [p.topic, p.partition, p.committedOffset, p.logStartOffset, p.logEndOffset, p.ownerMemberId])).toEqual([
            ['lag-a', 0, 1n, 0n, 3n, null],
            ['lag-a', 1, null, 0n, 1n, null],
            ['lag-b', 0, null, 0n, 5n, null],
          ]);
          expect(g1.partitions.slice(0, 2).map((p) => p.firstUnconsumedTimestamp)).toEqual([2000, 1500]);
          // Records appended without a timestamp carry the store clock's, the clock `now` is read from.
          expect(Math.abs(g1.partitions[2]!.firstUnconsumedTimestamp! - snapshot.now)).toBeLessThan(60_000);
          expect(g1.partitions[2]!.firstUnconsumedTimestamp!).toBeLessThanOrEqual(snapshot.now);
          expect(snapshot.groups[1]!.partitions).toEqual([
            { topic: 'lag-b', partition: 0, committedOffset: 5n, logStartOffset: 0n, logEndOffset: 5n, firstUnconsumedTimestamp: null, ownerMemberId: null, generation: null },
          ]);
          expect(snapshot.groups[2]!.partitions.map((p) => [p.topic, p.partition, p.committedOffset])).toEqual([['lag-idle', 0, null]]);

          const filtered = await storage.describeLag({ groupIds: ['g1', 'no-such-group'], topics: ['lag-b', 'no-such-topic'] });
          expect(filtered.partitions).toEqual([{ topic: 'lag-b', partition: 0, low: 0n, high: 5n }]);
          expect(filtered.groups.map((g) => [g.groupId, g.liveMembers, g.partitions.map((p) => `${p.topic}/${p.partition}`)])).toEqual([
            ['g1', 1, ['lag-b/0']],
          ]);
          const none = await storage.describeLag({ groupIds: [], topics: [] });
          expect([none.partitions, none.groups]).toEqual([[], []]);
        } finally {
          await live.leave();
          await silent.leave();
        }
      });

      it('a group session is woken for appends to its topics only', async () => {
        await storage.createTopics([spec('wake-a', 2), spec('wake-b')]);
        const appends: Array<[string, number]> = [];
        const session = await storage.joinGroup('wakers', member('w', ['wake-a']), quiet({ onAppend: (t, p) => appends.push([t, p]) }));
        try {
          await storage.append([{ topic: 'wake-b', partition: 0, records: [rec('x')] }]);
          await storage.append([{ topic: 'wake-a', partition: 1, records: [rec('y')] }]);
          await eventually(() => appends.some(([t, p]) => t === 'wake-a' && p === 1), 'onAppend for wake-a[1]');
          expect(appends.filter(([t]) => t !== 'wake-a')).toEqual([]);
        } finally {
          await session.leave();
        }
      });
    });

    // ---- properties --------------------------------------------------------------------------

    // ---- event-sourced streams (conformance-streams.ts) ---------------------------------------

    describeStreamConformance({ storage: () => storage, fcParams, propertyRuns });
    if (options.cleaner ?? true) describeCleanerConformance({ storage: () => storage });

    // ---- schema registry (conformance-schema-registry.ts) -------------------------------------

    describeSchemaRegistryConformance({ storage: () => storage });

    describe('properties', () => {
      let run = 0;

      it('random appends and transactions (some rolled back, some invalid) leave exactly the committed records, densely, in order', async () => {
        const partitionCount = 3;
        const batchArb = fc.uniqueArray(fc.record({ partition: fc.integer({ min: 0, max: partitionCount - 1 }), count: fc.integer({ min: 1, max: 4 }) }), {
          selector: (b) => b.partition,
          minLength: 1,
          maxLength: partitionCount,
        });
        const opArb = fc.oneof(
          fc.record({ kind: fc.constant('append' as const), batch: batchArb }),
          fc.record({ kind: fc.constant('invalid' as const), batch: batchArb }),
          fc.record({ kind: fc.constant('transaction' as const), steps: fc.array(batchArb, { minLength: 0, maxLength: 3 }), abort: fc.boolean() }),
        );
        await fc.assert(
          fc.asyncProperty(fc.array(opArb, { minLength: 1, maxLength: 10 }), async (ops) => {
            const topic = `model-${++run}`;
            await storage.createTopics([spec(topic, partitionCount)]);
            const model: string[][] = Array.from({ length: partitionCount }, () => []);
            const toAppends = (batch: Array<{ partition: number; count: number }>, tag: string): PartitionAppend[] =>
              batch.map((b) => ({ topic, partition: b.partition, records: Array.from({ length: b.count }, (_, i) => rec(`${tag}/${b.partition}/${i}`)) }));
            const expectBases = (results: Array<{ partition: number; baseOffset: bigint }>, bases: Map<number, number>) => {
              for (const r of results) expect(r.baseOffset).toBe(BigInt(bases.get(r.partition)!));
            };
            for (const [o, op] of ops.entries()) {
              if (op.kind === 'append') {
                const appends = toAppends(op.batch, `op${o}`);
                const results = await storage.append(appends);
                expectBases(results, new Map(op.batch.map((b) => [b.partition, model[b.partition]!.length])));
                for (const a of appends) model[a.partition]!.push(...a.records.map((r) => text(r.value)!));
              } else if (op.kind === 'invalid') {
                const appends = [...toAppends(op.batch, `bad${o}`), { topic, partition: partitionCount, records: [rec('never')] }];
                await expectRejects(storage.append(appends), 'UnknownTopicOrPartitionError');
              } else {
                const staged: string[][] = model.map((m) => [...m]);
                const result = storage.transaction(async (tx) => {
                  for (const [s, step] of op.steps.entries()) {
                    const appends = toAppends(step, `op${o}.${s}`);
                    const results = await tx.append(appends);
                    expectBases(results, new Map(step.map((b) => [b.partition, staged[b.partition]!.length])));
                    for (const a of appends) staged[a.partition]!.push(...a.records.map((r) => text(r.value)!));
                  }
                  if (op.abort) throw new Error('abort');
                });
                if (op.abort) await expect(result).rejects.toThrow('abort');
                else {
                  await result;
                  staged.forEach((m, p) => (model[p] = m));
                }
              }
            }
            for (let p = 0; p < partitionCount; p++) {
              const records = await readAll(storage, topic, p);
              expect(records.map((r) => r.offset)).toEqual(model[p]!.map((_, i) => BigInt(i)));
              expect(records.map((r) => text(r.value))).toEqual(model[p]);
            }
            expect(await highs(topic)).toEqual(model.map((m) => BigInt(m.length)));
          }),
          fcParams(propertyRuns),
        );
      }, 120_000); // 50 runs of up to 12 operations each: ~25 s on a shared 2-core machine

      it('paging through a partition with random limits reads every record once, in order, within the limits', async () => {
        await fc.assert(
          fc.asyncProperty(
            fc.array(fc.integer({ min: 0, max: 300 }), { minLength: 0, maxLength: 40 }),
            fc.array(fc.record({ maxRecords: fc.integer({ min: 1, max: 12 }), maxBytes: fc.integer({ min: 1, max: 1500 }) }), { minLength: 1, maxLength: 8 }),
            async (sizes, pages) => {
              const topic = `pages-${++run}`;
              await storage.createTopics([spec(topic)]);
              if (sizes.length > 0) {
                await storage.append([{ topic, partition: 0, records: sizes.map((n, i) => ({ key: null, value: new Uint8Array(n).fill(i % 256), headers: null, timestamp: null })) }]);
              }
              const seen: number[] = [];
              let offset = 0n;
              for (let i = 0; offset < BigInt(sizes.length); i++) {
                const limits = pages[i % pages.length]!;
                const { records, highWatermark } = await storage.fetch(topic, 0, offset, limits);
                expect(highWatermark).toBe(BigInt(sizes.length));
                expect(records.length).toBeGreaterThanOrEqual(1);
                expect(records.length).toBeLessThanOrEqual(limits.maxRecords);
                const total = records.reduce((n, r) => n + (r.value?.length ?? 0), 0);
                if (records.length > 1) expect(total).toBeLessThanOrEqual(limits.maxBytes);
                // Nothing was cut short that fitted: the next record would have broken a limit.
                const next = Number(offset) + records.length;
                if (next < sizes.length && records.length < limits.maxRecords) expect(total + sizes[next]!).toBeGreaterThan(limits.maxBytes);
                for (const r of records) {
                  expect(r.offset).toBe(offset);
                  seen.push(r.value!.length);
                  offset++;
                }
              }
              expect(seen).toEqual(sizes);
              expect((await storage.fetch(topic, 0, offset, pages[0]!)).records).toEqual([]);
            },
          ),
          fcParams(Math.max(1, Math.ceil(propertyRuns / 2))),
        );
      });
    });
  });
}

// ---- helpers -----------------------------------------------------------------------------------

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function bytes(s: string): Uint8Array {
  return encoder.encode(s);
}

function text(b: Uint8Array | null): string | null {
  return b === null ? null : decoder.decode(b);
}

function rec(value: string | null, extra: Partial<AppendRecord> = {}): AppendRecord {
  return { key: null, value: value === null ? null : bytes(value), headers: null, timestamp: null, ...extra };
}

function config(overrides: Partial<Record<keyof TopicConfig, unknown>> = {}): TopicConfig {
  return { ...DEFAULT_TOPIC_CONFIG, ...overrides } as TopicConfig;
}

function spec(name: string, partitions = 1, overrides: Partial<Record<keyof TopicConfig, unknown>> = {}): TopicSpec {
  return { name, partitions, config: config(overrides) };
}

/** A record's bytes as plain arrays: comparable whatever Uint8Array subclass a store returns. */
function shape(r: StoredRecord): { key: number[] | null; value: number[] | null; headers: Record<string, number[]> } {
  return {
    key: r.key === null ? null : [...r.key],
    value: r.value === null ? null : [...r.value],
    headers: Object.fromEntries(Object.entries(r.headers).map(([k, v]) => [k, [...v]])),
  };
}

async function readAll(storage: LogStorage<any>, topic: string, partition: number): Promise<StoredRecord[]> {
  const out: StoredRecord[] = [];
  let offset = 0n;
  for (;;) {
    const { records, highWatermark } = await storage.fetch(topic, partition, offset, { maxRecords: 1000, maxBytes: 1 << 24 });
    out.push(...records);
    if (records.length === 0 || offset + BigInt(records.length) >= highWatermark) return out;
    offset = records[records.length - 1]!.offset + 1n;
  }
}

async function expectRejects(promise: Promise<unknown>, errorName: string): Promise<any> {
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

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function deferred<T>(): { promise: Promise<T>; resolve: (value: T) => void; reject: (error: unknown) => void } {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

async function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`Timed out after ${ms} ms waiting for ${what}.`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

async function eventually(check: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}.`);
    await sleep(5);
  }
}
