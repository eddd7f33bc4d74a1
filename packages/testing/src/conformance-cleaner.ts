/**
 * The cleaner part of the storage conformance suite (invariant 6): what retention and compaction
 * must do on every store that has a cleaner. Time is injected through `now`, so nothing sleeps
 * for hours; every store judges time by its own notes, never by record timestamps.
 */
import type { AppendRecord, CleanerLease, CleanPassReport, LogStorage, PartitionCleanReport, TopicConfig, TopicSpec } from '@annals/core';
import { DEFAULT_TOPIC_CONFIG } from '@annals/core';
import { describe, expect, it } from 'vitest';

const HOUR = 3_600_000;
const encoder = new TextEncoder();
const decoder = new TextDecoder();
const text = (b: Uint8Array | null): string | null => (b === null ? null : decoder.decode(b));

function topic(name: string, overrides: Partial<Record<keyof TopicConfig, unknown>>): TopicSpec {
  return { name, partitions: 1, config: { ...DEFAULT_TOPIC_CONFIG, ...overrides } as TopicConfig };
}

function rec(key: string | null, value: string | null, timestamp: number | null = null): AppendRecord {
  return { key: key === null ? null : encoder.encode(key), value: value === null ? null : encoder.encode(value), headers: null, timestamp };
}

async function append(storage: LogStorage<any>, name: string, count: number, keyOf: (i: number) => string | null, valueOf: (i: number) => string | null = (i) => `v${i}`): Promise<void> {
  for (let from = 0; from < count; from += 500) {
    const records: AppendRecord[] = [];
    for (let i = from; i < Math.min(count, from + 500); i++) records.push(rec(keyOf(i), valueOf(i)));
    await storage.append([{ topic: name, partition: 0, records }]);
  }
}

async function all(storage: LogStorage<any>, name: string): Promise<Array<{ offset: bigint; key: string | null; value: string | null }>> {
  const out: Array<{ offset: bigint; key: string | null; value: string | null }> = [];
  let offset = 0n;
  for (let guard = 0; guard < 1000; guard++) {
    const { records } = await storage.fetch(name, 0, offset, { maxRecords: 1000, maxBytes: 1 << 24 });
    if (records.length === 0) return out;
    for (const r of records) out.push({ offset: r.offset, key: text(r.key), value: text(r.value) });
    offset = records.at(-1)!.offset + 1n;
  }
  throw new Error('did not reach the end of the log');
}

async function low(storage: LogStorage<any>, name: string): Promise<bigint> {
  return (await storage.fetchWatermarks(name))[0]!.low;
}

export interface CleanerConformanceContext {
  readonly storage: () => LogStorage<any>;
}

