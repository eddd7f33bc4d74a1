/**
 * The checker: reads a merged history (see history.ts) and names every broken guarantee.
 *
 * Each detector is a small pure function over the history, so each can be proven to fire on a
 * hand-built history (checker.spec.ts). The detectors and the guarantee each one checks:
 *
 * | detector        | fires when                                                                     | invariant |
 * |-----------------|--------------------------------------------------------------------------------|-----------|
 * | lost            | a send acknowledged `ok` is not in the log at the end                           | 6         |
 * | false-failure   | a send reported as failed (not `unknown`) is in the log                         | producer contract |
 * | log-duplicate   | a value sent once is in the log twice                                          | idempotence |
 * | aborted-read    | a record of an aborted / rolled-back send is in the log or was delivered         | 1, 5      |
 * | partial-txn     | some but not all records of a committed transaction are in the log             | 5         |
 * | read-twice      | a group delivered one offset twice with no rebalance, crash, fault or handler error in between | 3, 4 |
 * | effects         | an exactly-once handler's effect for a record was applied ≠ 1 time              | 4         |
 * | order           | per key, offsets out of send order in the log, or out of order in one member's stream | 2   |
 * | skipped         | a gap in a partition's offsets, a forward jump in one member's stream, or a record a drained group never got | 1 |
 * | double-owner    | two sessions hold a partition's lock at once, or two members interleave committed work on one partition with no rebalance between | 3 |
 * | compaction      | a compacted topic's log at the end is not exactly the latest acknowledged record of each key; a record that was not superseded is missing from it; a reader of it from the start did not end with the latest value of every key | 6 |
 * | not-routed      | a poison or hostile record did not reach the dead-letter topic exactly once     | 7         |
 * | crash           | a worker died on its own (not killed by the harness)                            | —         |
 * | stalled         | the harness gave up waiting (a group did not drain in time)                     | liveness  |
 *
 * "Between" uses the wall clock of one machine (all processes share it); the harness writes its
 * own events (faults, samples) with the same clock.
 */
import type { HistoryEvent } from './history.js';

export type ViolationKind =
  | 'lost'
  | 'false-failure'
  | 'log-duplicate'
  | 'aborted-read'
  | 'partial-txn'
  | 'read-twice'
  | 'effects'
  | 'order'
  | 'skipped'
  | 'double-owner'
  | 'compaction'
  | 'not-routed'
  | 'crash'
  | 'stalled';

export const VIOLATION_KINDS: readonly ViolationKind[] = [
  'lost',
  'false-failure',
  'log-duplicate',
  'aborted-read',
  'partial-txn',
  'read-twice',
  'effects',
  'order',
  'skipped',
  'double-owner',
  'compaction',
  'not-routed',
  'crash',
  'stalled',
];

export interface Violation {
  readonly kind: ViolationKind;
  readonly detail: string;
}

export interface CheckOptions {
  /** Groups whose handlers write their effect through `tx`, with their topics: every record's effect must be applied exactly once (0 for poison or hostile records). */
  readonly exactlyOnce?: Readonly<Record<string, readonly string[]>>;
  /** Groups that consumed their topics to the end: every record (except hostile ones, which no handler can take) must have been delivered to them. */
  readonly drained?: Readonly<Record<string, readonly string[]>>;
  /** Source topic → its dead-letter topic: every poison or hostile record of the source must be in the dead-letter topic exactly once. */
  readonly deadLetter?: Readonly<Record<string, string>>;
  /**
   * Compacted topics, given a last pass that compacted everything: a record superseded by a later
   * acknowledged record of its key may be missing from the log and from a reader's stream (a gap,
   * not a skip); the log at the end must hold exactly the latest acknowledged record of each key.
   */
  readonly compacted?: readonly string[];
  /** Groups that tailed the head of their topics (within `min.compaction.lag.ms`): every acknowledged record must have been delivered to them. */
  readonly sawEvery?: Readonly<Record<string, readonly string[]>>;
  /** Groups that read compacted topics from the start to the end: the last value each got per key must be the latest acknowledged one. */
  readonly latestPerKey?: Readonly<Record<string, readonly string[]>>;
}

