/**
 * Each detector of the checker, fed a hand-built history with exactly its kind of violation, must
 * fire — and a clean history of the same shape must pass. (A checker that never fires would make
 * every chaos run green.)
 */
import { describe, expect, it } from 'vitest';
import { check, percentile, type ViolationKind } from './checker.js';
import type { HistoryEvent } from './history.js';

const send = (v: string, extra: Partial<Extract<HistoryEvent, { e: 'send' }>> = {}): HistoryEvent => ({ e: 'send', t: 1, proc: 'p1', topic: 't', v, k: 'k1', ...extra });
const ack = (v: string, outcome: 'ok' | 'failed' | 'unknown' | 'aborted', t = 2, proc = 'p1'): HistoryEvent => ({ e: 'ack', t, proc, topic: 't', v, outcome });
const log = (v: string, o: number, p = 0, topic = 't'): HistoryEvent => ({ e: 'log', topic, p, o, v, k: 'k1' });
const deliver = (v: string, o: number, t: number, proc = 'c1', p = 0, k = 'k1'): HistoryEvent => ({ e: 'deliver', t, proc, g: 'g', m: `m-${proc}`, topic: 't', p, o, v, k });
const effect = (v: string, n: number): HistoryEvent => ({ e: 'effect', g: 'g', v, n });

/** A clean run: two records sent, acknowledged, stored, delivered once each, effect applied once each. */
function clean(): HistoryEvent[] {
  return [
    send('a'),
    ack('a', 'ok', 2),
    send('b'),
    ack('b', 'ok', 3),
    log('a', 0),
    log('b', 1),
    { e: 'join', t: 4, proc: 'c1', g: 'g', m: 'm-c1' },
    deliver('a', 0, 5),
    deliver('b', 1, 6),
    effect('a', 1),
    effect('b', 1),
    { e: 'owners', t: 7, g: 'g', topic: 't', p: 0, holders: [100], owner: 'm-c1', ownerPid: 100 },
  ];
}
const options = { exactlyOnce: { g: ['t'] }, drained: { g: ['t'] } };

function kinds(history: HistoryEvent[]): ViolationKind[] {
  return [...new Set(check(history, options).violations.map((v) => v.kind))].sort();
}