/** Declares the cleaner tests; called by `describeLogStorageConformance`. */
export function describeCleanerConformance(ctx: CleanerConformanceContext): void {
  describe('cleaner', () => {
    async function withLease<T>(fn: (clean: (now?: number) => Promise<PartitionCleanReport>) => Promise<T>): Promise<T> {
      const storage = ctx.storage();
      const lease = await storage.cleaner!.acquireCleaner();
      expect(lease, 'a fresh store grants the cleaner lease').not.toBeNull();
      try {
        return await fn(async (now) => first(await lease!.clean({ chunkRecords: 100, ...(now === undefined ? {} : { now }) })));
      } finally {
        await lease!.release();
      }
    }
    const first = (report: CleanPassReport): PartitionCleanReport => {
      expect(report.partitions.length).toBeGreaterThan(0);
      return report.partitions[0]!;
    };

    it('grants one lease at a time; a released lease refuses to clean', async () => {
      const storage = ctx.storage();
      const a = (await storage.cleaner!.acquireCleaner()) as CleanerLease;
      expect(a).not.toBeNull();
      expect(await storage.cleaner!.acquireCleaner()).toBeNull();
      await a.release();
      await a.release(); // idempotent
      await expect(a.clean({ chunkRecords: 10 })).rejects.toMatchObject({ name: 'CleanerLeaseLostError' });
      const b = await storage.cleaner!.acquireCleaner();
      expect(b).not.toBeNull();
      await b!.release();
    });

    it('retention.ms: nothing goes early, everything noted before the cutoff goes, and producer timestamps are ignored', async () => {
      const storage = ctx.storage();
      await storage.createTopics([topic('retained', { 'retention.ms': HOUR, 'segment.records': 1000 })]);
      // Stamped ten hours in the past by a producer: still kept until the store's clock says otherwise.
      await storage.append([{ topic: 'retained', partition: 0, records: [rec(null, 'stamped-old', Date.now() - 10 * HOUR)] }]);
      await append(storage, 'retained', 1499, () => null);
      await withLease(async (clean) => {
        const t0 = Date.now();
        expect((await clean()).logStartMovedBy).toBeNull();
        expect(await low(storage, 'retained')).toBe(0n);
        expect((await clean(t0 + HOUR - 60_000)).logStartMovedBy).toBeNull();
        expect((await all(storage, 'retained')).length).toBe(1500);
        await append(storage, 'retained', 100, () => null, (i) => `late${i}`);
        const moved = await clean(t0 + 2 * HOUR);
        expect(moved.logStartMovedBy).toBe('retention.ms');
        expect(moved.logStartOffset).toBe(1500n);
        const left = await all(storage, 'retained');
        expect(left[0]).toMatchObject({ offset: 1500n, value: 'late0' });
        expect(left.length).toBe(100);
      });
      expect((await storage.fetchWatermarks('retained'))[0]).toMatchObject({ low: 1500n, high: 1600n });
    });

    it('retention.ms = -1 keeps everything', async () => {
      const storage = ctx.storage();
      await storage.createTopics([topic('kept', { 'retention.ms': -1 })]);
      await append(storage, 'kept', 50, () => null);
      await withLease(async (clean) => {
        await clean();
        expect((await clean(Date.now() + 10_000 * HOUR)).logStartMovedBy).toBeNull();
      });
      expect((await all(storage, 'kept')).length).toBe(50);
    });

    it('compaction keeps the latest record of every key, leaves offsets and the log start alone, and removes tombstones after delete.retention.ms', async () => {
      const storage = ctx.storage();
      await storage.createTopics([topic('compacted', { 'cleanup.policy': 'compact', 'retention.ms': -1 })]);
      await append(storage, 'compacted', 300, (i) => `k${i % 10}`, (i) => (i === 293 ? null : `v${i}`));
      await withLease(async (clean) => {
        const t0 = Date.now();
        const report = await clean();
        expect(report.recordsCompacted).toBe(290);
        expect(report.cleanedOffset).toBe(300n);
        expect(report.logStartOffset).toBe(0n);
        const left = await all(storage, 'compacted');
        expect(left.map((r) => r.offset)).toEqual(Array.from({ length: 10 }, (_, i) => BigInt(290 + i)));
        expect(left.find((r) => r.key === 'k3')!.value).toBeNull();
        // A fetch from inside a gap reads the next record.
        const { records } = await storage.fetch('compacted', 0, 17n, { maxRecords: 1, maxBytes: 1 << 20 });
        expect(records[0]!.offset).toBe(290n);
        expect((await storage.fetchWatermarks('compacted'))[0]).toMatchObject({ low: 0n, high: 300n });

        // More records for two keys: the next pass removes their older records, wherever they are.
        await append(storage, 'compacted', 2, (i) => `k${i}`, (i) => `w${i}`);
        expect((await clean()).recordsCompacted).toBe(2);
        expect((await clean(t0 + 23 * HOUR)).tombstonesRemoved).toBe(0);
        expect((await clean(t0 + 25 * HOUR)).tombstonesRemoved).toBe(1);
      });
      const final = await all(storage, 'compacted');
      expect(final.map((r) => r.key)).toEqual(['k2', 'k4', 'k5', 'k6', 'k7', 'k8', 'k9', 'k0', 'k1']);
      expect(final.at(-1)).toMatchObject({ offset: 301n, value: 'w1' });
    });

    it('min.compaction.lag.ms leaves the newest records alone', async () => {
      const storage = ctx.storage();
      await storage.createTopics([topic('lagging', { 'cleanup.policy': 'compact', 'min.compaction.lag.ms': HOUR, 'retention.ms': -1 })]);
      await append(storage, 'lagging', 20, (i) => `k${i % 2}`);
      await withLease(async (clean) => {
        const t0 = Date.now();
        expect((await clean()).recordsCompacted).toBe(0);
        expect((await clean(t0 + HOUR / 2)).recordsCompacted).toBe(0);
        expect((await clean(t0 + 2 * HOUR)).recordsCompacted).toBe(18);
      });
      expect((await all(storage, 'lagging')).map((r) => r.value)).toEqual(['v18', 'v19']);
    });

    it('deleteRecords still moves the log start by hand, and the cleaner never moves it back', async () => {
      const storage = ctx.storage();
      await storage.createTopics([topic('manual', { 'retention.ms': HOUR })]);
      await append(storage, 'manual', 10, () => null);
      await storage.deleteRecords('manual', [{ partition: 0, offset: 6n }]);
      await withLease(async (clean) => {
        expect((await clean()).logStartOffset).toBe(6n);
      });
      expect(await low(storage, 'manual')).toBe(6n);
    });
  });
}
