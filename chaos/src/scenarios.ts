/**
 * The scenarios: each starts workers, injects its faults on a bounded schedule, lets the groups
 * drain, and says what the checker must hold it to. Sizes come in two modes: short (CI, the whole
 * run within about four minutes on a shared two-core machine) and long (by hand).
 */
import { encode } from '@msgpack/msgpack';
import { existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import type { CheckOptions } from './checker.js';
import { sleep, type Scenario, type Worker } from './harness.js';
import type { ProducerMode } from './protocol.js';
import { ChaosEvent, SEEN_GROUP, SEEN_PROJECTION, seenProjection, typedTopic } from './typed.js';
import { valueText } from './history.js';

export interface ScenarioResult {
  readonly options: CheckOptions;
  /** Topics whose records go into the history at the end. */
  readonly topics: string[];
  /** How stored values become history values (default: UTF-8 text, else hex). */
  readonly decodeValue?: (value: Buffer | null) => string;
}

export interface ScenarioDef {
  readonly name: string;
  /** The faults, in words, for the table. */
  readonly faults: string;
  /** Runs against a PostgreSQL the harness owns (so it may restart it). */
  readonly ownServer?: boolean;
  /** Set when the scenario cannot run in this tree: why. */
  readonly pending?: string;
  run?(s: Scenario, hooks: Hooks): Promise<ScenarioResult>;
}

/** What only the runner can do (restart the server it owns, put a proxy in front). */
export interface Hooks {
  restartServer?(): Promise<void>;
  proxy?: import('@annals/testing/fault-proxy').FaultProxy;
}

const n = (s: Scenario, short: number, long: number) => (s.env.short ? short : long);
const eo = (groupId: string, topics: string[]) => ({ groupId, topics, exactlyOnce: true, sessionTimeout: 6_000, heartbeatInterval: 300, maxRecordsPerFetch: 50, handlerDelayMs: 2 });
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(Math.random() * xs.length)]!;

/** The usual end: producers finish, groups drain, everything stops. */
async function finish(s: Scenario, groups: Record<string, string[]>, drainMs = n(s, 60_000, 120_000)): Promise<void> {
  await s.producersDone(n(s, 90_000, 300_000));
  await s.drain(groups, drainMs);
  await s.stopSampler();
  await s.stopAll();
}

