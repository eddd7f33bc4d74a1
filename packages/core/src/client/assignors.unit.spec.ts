import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { LiveMember } from '../storage/log-storage.js';
import { assignPartitions, type AssignmentStrategy } from './assignors.js';

const member = (memberId: string, topics: string[], owned: LiveMember['owned'] = []): LiveMember => ({
  memberId,
  clientId: 'c',
  clientHost: 'h',
  topics,
  joinedAt: 0,
  heartbeatAt: 0,
  owned,
});

describe.each<AssignmentStrategy>(['sticky', 'round-robin', 'range'])('%s assignment', (strategy) => {
  it('gives 3 members 2 of 6 partitions each', () => {
    const a = assignPartitions(strategy, ['m1', 'm2', 'm3'].map((m) => member(m, ['orders'])), new Map([['orders', 6]]));
    expect([...a.values()].map((ps) => ps.length)).toEqual([2, 2, 2]);
  });

  it('leaves members beyond the partition count idle', () => {
    const a = assignPartitions(strategy, ['a', 'b', 'c', 'd'].map((m) => member(m, ['t'])), new Map([['t', 2]]));
    expect([...a.values()].map((ps) => ps.length).sort()).toEqual([0, 0, 1, 1]);
  });

  it('assigns every partition exactly once, only to subscribed members, the same whatever the member order', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.string({ minLength: 1, maxLength: 4 }), { minLength: 1, maxLength: 6 }),
        fc.array(fc.tuple(fc.boolean(), fc.boolean()), { minLength: 6, maxLength: 6 }),
        fc.integer({ min: 1, max: 12 }),
        fc.integer({ min: 1, max: 12 }),
        (ids, subs, nA, nB) => {
          const members = ids.map((id, i) => member(id, [...(subs[i]![0] ? ['a'] : []), ...(subs[i]![1] || !subs[i]![0] ? ['b'] : [])]));
          const counts = new Map([['a', nA], ['b', nB]]);
          const one = assignPartitions(strategy, members, counts);
          const two = assignPartitions(strategy, [...members].reverse(), counts);
          expect(new Map([...two].sort())).toEqual(new Map([...one].sort()));
          const seen = new Map<string, string>();
          for (const [memberId, parts] of one) {
            const m = members.find((x) => x.memberId === memberId)!;
            for (const p of parts) {
              expect(m.topics).toContain(p.topic);
              const key = `${p.topic}/${p.partition}`;
              expect(seen.has(key)).toBe(false);
              seen.set(key, memberId);
            }
          }
          for (const [topic, n] of counts) {
            if (!members.some((m) => m.topics.includes(topic))) continue;
            for (let p = 0; p < n; p++) expect(seen.has(`${topic}/${p}`)).toBe(true);
          }
        },
      ),
    );
  });
});

describe('sticky assignment', () => {
  const owning = (a: Map<string, Array<{ topic: string; partition: number }>>, id: string) => a.get(id) ?? [];
  const moved = (before: Map<string, Array<{ topic: string; partition: number }>>, after: Map<string, Array<{ topic: string; partition: number }>>) => {
    const where = new Map<string, string>();
    for (const [id, ps] of before) for (const p of ps) where.set(`${p.topic}/${p.partition}`, id);
    let n = 0;
    for (const [id, ps] of after) for (const p of ps) if (where.get(`${p.topic}/${p.partition}`) !== id) n++;
    return n;
  };
  const counts = new Map([['orders', 6]]);

  it('moves one partition when a 4th member joins 3 that own 2 of 6 each, and two when one of 3 leaves', () => {
    const three = assignPartitions('sticky', ['m1', 'm2', 'm3'].map((m) => member(m, ['orders'])), counts);
    const joined = ['m1', 'm2', 'm3', 'm4'].map((m) => member(m, ['orders'], owning(three, m)));
    const four = assignPartitions('sticky', joined, counts);
    expect([...four.values()].map((ps) => ps.length).sort()).toEqual([1, 1, 2, 2]);
    expect(moved(three, four)).toBe(1);

    const left = ['m1', 'm3', 'm4'].map((m) => member(m, ['orders'], owning(four, m)));
    const after = assignPartitions('sticky', left, counts);
    expect([...after.values()].map((ps) => ps.length)).toEqual([2, 2, 2]);
    expect(moved(new Map([...four].filter(([id]) => id !== 'm2')), after)).toBe(owning(four, 'm2').length);
  });

  it('is balanced and complete whatever the members claim to own (stale or conflicting views), and the same in any member order', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.string({ minLength: 1, maxLength: 3 }), { minLength: 1, maxLength: 5 }),
        fc.integer({ min: 1, max: 10 }),
        fc.array(fc.array(fc.integer({ min: 0, max: 12 }), { maxLength: 6 }), { minLength: 5, maxLength: 5 }),
        (ids, n, claims) => {
          const members = ids.map((id, i) => member(id, ['t'], claims[i]!.map((partition) => ({ topic: 't', partition }))));
          const one = assignPartitions('sticky', members, new Map([['t', n]]));
          const two = assignPartitions('sticky', [...members].reverse(), new Map([['t', n]]));
          expect(new Map([...two].sort())).toEqual(new Map([...one].sort()));
          const sizes = [...one.values()].map((ps) => ps.length);
          expect(Math.max(...sizes) - Math.min(...sizes)).toBeLessThanOrEqual(1);
          const all = [...one.values()].flat().map((p) => p.partition).sort((a, b) => a - b);
          expect(all).toEqual(Array.from({ length: n }, (_, i) => i));
        },
      ),
    );
  });

  it('spreads single-partition topics over members instead of stacking them on the first', () => {
    const a = assignPartitions('sticky', ['m1', 'm2', 'm3'].map((m) => member(m, ['a', 'b', 'c'])), new Map([['a', 1], ['b', 1], ['c', 1]]));
    expect([...a.values()].map((ps) => ps.length)).toEqual([1, 1, 1]);
  });
});