describe('checker', () => {
  it('passes a clean history', () => {
    const result = check(clean(), options);
    expect(result.violations).toEqual([]);
    expect(result.records).toBe(2);
    expect(result.acks.ok).toBe(2);
  });

  it('lost: an acknowledged record missing from the log', () => {
    const h = clean().filter((x) => !(x.e === 'log' && x.v === 'b'));
    expect(kinds(h.filter((x) => !(x.e === 'deliver' && x.v === 'b') && !(x.e === 'effect' && x.v === 'b')))).toEqual(['lost']);
  });

  it('an unknown outcome may be missing from the log without being lost', () => {
    const h = [...clean(), send('c'), ack('c', 'unknown', 8)];
    expect(kinds(h)).toEqual([]);
  });

  it('false-failure: a send reported failed that is in the log', () => {
    const h = clean().map((x) => (x.e === 'ack' && x.v === 'b' ? { ...x, outcome: 'failed' as const, code: 'CONNECTION_ERROR' } : x));
    expect(kinds(h)).toEqual(['false-failure']);
  });

  it('log-duplicate: a value sent once stored twice', () => {
    const h = [...clean(), log('b', 2), deliver('b', 2, 6.5)];
    // The second copy is also an extra effect target and an order regression for key k1.
    expect(kinds(h)).toContain('log-duplicate');
  });

  it('aborted-read: a rolled-back record in the log, or delivered', () => {
    const inLog = [...clean(), send('x'), ack('x', 'aborted', 8), log('x', 2), deliver('x', 2, 9), effect('x', 1)];
    expect(kinds(inLog)).toEqual(['aborted-read']);
    expect(check(inLog, options).violations.filter((v) => v.kind === 'aborted-read')).toHaveLength(2);
  });

  it('partial-txn: some records of a transaction visible, others not', () => {
    const h = [...clean(), send('x1', { txn: 'T1' }), send('x2', { txn: 'T1', topic: 'u' }), ack('x1', 'ok', 8), { e: 'ack', t: 8, proc: 'p1', topic: 'u', v: 'x2', outcome: 'unknown' } as HistoryEvent, log('x1', 2), deliver('x1', 2, 9), effect('x1', 1)];
    expect(kinds(h)).toEqual(['partial-txn']);
  });

  it('read-twice: one offset delivered twice to a group with nothing in between', () => {
    const h = [...clean(), deliver('b', 1, 6.5)];
    expect(kinds(h)).toEqual(['read-twice']);
  });

  it('a redelivery after a rebalance, a fault or a handler error is allowed', () => {
    for (const between of [
      { e: 'rebalance', t: 6.2, proc: 'c1', g: 'g', m: 'm-c1' },
      { e: 'fault', t: 6.2, kind: 'kill', affects: 'consumers' },
      { e: 'handler-error', t: 6.2, proc: 'c1', g: 'g', m: 'm-c1', topic: 't', p: 0, o: 1, v: 'b' },
    ] as HistoryEvent[]) {
      expect(kinds([...clean(), between, deliver('b', 1, 6.5)])).toEqual([]);
    }
  });

  it('effects: applied twice, or not at all', () => {
    expect(kinds(clean().map((x) => (x.e === 'effect' && x.v === 'a' ? { ...x, n: 2 } : x)))).toEqual(['effects']);
    expect(kinds(clean().filter((x) => !(x.e === 'effect' && x.v === 'a')))).toEqual(['effects']);
  });

  it('a poison record must have no effect', () => {
    const h = [...clean(), send('p', { poison: true }), ack('p', 'ok', 8), log('p', 2), deliver('p', 2, 9)];
    expect(kinds(h)).toEqual([]);
    expect(kinds([...h, effect('p', 1)])).toEqual(['effects']);
  });

  it('order: a producer’s acknowledged records of one key stored out of order', () => {
    const h = clean().map((x) => (x.e === 'log' ? { ...x, o: x.v === 'a' ? 1 : 0 } : x));
    const h2 = h.map((x) => (x.e === 'deliver' ? { ...x, o: x.v === 'a' ? 1 : 0, t: x.v === 'a' ? 6 : 5 } : x));
    expect(kinds(h2)).toEqual(['order']);
  });

  it('order: one member sees a key go back in offset', () => {
    const h = [...clean(), send('c'), ack('c', 'ok', 4), log('c', 2), deliver('c', 2, 5.5), effect('c', 1)];
    // c (offset 2) delivered before b (offset 1): the stream jumps ahead then goes back.
    expect(kinds(h)).toContain('order');
  });

  it('skipped: a gap in the log, a jump in a stream, a record a drained group never got', () => {
    const gap = clean().map((x) => (x.e === 'log' && x.v === 'b' ? { ...x, o: 2 } : x)).map((x) => (x.e === 'deliver' && x.v === 'b' ? { ...x, o: 2 } : x));
    expect(kinds(gap)).toEqual(['skipped']);
    const never = clean().filter((x) => !(x.e === 'deliver' && x.v === 'b'));
    expect(kinds(never)).toEqual(['skipped']);
  });

  it('a hostile record no handler can take is not a skip', () => {
    const h = [...clean(), send('hex:c1', { hostile: true }), ack('hex:c1', 'ok', 8), log('hex:c1', 2), send('c'), ack('c', 'ok', 9), log('c', 3), deliver('c', 3, 10), effect('c', 1)];
    expect(kinds(h)).toEqual([]);
  });

  it('double-owner: two lock holders in one sample', () => {
    const h = [...clean(), { e: 'owners', t: 8, g: 'g', topic: 't', p: 0, holders: [100, 101], owner: 'm-c1', ownerPid: 100 } as HistoryEvent];
    expect(kinds(h)).toEqual(['double-owner']);
  });

  it('double-owner: two members interleave committed work on one partition with no rebalance', () => {
    const commit = (proc: string, o: number, t: number): HistoryEvent => ({ e: 'commit', t, proc, g: 'g', m: `m-${proc}`, topic: 't', p: 0, o });
    const h = [
      ...clean().filter((x) => x.e !== 'deliver'),
      send('c'), ack('c', 'ok', 4), log('c', 2), effect('c', 1),
      deliver('a', 0, 5, 'c1'),
      commit('c1', 1, 5.1),
      deliver('b', 1, 6, 'c2'),
      commit('c2', 2, 6.1),
      deliver('c', 2, 7, 'c1'),
      commit('c1', 3, 7.1),
    ];
    // A zombie's work that was never committed (fenced) does not count.
    expect(kinds(h.filter((x) => !(x.e === 'commit' && x.proc === 'c2')))).toEqual(['skipped']);
    // c1's own stream also jumps from @0 to @2.
    expect(kinds(h)).toEqual(['double-owner', 'skipped']);
    // With a fault on c1 between, c1 may have lost and regained the partition.
    expect(kinds([...h, { e: 'fault', t: 5.5, kind: 'terminate', targets: ['c1'], affects: 'consumers' }])).toEqual([]);
  });

  it('not-routed: a poison record missing from the dead-letter topic, or there twice', () => {
    const h = [...clean(), send('p', { poison: true }), ack('p', 'ok', 8), log('p', 2), deliver('p', 2, 9)];
    const opts = { ...options, deadLetter: { t: 'dlq' } };
    expect(check([...h, log('p', 0, 0, 'dlq')], opts).violations).toEqual([]);
    expect(check(h, opts).violations.map((v) => v.kind)).toEqual(['not-routed']);
    expect(check([...h, log('p', 0, 0, 'dlq'), log('p', 1, 0, 'dlq')], opts).violations.map((v) => v.kind)).toEqual(['not-routed']);
  });

  it('crash and stalled', () => {
    expect(kinds([...clean(), { e: 'exit', t: 9, proc: 'c1', code: 1, signal: null, expected: false }])).toEqual(['crash']);
    expect(kinds([...clean(), { e: 'exit', t: 9, proc: 'c1', code: null, signal: 'SIGKILL', expected: true }])).toEqual([]);
    expect(kinds([...clean(), { e: 'stall', t: 9, detail: 'group g did not drain' }])).toEqual(['stalled']);
  });

  it('recovery: time from a fault to the next progress after it ended', () => {
    const h = [...clean(), { e: 'fault', t: 4.5, kind: 'cut', affects: 'consumers', until: 4.8 } as HistoryEvent];
    expect(check(h, options).recoveryMs).toEqual([0.5]);
    expect(percentile([1, 2, 3, 100], 99)).toBe(100);
    expect(percentile([], 99)).toBeNull();
  });
});

