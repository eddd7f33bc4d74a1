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

/**
 * `sticky` (the default) balances each topic's partitions over its subscribers and keeps every
 * partition where it is when that stays balanced, so a join or a leave moves as few partitions
 * as it can (Kafka's sticky assignor, per topic); `round-robin` deals partitions out one at a
 * time; `range` gives each member a contiguous range per topic.
 */
export type AssignmentStrategy = 'sticky' | 'round-robin' | 'range';

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
  if (strategy === 'sticky') return assignSticky(result, members, topics, partitionCounts);
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

/**
 * Per topic: quotas of ⌊n/m⌋ or ⌈n/m⌉ partitions; the ⌈n/m⌉ quotas go first to members that
 * already own that many (then to those with the fewest partitions so far over all topics, then
 * by id); each member keeps the lowest-numbered partitions it owns up to its quota; the rest are
 * dealt in ascending order to members under quota. A function of its inputs only, so every
 * member computes the same result from the same view.
 */
function assignSticky(
  result: Assignment,
  members: readonly LiveMember[],
  topics: readonly string[],
  partitionCounts: ReadonlyMap<string, number>,
): Assignment {
  const total = new Map<string, number>(members.map((m) => [m.memberId, 0]));
  const byId = new Map(members.map((m) => [m.memberId, m]));
  for (const topic of topics) {
    const n = partitionCounts.get(topic)!;
    const subscribed = membersByTopic(members, topic);
    if (subscribed.length === 0 || n === 0) continue;
    const owned = new Map<string, number[]>();
    const taken = new Set<number>();
    for (const id of subscribed) {
      // A partition two members claim (a stale view) stays with the first by id.
      const mine: number[] = [];
      for (const o of byId.get(id)!.owned ?? []) {
        if (o.topic !== topic || o.partition < 0 || o.partition >= n || taken.has(o.partition)) continue;
        taken.add(o.partition);
        mine.push(o.partition);
      }
      mine.sort((a, b) => a - b);
      owned.set(id, mine);
    }
    const base = Math.floor(n / subscribed.length);
    const extra = n % subscribed.length;
    const order = [...subscribed].sort(
      (a, b) => owned.get(b)!.length - owned.get(a)!.length || total.get(a)! - total.get(b)! || (a < b ? -1 : a > b ? 1 : 0),
    );
    const quota = new Map(order.map((id, i) => [id, base + (i < extra ? 1 : 0)]));
    const assigned = new Map<string, number[]>();
    const kept = new Set<number>();
    for (const id of subscribed) {
      const keep = owned.get(id)!.slice(0, quota.get(id)!);
      keep.forEach((p) => kept.add(p));
      assigned.set(id, keep);
    }
    const free: number[] = [];
    for (let p = 0; p < n; p++) if (!kept.has(p)) free.push(p);
    const fillOrder = [...subscribed].sort((a, b) => total.get(a)! - total.get(b)! || (a < b ? -1 : a > b ? 1 : 0));
    for (const id of fillOrder) {
      const mine = assigned.get(id)!;
      while (mine.length < quota.get(id)! && free.length > 0) mine.push(free.shift()!);
    }
    for (const id of subscribed) {
      const mine = assigned.get(id)!.sort((a, b) => a - b);
      for (const p of mine) result.get(id)!.push({ topic, partition: p });
      total.set(id, total.get(id)! + mine.length);
    }
  }
  return result;
}