export const scenarios: ScenarioDef[] = [
  {
    name: 'control',
    faults: 'none',
    async run(s) {
      await s.setup([{ topic: 'events', numPartitions: 4 }]);
      s.startSampler(25);
      for (let i = 0; i < 2; i++) s.consumer(eo('eo', ['events']));
      s.consumer({ ...eo('alo', ['events']), exactlyOnce: false });
      const modes: ProducerMode[] = ['idempotent', 'send', 'annals-tx', 'txn'];
      s.producer({ topic: 'events', partitions: 4, producers: 2, count: n(s, 40, 160), keys: 8, modes, paceMs: 3, maxMs: n(s, 90_000, 240_000) });
      await finish(s, { eo: ['events'], alo: ['events'] });
      return { options: { exactlyOnce: { eo: ['events'] }, drained: { eo: ['events'], alo: ['events'] } }, topics: ['events'] };
    },
  },
  {
    name: 'one-partition-16-producers',
    faults: '16 producers on 1 partition; rollbacks (append then roll back); a 2 s head-lock transaction',
    async run(s) {
      await s.setup([{ topic: 'one', numPartitions: 1 }]);
      s.startSampler(50);
      s.consumer(eo('tail', ['one']));
      const modes: ProducerMode[] = ['send', 'idempotent', 'annals-tx', 'storage-rollback', 'txn', 'txn-abort', 'annals-tx-rollback', 'acks1'];
      const procs = n(s, 4, 16);
      for (let i = 0; i < procs; i++) s.producer({ topic: 'one', partitions: 1, producers: 16 / procs, count: n(s, 8, 30), keys: 4, modes, paceMs: 1, maxMs: n(s, 90_000, 240_000) });
      // The long transaction writes its own fault event when it holds the lock.
      s.producer({ topic: 'one', partitions: 1, producers: 1, count: n(s, 2, 4), keys: 1, modes: ['long-tx'], paceMs: 300, longTxMs: 2_000, maxMs: 30_000 });
      await finish(s, { tail: ['one'] });
      return { options: { exactlyOnce: { tail: ['one'] }, drained: { tail: ['one'] } }, topics: ['one'] };
    },
  },
  {
    name: 'kill-9-consumers',
    faults: 'SIGKILL of a consumer mid-batch, respawned',
    async run(s) {
      await s.setup([{ topic: 'work', numPartitions: 6 }]);
      s.startSampler(25);
      const spawn = () => s.consumer(eo('eo', ['work']));
      for (let i = 0; i < 3; i++) spawn();
      for (let i = 0; i < 2; i++) s.producer({ topic: 'work', partitions: 6, producers: 1, count: n(s, 70, 300), keys: 12, modes: ['idempotent'], paceMs: 12, maxMs: n(s, 90_000, 240_000) });
      await Promise.all(s.live('c').map((w) => w.ready.catch(() => {})));
      for (let k = 0; k < n(s, 4, 12); k++) {
        await sleep(900 + Math.random() * 600);
        // A member that has joined (so the kill lands on one that owns partitions, likely mid-batch).
        const joined = s.live('c').filter((w) => w.memberId !== undefined);
        if (joined.length < 2) continue;
        const victim = pick(joined);
        victim.kill('SIGKILL');
        s.fault('kill-9', 'consumers', { targets: [victim.proc], detail: victim.proc });
        const replacement = spawn();
        // Starting a process takes seconds on a busy machine: let the replacement join before the next kill.
        await Promise.race([replacement.ready.catch(() => {}), sleep(30_000)]);
      }
      await finish(s, { eo: ['work'] });
      return { options: { exactlyOnce: { eo: ['work'] }, drained: { eo: ['work'] } }, topics: ['work'] };
    },
  },
  {
    name: 'terminate-backends',
    faults: 'pg_terminate_backend of a member session, of producer sessions, of every session',
    async run(s) {
      await s.setup([{ topic: 'work', numPartitions: 4 }]);
      s.startSampler(25);
      for (let i = 0; i < 3; i++) s.consumer(eo('eo', ['work']));
      const modes: ProducerMode[] = ['idempotent', 'acks1', 'txn', 'send', 'annals-tx'];
      for (let i = 0; i < 2; i++) s.producer({ topic: 'work', partitions: 4, producers: 1, count: n(s, 70, 300), keys: 8, modes, paceMs: 10, maxMs: n(s, 90_000, 240_000) });
      await Promise.all(s.live('c').map((w) => w.ready.catch(() => {})));
      const others = `datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend' AND application_name <> 'chaos-harness'`;
      for (let k = 0; k < n(s, 6, 18); k++) {
        await sleep(700 + Math.random() * 500);
        const round = k % 3;
        if (round === 0) {
          // One member's group session (its application_name is annals:<memberId>).
          const { rows } = await s.env.admin.query<{ pid: number; application_name: string }>(`SELECT pid, application_name FROM pg_stat_activity WHERE ${others} AND application_name LIKE 'annals:%'`);
          const row = rows.length ? pick(rows) : undefined;
          if (!row) continue;
          const worker = s.workerOfMember(row.application_name.slice('annals:'.length));
          await s.env.admin.query('SELECT pg_terminate_backend($1)', [row.pid]);
          s.fault('terminate-member-session', 'consumers', { ...(worker ? { targets: [worker.proc] } : {}), detail: row.application_name });
        } else if (round === 1) {
          // Every pooled session (producers' and the consumers' transaction connections), not the group sessions.
          const { rowCount } = await s.env.admin.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE ${others} AND application_name NOT LIKE 'annals:%'`);
          s.fault('terminate-pooled-sessions', 'all', { detail: `${rowCount} sessions` });
        } else {
          const { rowCount } = await s.env.admin.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE ${others}`);
          s.fault('terminate-all-sessions', 'all', { detail: `${rowCount} sessions` });
        }
      }
      await finish(s, { eo: ['work'] });
      return { options: { exactlyOnce: { eo: ['work'] }, drained: { eo: ['work'] } }, topics: ['work'] };
    },
  },
  {
    name: 'postgres-restart',
    faults: 'PostgreSQL stopped and started again (embedded server owned by the harness)',
    ownServer: true,
    async run(s, hooks) {
      await s.setup([{ topic: 'work', numPartitions: 3 }]);
      s.startSampler(50);
      for (let i = 0; i < 2; i++) s.consumer(eo('eo', ['work']));
      for (let i = 0; i < 2; i++) s.producer({ topic: 'work', partitions: 3, producers: 1, count: n(s, 70, 300), keys: 6, modes: ['idempotent', 'txn'], paceMs: 12, maxMs: n(s, 120_000, 240_000) });
      await Promise.all(s.live('c').map((w) => w.ready.catch(() => {})));
      for (let k = 0; k < n(s, 1, 3); k++) {
        await sleep(1_200);
        const t = Date.now();
        await hooks.restartServer!();
        s.fault('postgres-restart', 'all', { t, until: Date.now(), detail: `down for ${Date.now() - t} ms` });
      }
      await finish(s, { eo: ['work'] }, n(s, 40_000, 60_000));
      return { options: { exactlyOnce: { eo: ['work'] }, drained: { eo: ['work'] } }, topics: ['work'] };
    },
  },
  {
    name: 'proxy-faults',
    faults: 'through a TCP proxy: latency, COMMIT replies lost, cut (FIN), black hole, reset (RST), refused',
    async run(s, hooks) {
      const proxy = hooks.proxy!;
      await s.setup([{ topic: 'work', numPartitions: 4 }]);
      s.startSampler(50);
      for (let i = 0; i < 2; i++) s.consumer(eo('eo', ['work']));
      const modes: ProducerMode[] = ['acks1', 'idempotent', 'txn', 'annals-tx', 'send'];
      for (let i = 0; i < 2; i++) s.producer({ topic: 'work', partitions: 4, producers: 2, count: n(s, 40, 160), keys: 8, modes, paceMs: 10, maxMs: n(s, 120_000, 240_000) });
      await Promise.all(s.live('c').map((w) => w.ready.catch(() => {})));
      const rounds = n(s, 1, 3);
      for (let r = 0; r < rounds; r++) {
        await sleep(600);
        let t = Date.now();
        proxy.delay(40);
        await sleep(1_000);
        proxy.delay(0);
        s.fault('latency-40ms', 'all', { t, until: Date.now() });
        t = Date.now();
        const before = proxy.stats.droppedCommitReplies;
        proxy.dropCommitReplies(4);
        await sleep(1_500);
        s.fault('commit-reply-lost', 'all', { t, until: Date.now(), detail: `${proxy.stats.droppedCommitReplies - before} COMMIT replies swallowed` });
        await sleep(400);
        s.fault('cut', 'all', { detail: `${proxy.cutAll()} connections` });
        await sleep(600);
        t = Date.now();
        await proxy.blackhole(1_500);
        s.fault('black-hole-then-reset', 'all', { t, until: Date.now() });
        await sleep(600);
        s.fault('reset', 'all', { detail: `${proxy.resetAll()} connections` });
        await sleep(400);
        t = Date.now();
        proxy.resetAll();
        await proxy.refuse(800);
        s.fault('refused', 'all', { t, until: Date.now() });
      }
      s.note(`proxy stats: ${JSON.stringify(proxy.stats)}`);
      await finish(s, { eo: ['work'] });
      return { options: { exactlyOnce: { eo: ['work'] }, drained: { eo: ['work'] } }, topics: ['work'] };
    },
  },
  {
    name: 'hung-handler',
    faults: 'a handler idle in its transaction past idle_in_transaction_session_timeout (1 s)',
    async run(s) {
      const database = new URL(s.env.directUrl).pathname.slice(1);
      await s.env.admin.query(`ALTER DATABASE ${database} SET idle_in_transaction_session_timeout = '1s'`);
      await s.setup([{ topic: 'work', numPartitions: 2 }]);
      s.startSampler(50);
      const marker = path.join(s.env.dir, 'hung.marker');
      const hang = { value: 'p3.0-15', ms: 3_000, marker };
      for (let i = 0; i < 2; i++) s.consumer({ ...eo('eo', ['work']), sessionTimeout: 10_000, hang });
      s.producer({ topic: 'work', partitions: 2, producers: 1, count: n(s, 50, 200), keys: 4, modes: ['idempotent'], paceMs: 10, maxMs: n(s, 60_000, 240_000) });
      await finish(s, { eo: ['work'] });
      if (!existsSync(marker)) s.note('the hang never happened');
      return { options: { exactlyOnce: { eo: ['work'] }, drained: { eo: ['work'] } }, topics: ['work'] };
    },
  },
  {
    name: 'poison-record',
    faults: 'every 10th record makes its handler throw; dead-letter policy',
    async run(s) {
      await s.setup([{ topic: 'work', numPartitions: 2 }, { topic: 'dlq', numPartitions: 1 }]);
      s.startSampler(50);
      for (let i = 0; i < 2; i++) s.consumer({ ...eo('eo', ['work']), deadLetterTopic: 'dlq' });
      s.producer({ topic: 'work', partitions: 2, producers: 1, count: n(s, 40, 200), keys: 4, modes: ['idempotent'], paceMs: 5, poisonEvery: 10, maxMs: n(s, 60_000, 240_000) });
      await finish(s, { eo: ['work'] });
      return { options: { exactlyOnce: { eo: ['work'] }, drained: { eo: ['work'] }, deadLetter: { work: 'dlq' } }, topics: ['work', 'dlq'] };
    },
  },
  {
    name: 'hostile-msgpack',
    faults: 'typed records with hostile bytes (reserved byte, huge lengths, deep nesting, truncation, wrong schema)',
    async run(s) {
      const topic = typedTopic('typed', 2);
      await s.setup([{ topic: 'typed', numPartitions: 2 }, { topic: 'dlq', numPartitions: 1 }]);
      s.startSampler(50);
      for (let i = 0; i < 2; i++) s.consumer({ ...eo('eo', ['typed']), deadLetterTopic: 'dlq', typed: { partitions: 2 } });
      const hostile: Buffer[] = [
        Buffer.from([0xc1]),
        Buffer.from([0xdb, 0xff, 0xff, 0xff, 0xff, 0x61]),
        Buffer.from([0xdd, 0xff, 0xff, 0xff, 0xff]),
        Buffer.from([0xdf, 0x7f, 0xff, 0xff, 0xff, 0xa1, 0x61]),
        Buffer.alloc(100_000, 0x91),
        Buffer.from([0x82, 0xa2, 0x69, 0x64]),
        Buffer.from(encode({ id: 5, k: 'x' })),
        Buffer.from(encode([1, 2, 3])),
        Buffer.from([0xc7, 0x01, 0xff, 0x00]),
        Buffer.from('{"id":"json","k":"x"}'),
      ];
      const producer = s.env.annals.producer({ idempotent: true });
      const h = s.env.history;
      const headers = { 'event-type': 'chaos.event', 'schema-version': '1', 'content-type': 'application/msgpack' };
      const total = n(s, 40, 200);
      for (let i = 0; i < total; i++) {
        const k = `k${i % 4}`;
        if (i % 8 === 7) {
          // Unique per record (values identify records in the history): a trailing tag keeps every variant undecodable.
          const bytes = Buffer.concat([hostile[(i >> 3) % hostile.length]!, Buffer.from(`#${i}`)]);
          const v = valueText(bytes);
          h.write({ e: 'send', t: Date.now(), proc: 'harness', topic: 'typed', v, k, hostile: true });
          try {
            await producer.send({ topic: 'typed', messages: [{ key: k, value: bytes, headers }] });
            h.write({ e: 'ack', t: Date.now(), proc: 'harness', topic: 'typed', v, outcome: 'ok' });
          } catch (error) {
            h.write({ e: 'ack', t: Date.now(), proc: 'harness', topic: 'typed', v, outcome: 'failed', code: String((error as { code?: string }).code) });
          }
        } else {
          const v = `good-${i}`;
          h.write({ e: 'send', t: Date.now(), proc: 'harness', topic: 'typed', v, k });
          await producer.publish(topic, ChaosEvent, { id: v, k });
          h.write({ e: 'ack', t: Date.now(), proc: 'harness', topic: 'typed', v, outcome: 'ok' });
        }
      }
      await finish(s, { eo: ['typed'] });
      const { decode } = await import('@msgpack/msgpack');
      const valueOf = (value: Buffer | null) => {
        try {
          const d = decode(value!) as { id?: unknown };
          if (d && typeof d === 'object' && typeof d.id === 'string' && d.id.startsWith('good-')) return d.id;
        } catch {
          /* hostile */
        }
        return valueText(value);
      };
      return { options: { exactlyOnce: { eo: ['typed'] }, drained: { eo: ['typed'] }, deadLetter: { typed: 'dlq' } }, topics: ['typed', 'dlq'], decodeValue: valueOf };
    },
  },
  {
    name: 'rebalance-storm',
    faults: 'members join, leave and are killed every ~0.5 s',
    async run(s) {
      await s.setup([{ topic: 'work', numPartitions: 6 }]);
      s.startSampler(15);
      const spawn = () => s.consumer({ ...eo('eo', ['work']), heartbeatInterval: 200 });
      for (let i = 0; i < 2; i++) spawn();
      for (let i = 0; i < 2; i++) s.producer({ topic: 'work', partitions: 6, producers: 1, count: n(s, 80, 300), keys: 12, modes: ['idempotent', 'txn'], paceMs: 10, maxMs: n(s, 90_000, 240_000) });
      await Promise.all(s.workers.map((w) => w.ready.catch(() => {})));
      for (let k = 0; k < n(s, 8, 30); k++) {
        await sleep(400 + Math.random() * 300);
        const live = s.live('c');
        // Only members that have joined leave or die, and one always stays: otherwise the figure
        // measures how long a new process takes to start on this machine, not a takeover.
        const joined = live.filter((w) => w.memberId !== undefined);
        const action = joined.length <= 1 ? 'join' : live.length >= 5 ? pick(['leave', 'kill']) : pick(['join', 'join', 'leave', 'kill']);
        if (action === 'join') {
          const w = spawn();
          s.fault('member-join', 'consumers', { targets: [w.proc] });
        } else {
          const victim = pick(joined);
          s.fault(action === 'leave' ? 'member-leave' : 'member-kill-9', 'consumers', { targets: [victim.proc] });
          if (action === 'leave') void victim.stop();
          else victim.kill('SIGKILL');
        }
      }
      while (s.live('c').length < 2) spawn();
      await finish(s, { eo: ['work'] });
      return { options: { exactlyOnce: { eo: ['work'] }, drained: { eo: ['work'] } }, topics: ['work'] };
    },
  },
  {
    name: 'multi-topic-txn',
    faults: 'transactions over two topics, a third aborted, producers SIGKILLed mid-transaction',
    async run(s) {
      await s.setup([{ topic: 'orders', numPartitions: 3 }, { topic: 'audit', numPartitions: 2 }]);
      s.startSampler(50);
      s.consumer(eo('eo', ['orders', 'audit']));
      const spawn = () => s.producer({ topic: 'orders', topic2: 'audit', partitions: 3, producers: 1, count: n(s, 25, 100), keys: 6, modes: ['multi-txn', 'multi-txn-abort', 'multi-txn'], paceMs: 4, maxMs: n(s, 60_000, 240_000) });
      const producers: Worker[] = [spawn(), spawn(), spawn()];
      await Promise.all(s.workers.map((w) => w.ready.catch(() => {})));
      for (let k = 0; k < n(s, 4, 12); k++) {
        await sleep(500 + Math.random() * 400);
        const victim = pick(producers.filter((w) => !w.exited));
        if (!victim) break;
        victim.kill('SIGKILL');
        s.fault('producer-kill-9', 'producers', { targets: [victim.proc] });
        producers.push(spawn());
      }
      await finish(s, { eo: ['orders', 'audit'] });
      return { options: { exactlyOnce: { eo: ['orders', 'audit'] }, drained: { eo: ['orders', 'audit'] } }, topics: ['orders', 'audit'] };
    },
  },
  {
    name: 'compaction-vs-consumers',
    faults: 'cleaners (own processes, 150 ms passes) compacting while a group tails the head and a slow group reads from the start; the leading cleaner SIGKILLed at a random moment (in or between its passes), the slow reader SIGKILLed; both respawned',
    async run(s) {
      const LAG_MS = 1_000;
      const config = { 'cleanup.policy': 'compact', 'min.compaction.lag.ms': String(LAG_MS), 'segment.records': '1000' };
      await s.setup([{ topic: 'kv', numPartitions: 2, configEntries: Object.entries(config).map(([name, value]) => ({ name, value })) }]);
      s.startSampler(50);
      const plain = (groupId: string) => ({ ...eo(groupId, ['kv']), exactlyOnce: false });
      const cleaner = () => s.cleaner({ intervalMs: 150, chunkRecords: 25 });
      cleaner();
      cleaner(); // a standby: takes the lease over when the leader dies
      const heads = [s.consumer(plain('head')), s.consumer(plain('head'))];
      // The head group must be reading before anything is written (it is to see every record).
      await Promise.all(heads.map((w) => Promise.race([w.ready.catch(() => {}), sleep(30_000)])));
      for (let i = 0; i < 50 && heads.some((w) => w.memberId === undefined); i++) await sleep(100);
      for (let i = 0; i < 2; i++) s.producer({ topic: 'kv', partitions: 2, producers: 1, count: n(s, 250, 1_000), keys: 6, modes: ['idempotent', 'send'], paceMs: 8, maxMs: n(s, 60_000, 240_000) });
      await Promise.all(s.workers.map((w) => w.ready.catch(() => {})));
      // The reader from the start comes late (compaction has begun) and reads slowly.
      await sleep(1_500);
      const fulls: Worker[] = [];
      const full = () => fulls.push(s.consumer({ ...plain('full'), maxRecordsPerFetch: 5, handlerDelayMs: 15 }));
      full();
      // The leader: the cleaner whose history file (a note per pass) changed last.
      const leader = () =>
        s
          .live('x')
          .map((w) => ({ w, t: statSync(path.join(s.env.dir, `${w.proc}.jsonl`), { throwIfNoEntry: false })?.mtimeMs ?? 0 }))
          .sort((a, b) => b.t - a.t)[0]?.w;
      for (let k = 0; k < n(s, 6, 16); k++) {
        await sleep(900 + Math.random() * 500);
        if (k % 2 === 0) {
          const victim = leader();
          if (!victim) continue;
          victim.kill('SIGKILL');
          s.fault('cleaner-kill-9', 'all', { targets: [victim.proc], detail: victim.proc });
          cleaner();
        } else {
          const victim = fulls.find((w) => !w.exited && w.memberId !== undefined);
          if (!victim) continue;
          victim.kill('SIGKILL');
          s.fault('full-reader-kill-9', 'consumers', { targets: [victim.proc], detail: victim.proc });
          full();
        }
      }
      await finish(s, { head: ['kv'], full: ['kv'] });
      // The last pass, judged as if the head were older than min.compaction.lag.ms: one record per key remains.
      const last = await s.env.annals.cleaner.runOnce({ topics: ['kv'], now: Date.now() + 60_000 });
      s.note(`final cleaner pass: ${last.ran ? `${last.report.partitions.reduce((n, p) => n + p.recordsCompacted, 0)} records compacted` : last.reason}`);
      if (!last.ran) s.env.history.write({ e: 'stall', t: Date.now(), detail: `the final cleaner pass did not run: ${last.reason}` });
      return {
        options: { compacted: ['kv'], sawEvery: { head: ['kv'] }, latestPerKey: { full: ['kv'] }, drained: { head: ['kv'], full: ['kv'] } },
        topics: ['kv'],
      };
    },
  },
  {
    name: 'projection-rebuild-killed',
    faults: 'a projection rebuild SIGKILLed midway, resumed by another process',
    async run(s) {
      const partitions = 4;
      const topic = typedTopic('typed', partitions);
      await s.setup([{ topic: 'typed', numPartitions: partitions }]);
      const producer = s.env.annals.producer({ idempotent: true });
      const h = s.env.history;
      const total = n(s, 600, 3_000);
      for (let i = 0; i < total; i += 50) {
        const ids = Array.from({ length: Math.min(50, total - i) }, (_, j) => `ev-${i + j}`);
        const t = Date.now();
        for (const id of ids) h.write({ e: 'send', t, proc: 'harness', topic: 'typed', v: id, k: `k${id.length % 7}` });
        await Promise.all(ids.map((id) => producer.publish(topic, ChaosEvent, { id, k: `k${id.length % 7}` })));
        const done = Date.now();
        for (const id of ids) h.write({ e: 'ack', t: done, proc: 'harness', topic: 'typed', v: id, outcome: 'ok' });
      }
      const first = s.rebuilder({ topic: 'typed', partitions, batchSize: 10, delayMs: 5 });
      // Kill it a quarter of the way through its replay, counted from its own history (its progress
      // reports are too coarse to land a kill midway).
      const file = path.join(s.env.dir, `${first.proc}.jsonl`);
      const replayed = () => (existsSync(file) ? readFileSync(file, 'utf8').split('"e":"deliver"').length - 1 : 0);
      const deadline = Date.now() + 60_000;
      while (Date.now() < deadline && !first.exited && replayed() < total / 4) await sleep(20);
      first.kill('SIGKILL');
      s.fault('rebuilder-kill-9', 'consumers', { targets: [first.proc], detail: `after ${replayed()} of ${total} events handled` });
      await first.exit;
      const second = s.rebuilder({ topic: 'typed', partitions, batchSize: 10, delayMs: 1 });
      const finished = await Promise.race([second.done.then(() => true), sleep(n(s, 60_000, 300_000)).then(() => false)]);
      if (!finished) s.env.history.write({ e: 'stall', t: Date.now(), detail: `the resumed rebuild did not finish (${JSON.stringify(second.progress)})` });
      // The kill must land midway: a second rebuilder that replayed nothing means the first had finished.
      else if (second.sent === 0) s.env.history.write({ e: 'stall', t: Date.now(), detail: 'harness: the first rebuilder finished before it was killed; the resume was not exercised' });
      s.note(`second rebuilder: ${JSON.stringify(second.progress)}`);
      await s.stopAll();
      // The read model: one document per event id, counting its applications.
      s.env.annals.register(seenProjection({ topic: 'typed', partitions, schema: s.env.schema, batchSize: 25 }));
      const docs = await s.env.annals.projections.documents<{ n: number }>(SEEN_PROJECTION, 'seen');
      for (const [id, doc] of docs) h.write({ e: 'effect', g: SEEN_GROUP, v: id, n: doc.n });
      const { decode } = await import('@msgpack/msgpack');
      const decodeValue = (value: Buffer | null) => {
        try {
          const d = decode(value!) as { id?: unknown };
          if (d && typeof d === 'object' && typeof d.id === 'string') return d.id;
        } catch {
          /* not an event */
        }
        return valueText(value);
      };
      return { options: { exactlyOnce: { [SEEN_GROUP]: ['typed'] } }, topics: ['typed'], decodeValue };
    },
  },
];
