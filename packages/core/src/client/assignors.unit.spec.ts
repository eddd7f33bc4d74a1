import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { LiveMember } from '../storage/log-storage.js';
import { assignPartitions, type AssignmentStrategy } from './assignors.js';

const member = (memberId: string, topics: string[]): LiveMember => ({ memberId, clientId: 'c', clientHost: 'h', topics, joinedAt: 0, heartbeatAt: 0 });

describe.each<AssignmentStrategy>(['round-robin', 'range'])('%s assignment', (strategy) => {
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