describe('checker on a compacted topic', () => {
  const csend = (v: string, k: string): HistoryEvent => ({ e: 'send', t: 1, proc: 'p1', topic: 't', v, k });
  const cack = (v: string, o: number): HistoryEvent => ({ e: 'ack', t: 2 + o, proc: 'p1', topic: 't', v, outcome: 'ok', p: 0, o });
  const clog = (v: string, o: number, k: string): HistoryEvent => ({ e: 'log', topic: 't', p: 0, o, v, k });
  const cdel = (g: string, proc: string, v: string, o: number, t: number, k: string): HistoryEvent => ({ e: 'deliver', t, proc, g, m: `m-${proc}`, topic: 't', p: 0, o, v, k });
  const copts = { compacted: ['t'], sawEvery: { head: ['t'] }, latestPerKey: { full: ['t'] } };
  /** a (k1) @0, b (k2) @1, c (k1) @2: compaction removed a; the head saw all three, the full reader b and c. */
  function compacted(): HistoryEvent[] {
    return [
      csend('a', 'k1'), cack('a', 0), csend('b', 'k2'), cack('b', 1), csend('c', 'k1'), cack('c', 2),
      { e: 'join', t: 3, proc: 'h1', g: 'head', m: 'm-h1' },
      cdel('head', 'h1', 'a', 0, 4, 'k1'), cdel('head', 'h1', 'b', 1, 5, 'k2'), cdel('head', 'h1', 'c', 2, 6, 'k1'),
      { e: 'join', t: 7, proc: 'f1', g: 'full', m: 'm-f1' },
      cdel('full', 'f1', 'b', 1, 8, 'k2'), cdel('full', 'f1', 'c', 2, 9, 'k1'),
      clog('b', 1, 'k2'), clog('c', 2, 'k1'),
    ];
  }
  const ckinds = (h: HistoryEvent[]) => [...new Set(check(h, copts).violations.map((v) => v.kind))].sort();

  it('passes a compacted history: superseded records missing from the log and skipped by a reader', () => {
    expect(check(compacted(), copts).violations).toEqual([]);
  });

  it('the same gap on a topic not declared compacted is a skip and a loss', () => {
    expect([...new Set(check(compacted(), {}).violations.map((v) => v.kind))].sort()).toEqual(['lost', 'skipped']);
  });

  it('compaction + lost: the latest record of a key removed', () => {
    const h = compacted().filter((x) => !(x.e === 'log' && x.v === 'c'));
    expect(ckinds(h)).toEqual(['compaction', 'lost']);
  });

  it('compaction: two records of one key left after the last pass', () => {
    expect(ckinds([...compacted(), clog('a', 0, 'k1')])).toEqual(['compaction']);
  });

  it('compaction: the full reader ended with a superseded value', () => {
    const h = compacted().filter((x) => !(x.e === 'deliver' && x.g === 'full' && x.v === 'c'));
    expect(ckinds(h)).toEqual(['compaction']);
  });

  it('skipped: a reader jumped over a record that was not superseded', () => {
    const h = [...compacted().filter((x) => !(x.e === 'deliver' && x.g === 'full')), cdel('full', 'f1', 'a', 0, 8, 'k1'), cdel('full', 'f1', 'c', 2, 9, 'k1')];
    expect(ckinds(h)).toEqual(['compaction', 'skipped']);
  });

  it('skipped: the head group missed an acknowledged record', () => {
    const h = compacted().filter((x) => !(x.e === 'deliver' && x.g === 'head' && x.v === 'a'));
    expect(ckinds(h)).toEqual(['skipped']);
  });

  it("order: offsets went down in a reader's stream", () => {
    expect(ckinds([...compacted(), cdel('full', 'f1', 'b', 1, 10, 'k2')])).toEqual(['order', 'read-twice']);
  });
});