export interface CheckResult {
  readonly violations: readonly Violation[];
  readonly counts: Readonly<Record<ViolationKind, number>>;
  /** Records in the log at the end (all topics). */
  readonly records: number;
  readonly sends: number;
  readonly acks: Readonly<Record<'ok' | 'failed' | 'unknown' | 'aborted', number>>;
  readonly deliveries: number;
  readonly faults: number;
  /** Per fault: ms from its injection to the first progress after it ended. */
  readonly recoveryMs: readonly number[];
  readonly recoveryP99: number | null;
}

type Ev<K extends HistoryEvent['e']> = HistoryEvent extends infer H ? (H extends { e: infer E } ? (K extends E ? H & { e: K } : never) : never) : never;
const of = <K extends HistoryEvent['e']>(history: readonly HistoryEvent[], kind: K): Ev<K>[] =>
  history.filter((x): x is Ev<K> => x.e === kind);
const tv = (topic: string, v: string) => `${topic}\u0000${v}`;
const byTime = (a: { t: number }, b: { t: number }) => a.t - b.t;

/** The log at the end, indexed. */
class FinalLog {
  readonly byValue = new Map<string, Ev<'log'>[]>();
  readonly byPartition = new Map<string, Ev<'log'>[]>();
  readonly byOffset = new Map<string, Ev<'log'>>();
  constructor(history: readonly HistoryEvent[]) {
    for (const r of of(history, 'log')) {
      const key = tv(r.topic, r.v);
      (this.byValue.get(key) ?? this.byValue.set(key, []).get(key)!).push(r);
      const pk = `${r.topic}/${r.p}`;
      (this.byPartition.get(pk) ?? this.byPartition.set(pk, []).get(pk)!).push(r);
      this.byOffset.set(`${pk}@${r.o}`, r);
    }
    for (const list of this.byPartition.values()) list.sort((a, b) => a.o - b.o);
  }
  has(topic: string, v: string): boolean {
    return this.byValue.has(tv(topic, v));
  }
  topicRecords(topic: string): Ev<'log'>[] {
    const out: Ev<'log'>[] = [];
    for (const [pk, list] of this.byPartition) if (pk.slice(0, pk.lastIndexOf('/')) === topic) out.push(...list);
    return out;
  }
}

/** Times at which something may legitimately make a group re-deliver or move partitions. */
class Disturbances {
  readonly #byGroup = new Map<string, number[]>();
  readonly #byProc = new Map<string, number[]>();
  readonly #global: number[] = [];

