/**
 * Partition assignment. Every member computes the same assignment from the same inputs — the
 * live members sorted by id and the partition counts of their topics — so no leader is needed.
 * Members may briefly disagree while a change propagates; the partition locks keep ownership
 * exclusive meanwhile, and the group converges at the next heartbeat.
 */
import type { LiveMember } from '../storage/log-storage.js';

/** A topic partition. */
export interface TopicPartition {
  readonly topic: string;
  readonly partition: number;
}

/** `round-robin` deals partitions out one at a time; `range` gives each member a contiguous range per topic. */
export type AssignmentStrategy = 'round-robin' | 'range';

export type Assignment = Map<string, TopicPartition[]>;

function membersByTopic(members: readonly LiveMember[], topic: string): string[] {
  return members.filter((m) => m.topics.includes(topic)).map((m) => m.memberId).sort();
}

export function assignPartitions(
  strategy: AssignmentStrategy,
  members: readonly LiveMember[],
  partitionCounts: ReadonlyMap<string, number>,
): Assignment {
  const result: Assignment = new Map(members.map((m) => [m.memberId, []]));
  const topics = [...partitionCounts.keys()].sort();
  if (strategy === 'range') {
    for (const topic of topics) {
      const subscribed = membersByTopic(members, topic);
      const n = partitionCounts.get(topic)!;
      if (subscribed.length === 0) continue;
      const each = Math.floor(n / subscribed.length);
      const extra = n % subscribed.length;
      let next = 0;
      subscribed.forEach((memberId, i) => {
        const count = each + (i < extra ? 1 : 0);
        for (let k = 0; k < count; k++) result.get(memberId)!.push({ topic, partition: next++ });
      });
    }
    return result;
  }
  // Round-robin over every (topic, partition), skipping members not subscribed to the topic.
  const all = members.map((m) => m.memberId).sort();
  let cursor = 0;
  for (const topic of topics) {
    const subscribed = new Set(membersByTopic(members, topic));
    if (subscribed.size === 0) continue;
    for (let p = 0; p < partitionCounts.get(topic)!; p++) {
      while (!subscribed.has(all[cursor % all.length]!)) cursor++;
      result.get(all[cursor % all.length]!)!.push({ topic, partition: p });
      cursor++;
    }
  }
  return result;
}