  constructor(history: readonly HistoryEvent[]) {
    const groupOfProc = new Map<string, string>();
    for (const x of history) if ((x.e === 'deliver' || x.e === 'join') && !groupOfProc.has(x.proc)) groupOfProc.set(x.proc, x.g);
    const add = (map: Map<string, number[]>, key: string, t: number) => (map.get(key) ?? map.set(key, []).get(key)!).push(t);
    for (const x of history) {
      switch (x.e) {
        case 'rebalance':
        case 'join':
        case 'crash':
        case 'stop':
        case 'handler-error':
          add(this.#byGroup, x.g, x.t);
          add(this.#byProc, x.proc, x.t);
          break;
        case 'exit': {
          const g = groupOfProc.get(x.proc);
          if (g !== undefined) add(this.#byGroup, g, x.t);
          add(this.#byProc, x.proc, x.t);
          break;
        }
        case 'fault':
          if (x.affects === 'producers') break;
          if (!x.targets || x.targets.length === 0) this.#global.push(x.t, x.until ?? x.t);
          else
            for (const target of x.targets) {
              add(this.#byProc, target, x.t);
              add(this.#byProc, target, x.until ?? x.t);
              const g = groupOfProc.get(target);
              if (g !== undefined) add(this.#byGroup, g, x.t), add(this.#byGroup, g, x.until ?? x.t);
            }
          break;
        default:
          break;
      }
    }
    for (const list of [...this.#byGroup.values(), ...this.#byProc.values(), this.#global]) list.sort((a, b) => a - b);
  }

  static #any(list: readonly number[] | undefined, from: number, to: number): boolean {
    if (!list || list.length === 0) return false;
    let lo = 0;
    let hi = list.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (list[mid]! < from) lo = mid + 1;
      else hi = mid;
    }
    return lo < list.length && list[lo]! <= to;
  }

  /** Anything that may disturb group `g` in [from, to]: its membership changes, handler errors, exits, consumer faults. */
  group(g: string, from: number, to: number): boolean {
    return Disturbances.#any(this.#byGroup.get(g), from, to) || Disturbances.#any(this.#global, from, to);
  }

  /** Anything that may have taken partitions from process `proc` in [from, to]. */
  proc(proc: string, from: number, to: number): boolean {
    return Disturbances.#any(this.#byProc.get(proc), from, to) || Disturbances.#any(this.#global, from, to);
  }
}

function sendsByValue(history: readonly HistoryEvent[]): Map<string, Ev<'send'>> {
  const map = new Map<string, Ev<'send'>>();
  for (const s of of(history, 'send')) map.set(tv(s.topic, s.v), s);
  return map;
}

/** What producers were told about the keys of a topic: the record at each acknowledged offset, and the latest record of each key. */
class Acknowledged {
  readonly byOffset = new Map<string, { k: string; v: string; o: number }>();
  /** `${topic}/${p}/${k}` → the acknowledged record of that key with the highest offset. */
  readonly latest = new Map<string, { k: string; v: string; o: number }>();
  constructor(history: readonly HistoryEvent[]) {
    const sent = sendsByValue(history);
    for (const a of of(history, 'ack')) {
      const k = sent.get(tv(a.topic, a.v))?.k;
      if (a.outcome !== 'ok' || a.p === undefined || a.o === undefined || k === undefined) continue;
      const r = { k, v: a.v, o: a.o };
      this.byOffset.set(`${a.topic}/${a.p}@${a.o}`, r);
      const key = `${a.topic}/${a.p}/${k}`;
      if ((this.latest.get(key)?.o ?? -1) < a.o) this.latest.set(key, r);
    }
  }
  /** The acknowledged record at this offset has a later acknowledged record of its key (so compaction may remove it). */
  superseded(topic: string, p: number, o: number): boolean {
    const r = this.byOffset.get(`${topic}/${p}@${o}`);
    return r !== undefined && (this.latest.get(`${topic}/${p}/${r.k}`)?.o ?? -1) > o;
  }
}

export function detectLost(history: readonly HistoryEvent[], log = new FinalLog(history), options: CheckOptions = {}, acked = new Acknowledged(history)): Violation[] {
  const compacted = new Set(options.compacted ?? []);
  return of(history, 'ack')
    .filter((a) => a.outcome === 'ok' && !log.has(a.topic, a.v))
    .filter((a) => !(compacted.has(a.topic) && a.p !== undefined && a.o !== undefined && acked.superseded(a.topic, a.p, a.o)))
    .map((a) => ({ kind: 'lost' as const, detail: `${a.topic} value ${a.v} acknowledged by ${a.proc} at ${a.t} is not in the log` }));
}

export function detectFalseFailures(history: readonly HistoryEvent[], log = new FinalLog(history)): Violation[] {
  return of(history, 'ack')
    .filter((a) => a.outcome === 'failed' && log.has(a.topic, a.v))
    .map((a) => ({ kind: 'false-failure' as const, detail: `${a.topic} value ${a.v} was reported failed (${a.code ?? 'no code'}) to ${a.proc} but is in the log: the outcome was unknown, not failed` }));
}

export function detectLogDuplicates(history: readonly HistoryEvent[], log = new FinalLog(history)): Violation[] {
  const sent = sendsByValue(history);
  const out: Violation[] = [];
  for (const [key, records] of log.byValue) {
    if (records.length > 1 && sent.has(key)) {
      out.push({ kind: 'log-duplicate', detail: `${records[0]!.topic} value ${records[0]!.v} sent once is in the log ${records.length} times (${records.map((r) => `${r.p}@${r.o}`).join(', ')})` });
    }
  }
  return out;
}

export function detectAbortedReads(history: readonly HistoryEvent[], log = new FinalLog(history)): Violation[] {
  const aborted = new Set(of(history, 'ack').filter((a) => a.outcome === 'aborted').map((a) => tv(a.topic, a.v)));
  const out: Violation[] = [];
  for (const key of aborted) {
    for (const r of log.byValue.get(key) ?? []) out.push({ kind: 'aborted-read', detail: `aborted ${r.topic} value ${r.v} is in the log at ${r.p}@${r.o}` });
  }
  for (const d of of(history, 'deliver')) {
    if (aborted.has(tv(d.topic, d.v))) out.push({ kind: 'aborted-read', detail: `aborted ${d.topic} value ${d.v} was delivered to ${d.proc} (${d.g}) at ${d.p}@${d.o}` });
  }
  return out;
}

export function detectPartialTransactions(history: readonly HistoryEvent[], log = new FinalLog(history)): Violation[] {
  const acks = new Map(of(history, 'ack').map((a) => [tv(a.topic, a.v), a]));
  const txns = new Map<string, Ev<'send'>[]>();
  for (const s of of(history, 'send')) if (s.txn !== undefined) (txns.get(s.txn) ?? txns.set(s.txn, []).get(s.txn)!).push(s);
  const out: Violation[] = [];
  for (const [txn, sends] of txns) {
    const present = sends.filter((s) => log.has(s.topic, s.v)).length;
    if (present > 0 && present < sends.length) {
      const outcome = acks.get(tv(sends[0]!.topic, sends[0]!.v))?.outcome ?? 'none (process killed)';
      out.push({ kind: 'partial-txn', detail: `transaction ${txn} (${outcome}): ${present} of its ${sends.length} records are in the log` });
    }
  }
  return out;
}

export function detectReadTwice(history: readonly HistoryEvent[], disturbances = new Disturbances(history)): Violation[] {
  const seen = new Map<string, Ev<'deliver'>>();
  const out: Violation[] = [];
  for (const d of of(history, 'deliver').sort(byTime)) {
    const key = `${d.g}/${d.topic}/${d.p}@${d.o}`;
    const before = seen.get(key);
    if (before && !disturbances.group(d.g, before.t, d.t)) {
      out.push({ kind: 'read-twice', detail: `group ${d.g} got ${d.topic}[${d.p}]@${d.o} at ${before.t} (${before.proc}) and again at ${d.t} (${d.proc}) with no rebalance, crash, fault or handler error between` });
    }
    seen.set(key, d);
  }
  return out;
}

export function detectEffects(history: readonly HistoryEvent[], options: CheckOptions, log = new FinalLog(history)): Violation[] {
  const sent = sendsByValue(history);
  const out: Violation[] = [];
  for (const [g, topics] of Object.entries(options.exactlyOnce ?? {})) {
    const effects = new Map<string, number>();
    for (const x of of(history, 'effect')) if (x.g === g) effects.set(x.v, (effects.get(x.v) ?? 0) + x.n);
    const expected = new Set<string>();
    for (const topic of topics) {
      for (const r of log.topicRecords(topic)) {
        const s = sent.get(tv(topic, r.v));
        const want = s?.poison || s?.hostile ? 0 : 1;
        expected.add(r.v);
        const got = effects.get(r.v) ?? 0;
        if (got !== want) out.push({ kind: 'effects', detail: `group ${g}: ${topic}[${r.p}]@${r.o} (${r.v}) applied ${got} time(s), expected ${want}` });
      }
    }
    for (const [v, n] of effects) if (!expected.has(v) && n !== 0) out.push({ kind: 'effects', detail: `group ${g}: effect for ${v} applied ${n} time(s) but no such record is in its topics` });
  }
  return out;
}

export function detectOrder(history: readonly HistoryEvent[], disturbances = new Disturbances(history), log = new FinalLog(history)): Violation[] {
  const out: Violation[] = [];
  // Producer side: one producer's acknowledged sends of one key must sit in the log in send order.
  const sent = sendsByValue(history);
  const last = new Map<string, Ev<'log'>>();
  for (const a of of(history, 'ack').sort(byTime)) {
    if (a.outcome !== 'ok') continue;
    const s = sent.get(tv(a.topic, a.v));
    if (s?.k === undefined) continue;
    const r = log.byValue.get(tv(a.topic, a.v))?.[0];
    if (!r) continue;
    const key = `${a.proc}/${a.topic}/${s.k}`;
    const prev = last.get(key);
    if (prev && (prev.p !== r.p || prev.o >= r.o)) {
      out.push({ kind: 'order', detail: `key ${s.k} of ${a.proc}: ${prev.v} (${prev.p}@${prev.o}) was acknowledged before ${r.v} (${r.p}@${r.o})` });
    }
    last.set(key, r);
  }
  // Consumer side: within one member's stream of a partition, a key's offsets only go up between disturbances.
  const streams = new Map<string, { t: number; byKey: Map<string, number> }>();
  for (const d of of(history, 'deliver').sort(byTime)) {
    if (d.k === undefined) continue;
    const key = `${d.proc}/${d.g}/${d.topic}/${d.p}`;
    let stream = streams.get(key);
    if (!stream || disturbances.proc(d.proc, stream.t, d.t) || disturbances.group(d.g, stream.t, d.t)) {
      stream = { t: d.t, byKey: new Map() };
      streams.set(key, stream);
    }
    const prev = stream.byKey.get(d.k);
    if (prev !== undefined && prev > d.o) {
      out.push({ kind: 'order', detail: `${d.proc} (${d.g}) got key ${d.k} at ${d.topic}[${d.p}]@${d.o} after @${prev}` });
    }
    stream.byKey.set(d.k, d.o);
    stream.t = d.t;
  }
  return out;
}

export function detectSkipped(history: readonly HistoryEvent[], options: CheckOptions, disturbances = new Disturbances(history), log = new FinalLog(history), acked = new Acknowledged(history)): Violation[] {
  const out: Violation[] = [];
  const sent = sendsByValue(history);
  const compacted = new Set(options.compacted ?? []);
  // Offsets [from, to) missing from a compacted topic: each must hold a record a later one of its key superseded.
  const removedByCompaction = (topic: string, p: number, from: number, to: number) => {
    if (!compacted.has(topic)) return false;
    for (let o = from; o < to; o++) if (!acked.superseded(topic, p, o)) return false;
    return true;
  };
  // The log: offsets are dense from 0 (only compaction removes records, and only superseded ones).
  for (const [pk, records] of log.byPartition) {
    const { topic, p } = records[0]!;
    records.forEach((r, i) => {
      const before = i === 0 ? -1 : records[i - 1]!.o;
      if (r.o !== before + 1 && !removedByCompaction(topic, p, before + 1, r.o)) out.push({ kind: 'skipped', detail: `${pk}: offset ${r.o} follows ${i === 0 ? 'nothing' : before}` });
    });
  }
  // One member's stream: the next offset it gets is the one after the last, unless something happened between.
  const streams = new Map<string, Ev<'deliver'>>();
  for (const d of of(history, 'deliver').sort(byTime)) {
    const key = `${d.proc}/${d.g}/${d.topic}/${d.p}`;
    const prev = streams.get(key);
    streams.set(key, d);
    if (!prev || d.o <= prev.o + 1) continue;
    if (disturbances.proc(d.proc, prev.t, d.t) || disturbances.group(d.g, prev.t, d.t)) continue;
    let undeliverable = true;
    for (let o = prev.o + 1; o < d.o; o++) {
      const r = log.byOffset.get(`${d.topic}/${d.p}@${o}`);
      if (!r || !sent.get(tv(d.topic, r.v))?.hostile) undeliverable = false;
    }
    if (!undeliverable && !removedByCompaction(d.topic, d.p, prev.o + 1, d.o)) out.push({ kind: 'skipped', detail: `${d.proc} (${d.g}) jumped from ${d.topic}[${d.p}]@${prev.o} to @${d.o}` });
  }
  // A group at the head got every acknowledged record.
  for (const [g, topics] of Object.entries(options.sawEvery ?? {})) {
    const delivered = new Set(of(history, 'deliver').filter((d) => d.g === g).map((d) => tv(d.topic, d.v)));
    for (const a of of(history, 'ack')) {
      if (a.outcome === 'ok' && topics.includes(a.topic) && !delivered.has(tv(a.topic, a.v))) out.push({ kind: 'skipped', detail: `group ${g} at the head never got ${a.topic} value ${a.v} (acknowledged${a.o !== undefined ? ` at ${a.p}@${a.o}` : ''})` });
    }
  }
  // A drained group got every record of its topics at least once.
  for (const [g, topics] of Object.entries(options.drained ?? {})) {
    const delivered = new Set(of(history, 'deliver').filter((d) => d.g === g).map((d) => `${d.topic}/${d.p}@${d.o}`));
    for (const topic of topics) {
      for (const r of log.topicRecords(topic)) {
        if (sent.get(tv(topic, r.v))?.hostile) continue;
        if (!delivered.has(`${topic}/${r.p}@${r.o}`)) out.push({ kind: 'skipped', detail: `group ${g} never got ${topic}[${r.p}]@${r.o} (${r.v})` });
      }
    }
  }
  return out;
}

/** How long after a fault hit a member its in-flight batch may still be handled (then fenced at commit). */
export const ZOMBIE_WINDOW_MS = 5_000;

export function detectDoubleOwners(history: readonly HistoryEvent[], disturbances = new Disturbances(history)): Violation[] {
  const out: Violation[] = [];
  for (const s of of(history, 'owners')) {
    if (new Set(s.holders).size > 1) out.push({ kind: 'double-owner', detail: `at ${s.t} group ${s.g} ${s.topic}[${s.p}] lock held by sessions ${s.holders.join(', ')}` });
  }
  // The group's own view: committed work on one partition goes A … B … A with nothing taking it
  // from A between. Only deliveries whose batch the member then committed count: a zombie (a
  // member whose session was terminated or expired) may finish its batch in hand, but its commit
  // is fenced and its writes roll back — that is allowed; two members both committing is not.
  const commits = new Map<string, number[][]>();
  for (const c of of(history, 'commit')) {
    const key = `${c.proc}/${c.g}/${c.topic}/${c.p}`;
    (commits.get(key) ?? commits.set(key, []).get(key)!).push([c.t, c.o]);
  }
  const ends = new Map<string, number[]>();
  for (const x of history) {
    if (x.e === 'crash' || x.e === 'join' || x.e === 'stop' || x.e === 'exit') (ends.get(x.proc) ?? ends.set(x.proc, []).get(x.proc)!).push(x.t);
  }
  for (const list of commits.values()) list.sort((a, b) => a[0]! - b[0]!);
  for (const list of ends.values()) list.sort((a, b) => a - b);
  const committedWork = (d: Ev<'deliver'>) => {
    const c = commits.get(`${d.proc}/${d.g}/${d.topic}/${d.p}`)?.find(([t]) => t! >= d.t);
    const end = ends.get(d.proc)?.find((t) => t >= d.t);
    return c !== undefined && c[1]! > d.o && (end === undefined || c[0]! <= end);
  };
  const lastByPartition = new Map<string, Ev<'deliver'>>();
  const lastByProc = new Map<string, Ev<'deliver'>>();
  for (const d of of(history, 'deliver').filter(committedWork).sort(byTime)) {
    const pk = `${d.g}/${d.topic}/${d.p}`;
    const prev = lastByPartition.get(pk);
    const mine = lastByProc.get(`${pk}/${d.proc}`);
    if (
      prev &&
      mine &&
      prev.proc !== d.proc &&
      mine.t < prev.t &&
      !disturbances.proc(d.proc, mine.t, d.t) &&
      // A zombie: the other member lost its session (a fault hit it) and finishes the batch in hand; its commit is fenced.
      !disturbances.proc(prev.proc, mine.t - ZOMBIE_WINDOW_MS, prev.t)
    ) {
      out.push({ kind: 'double-owner', detail: `${d.topic}[${d.p}] of group ${d.g}: ${d.proc} delivered @${mine.o} at ${mine.t}, ${prev.proc} @${prev.o} at ${prev.t}, then ${d.proc} again @${d.o} at ${d.t}, nothing took it from ${d.proc} between` });
    }
    lastByPartition.set(pk, d);
    lastByProc.set(`${pk}/${d.proc}`, d);
  }
  return out;
}

/**
 * Compaction: the log of a compacted topic at the end (after a last pass that compacted it all)
 * holds one record per key, the latest acknowledged one; a reader from the start ends with the
 * latest value of every key; and within a stream of one member, offsets only go up.
 */
export function detectCompaction(history: readonly HistoryEvent[], options: CheckOptions, disturbances = new Disturbances(history), log = new FinalLog(history), acked = new Acknowledged(history)): Violation[] {
  const out: Violation[] = [];
  const latestOf = (topic: string) => [...acked.latest].filter(([key]) => key.slice(0, key.indexOf('/')) === topic);
  for (const topic of options.compacted ?? []) {
    const byKey = new Map<string, Ev<'log'>[]>();
    for (const r of log.topicRecords(topic)) {
      const key = `${topic}/${r.p}/${r.k ?? ''}`;
      (byKey.get(key) ?? byKey.set(key, []).get(key)!).push(r);
    }
    for (const [key, records] of byKey) {
      const want = acked.latest.get(key);
      if (records.length !== 1) out.push({ kind: 'compaction', detail: `${key}: ${records.length} records in the log at the end (${records.map((r) => `@${r.o} ${r.v}`).join(', ')}), expected 1` });
      else if (want && records[0]!.v !== want.v) out.push({ kind: 'compaction', detail: `${key}: the log ends with ${records[0]!.v} @${records[0]!.o}, the latest acknowledged is ${want.v} @${want.o}` });
    }
    for (const [key, want] of latestOf(topic)) if (!byKey.has(key)) out.push({ kind: 'compaction', detail: `${key}: its latest acknowledged record ${want.v} @${want.o} is not in the log` });
  }
  for (const [g, topics] of Object.entries(options.latestPerKey ?? {})) {
    const last = new Map<string, Ev<'deliver'>>();
    for (const d of of(history, 'deliver')) {
      if (d.g !== g || d.k === undefined) continue;
      const key = `${d.topic}/${d.p}/${d.k}`;
      if ((last.get(key)?.o ?? -1) < d.o) last.set(key, d);
    }
    for (const topic of topics) {
      for (const [key, want] of latestOf(topic)) {
        const got = last.get(key);
        if (got?.v !== want.v) out.push({ kind: 'compaction', detail: `group ${g} ended with ${got ? `${got.v} @${got.o}` : 'nothing'} for ${key}, the latest acknowledged is ${want.v} @${want.o}` });
      }
    }
  }
  // Offsets only go up within one member's stream of a partition (between disturbances).
  const readers = new Set([...Object.keys(options.sawEvery ?? {}), ...Object.keys(options.latestPerKey ?? {})]);
  const streams = new Map<string, Ev<'deliver'>>();
  for (const d of of(history, 'deliver').sort(byTime)) {
    if (!readers.has(d.g)) continue;
    const key = `${d.proc}/${d.g}/${d.topic}/${d.p}`;
    const prev = streams.get(key);
    streams.set(key, d);
    if (prev && d.o <= prev.o && !disturbances.proc(d.proc, prev.t, d.t) && !disturbances.group(d.g, prev.t, d.t)) {
      out.push({ kind: 'order', detail: `${d.proc} (${d.g}) got ${d.topic}[${d.p}]@${d.o} after @${prev.o}: offsets went down` });
    }
  }
  return out;
}

export function detectNotRouted(history: readonly HistoryEvent[], options: CheckOptions, log = new FinalLog(history)): Violation[] {
  const out: Violation[] = [];
  for (const [source, dlq] of Object.entries(options.deadLetter ?? {})) {
    for (const s of of(history, 'send')) {
      if (s.topic !== source || !(s.poison || s.hostile) || !log.has(source, s.v)) continue;
      const n = log.byValue.get(tv(dlq, s.v))?.length ?? 0;
      if (n !== 1) out.push({ kind: 'not-routed', detail: `${s.poison ? 'poison' : 'hostile'} record ${s.v} of ${source} is in ${dlq} ${n} time(s), expected once` });
    }
  }
  return out;
}

export function detectCrashes(history: readonly HistoryEvent[]): Violation[] {
  const out: Violation[] = [];
  for (const x of of(history, 'exit')) {
    if (!x.expected && (x.code !== 0 || x.signal !== null)) out.push({ kind: 'crash', detail: `${x.proc} exited on its own (code ${x.code}, signal ${x.signal})` });
  }
  for (const x of of(history, 'crash')) {
    if (x.detail?.startsWith('fatal')) out.push({ kind: 'crash', detail: `${x.proc} (${x.g}) stopped consuming: ${x.detail}` });
  }
  return out;
}

export function detectStalls(history: readonly HistoryEvent[]): Violation[] {
  return of(history, 'stall').map((x) => ({ kind: 'stalled' as const, detail: x.detail }));
}

/**
 * Milliseconds from each fault to the first progress after it ended — counted only when there was
 * work to resume: for consumers, a record acknowledged before the fault ended and not yet delivered
 * when it began; for producers, a send still to be answered after the fault began.
 */
export function recoveryTimes(history: readonly HistoryEvent[]): number[] {
  const okAcks = of(history, 'ack').filter((a) => a.outcome === 'ok').sort(byTime);
  const answered = of(history, 'ack').map((a) => a.t).sort((a, b) => a - b);
  const deliveries = of(history, 'deliver').sort(byTime);
  const firstDelivery = new Map<string, number>();
  for (const d of deliveries) if (!firstDelivery.has(tv(d.topic, d.v))) firstDelivery.set(tv(d.topic, d.v), d.t);
  const firstAfter = (list: readonly number[], t: number) => {
    let lo = 0;
    let hi = list.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (list[mid]! <= t) lo = mid + 1;
      else hi = mid;
    }
    return lo < list.length ? list[lo]! : undefined;
  };
  const ackTimes = okAcks.map((a) => a.t);
  const deliveryTimes = deliveries.map((d) => d.t);
  const out: number[] = [];
  for (const f of of(history, 'fault')) {
    const end = f.until ?? f.t;
    const candidates: number[] = [];
    if (f.affects !== 'consumers' && firstAfter(answered, f.t) !== undefined) {
      const next = firstAfter(ackTimes, end);
      if (next !== undefined) candidates.push(next);
    }
    if (f.affects !== 'producers') {
      const pending = okAcks.some((a) => a.t <= end && (firstDelivery.get(tv(a.topic, a.v)) ?? Infinity) > f.t);
      const next = pending ? firstAfter(deliveryTimes, end) : undefined;
      if (next !== undefined) candidates.push(next);
    }
    if (candidates.length > 0) out.push(Math.min(...candidates) - f.t);
  }
  return out;
}

export function percentile(values: readonly number[], p: number): number | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

/** Runs every detector. */
export function check(history: readonly HistoryEvent[], options: CheckOptions = {}): CheckResult {
  const log = new FinalLog(history);
  const disturbances = new Disturbances(history);
  const acked = new Acknowledged(history);
  const violations = [
    ...detectLost(history, log, options, acked),
    ...detectFalseFailures(history, log),
    ...detectLogDuplicates(history, log),
    ...detectAbortedReads(history, log),
    ...detectPartialTransactions(history, log),
    ...detectReadTwice(history, disturbances),
    ...detectEffects(history, options, log),
    ...detectOrder(history, disturbances, log),
    ...detectSkipped(history, options, disturbances, log, acked),
    ...detectDoubleOwners(history, disturbances),
    ...detectCompaction(history, options, disturbances, log, acked),
    ...detectNotRouted(history, options, log),
    ...detectCrashes(history),
    ...detectStalls(history),
  ];
  const counts = Object.fromEntries(VIOLATION_KINDS.map((k) => [k, 0])) as Record<ViolationKind, number>;
  for (const v of violations) counts[v.kind]++;
  const acks = { ok: 0, failed: 0, unknown: 0, aborted: 0 };
  for (const a of of(history, 'ack')) acks[a.outcome]++;
  const recoveryMs = recoveryTimes(history);
  return {
    violations,
    counts,
    records: of(history, 'log').length,
    sends: of(history, 'send').length,
    acks,
    deliveries: of(history, 'deliver').length,
    faults: of(history, 'fault').length,
    recoveryMs,
    recoveryP99: percentile(recoveryMs, 99),
  };
}
