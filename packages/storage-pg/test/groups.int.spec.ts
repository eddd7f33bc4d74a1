/**
 * Consumer groups on a real PostgreSQL, with members as separate OS processes:
 *  3. one owner — at most one live member holds a partition at any moment, and a former owner's
 *     late commit is refused;
 *  4. exactly-once effects — writes through the handler's `tx` commit with the offset advance,
 *     so repeated kills leave every record's effect applied exactly once.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Annals, IllegalGenerationError } from '@annals/core';
import { sql } from 'kysely';
import { afterEach, describe, expect, it } from 'vitest';
import { PgLogStorage } from '../src/index.js';
import { adminClient, database, freshAnnals, sleep } from './support.js';

const MEMBER = fileURLToPath(new URL('./fixtures/group-member.mjs', import.meta.url));

interface Member {
  readonly child: ChildProcess;
  assignment: string[];
  memberId?: string;
  readonly crashes: string[];
  exited: boolean;
}

const members: Member[] = [];
afterEach(async () => {
  for (const m of members.splice(0)) if (!m.exited) m.child.kill('SIGKILL');
});

function spawnMember(schema: string, groupId: string, topic: string, options: { mode?: string; sessionTimeout?: number; heartbeat?: number; delay?: number } = {}): Member {
  const child = fork(
    MEMBER,
    [database.connectionString, schema, groupId, topic, options.mode ?? 'noop', String(options.sessionTimeout ?? 3000), String(options.heartbeat ?? 200), String(options.delay ?? 0)],
    { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv: [] },
  );
  const member: Member = { child, assignment: [], crashes: [], exited: false };
  child.on('message', (m: { type: string; assignment?: Array<{ topic: string; partition: number }>; memberId?: string; error?: string }) => {
    if (m.type === 'assignment') {
      member.assignment = m.assignment!.map((a) => `${a.topic}/${a.partition}`);
      member.memberId = m.memberId;
    }
    if (m.type === 'joined') member.memberId = m.memberId;
    if (m.type === 'crash') member.crashes.push(m.error!);
  });
  child.on('exit', () => (member.exited = true));
  members.push(member);
  return member;
}

async function waitFor(what: string, condition: () => boolean | Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
    await sleep(25);
  }
}

async function stopMember(m: Member): Promise<void> {
  const stopped = new Promise<void>((resolve) => m.child.once('exit', () => resolve()));
  m.child.send('stop');
  await stopped;
}

/** Samples who holds each partition's lock (pg_locks) and the group's own view. */
async function lockSampler(schema: string, groupId: string, topic: string, partitions: number) {
  const client = await adminClient();
  const keys = new Map<string, number>();
  for (let p = 0; p < partitions; p++) {
    const { rows } = await client.query(`SELECT hashtextextended($1, 0)::text AS k`, [`${schema}/${groupId}/${topic}/${p}`]);
    keys.set(rows[0].k, p);
  }
  const violations: string[] = [];
  let samples = 0;
  let running = true;
  const loop = (async () => {
    while (running) {
      const { rows } = await client.query(
        `SELECT ((classid::bigint << 32) | objid::bigint)::text AS k, count(*)::int AS holders
         FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1
           AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
         GROUP BY 1`,
      );
      for (const r of rows) if (keys.has(r.k) && r.holders > 1) violations.push(`partition ${keys.get(r.k)} held by ${r.holders} sessions`);
      const owners = await client.query(`SELECT count(*)::int AS n FROM "${schema}".partition_owners WHERE group_id = $1 AND member_id IS NOT NULL GROUP BY topic, partition HAVING count(*) > 1`, [groupId]);
      if (owners.rows.length > 0) violations.push('a partition has two owners in partition_owners');
      samples++;
      await sleep(10);
    }
  })();
  return {
    violations,
    get samples() {
      return samples;
    },
    async stop() {
      running = false;
      await loop;
    },
  };
}

const sorted = (xs: string[]) => [...xs].sort();

describe('group membership across processes', () => {
  it('3 members on 6 partitions own 2 each; a 4th joins and one leaves: partitions move, none is owned twice', async () => {
    const annals = freshAnnals();
    await annals.admin().createTopics({ topics: [{ topic: 'orders', numPartitions: 6 }] });
    const schema = (annals.storage as PgLogStorage).schema;
    const sampler = await lockSampler(schema, 'g1', 'orders', 6);
    try {
      const trio = [0, 1, 2].map(() => spawnMember(schema, 'g1', 'orders'));
      await waitFor('3 members with 2 partitions each', () => trio.every((m) => m.assignment.length === 2));
      expect(sorted(trio.flatMap((m) => m.assignment))).toEqual(sorted([0, 1, 2, 3, 4, 5].map((p) => `orders/${p}`)));

      const fourth = spawnMember(schema, 'g1', 'orders');
      await waitFor('4 members sharing 6 partitions', () => {
        const all = [...trio, fourth].flatMap((m) => m.assignment);
        return all.length === 6 && new Set(all).size === 6 && fourth.assignment.length >= 1;
      });
      await stopMember(trio[0]!);
      const rest = [trio[1]!, trio[2]!, fourth];
      await waitFor('3 members with 2 each after a leave', () => rest.every((m) => m.assignment.length === 2));
      expect(sorted(rest.flatMap((m) => m.assignment))).toEqual(sorted([0, 1, 2, 3, 4, 5].map((p) => `orders/${p}`)));
      const described = await annals.admin().describeGroups(['g1']);
      expect(described.groups[0]!.members.length).toBe(3);
      expect(described.groups[0]!.members.map((m) => m.assignment.length)).toEqual([2, 2, 2]);
    } finally {
      await sampler.stop();
    }
    expect(sampler.samples).toBeGreaterThan(20);
    expect(sampler.violations).toEqual([]);
    for (const m of members) expect(m.crashes).toEqual([]);
  }, 60_000);

  it('more members than partitions: the extra ones stay idle and take over when an owner is killed', async () => {
    const annals = freshAnnals();
    await annals.admin().createTopics({ topics: [{ topic: 'few', numPartitions: 2 }] });
    const schema = (annals.storage as PgLogStorage).schema;
    const group = [0, 1, 2].map(() => spawnMember(schema, 'g2', 'few'));
    await waitFor('2 busy members and 1 idle', () => group.map((m) => m.assignment.length).sort().join() === '0,1,1');
    const victim = group.find((m) => m.assignment.length === 1)!;
    const killedAt = Date.now();
    victim.child.kill('SIGKILL');
    const survivors = group.filter((m) => m !== victim);
    await waitFor('the idle member takes over', () => survivors.every((m) => m.assignment.length === 1), 10_000);
    // The session dies with the process, so its locks free at once: well within 2 s plus a heartbeat.
    expect(Date.now() - killedAt).toBeLessThan(3_000);
  }, 60_000);
});

describe('hung members', () => {
  it('a member that stops heartbeating (SIGSTOP) loses its partitions after sessionTimeout, then rejoins when it wakes', async () => {
    const annals = freshAnnals();
    await annals.admin().createTopics({ topics: [{ topic: 'hung', numPartitions: 2 }] });
    const schema = (annals.storage as PgLogStorage).schema;
    const sampler = await lockSampler(schema, 'gh', 'hung', 2);
    try {
      const pair = [0, 1].map(() => spawnMember(schema, 'gh', 'hung', { sessionTimeout: 1_500, heartbeat: 200 }));
      await waitFor('1 partition each', () => pair.every((m) => m.assignment.length === 1));
      const [sleeper, survivor] = pair as [Member, Member];
      const stoppedAt = Date.now();
      sleeper.child.kill('SIGSTOP');
      await waitFor('the survivor owns both', () => survivor.assignment.length === 2, 10_000);
      const takeover = Date.now() - stoppedAt;
      expect(takeover).toBeGreaterThanOrEqual(1_400);
      expect(takeover).toBeLessThan(1_500 + 2_000);
      sleeper.child.kill('SIGCONT');
      await waitFor('the sleeper rejoins and the partitions are shared again', () => pair.every((m) => m.assignment.length === 1), 15_000);
    } finally {
      await sampler.stop();
    }
    expect(sampler.violations).toEqual([]);
  }, 60_000);
});

describe('fencing', () => {
  it("a member whose session was terminated mid-batch cannot commit: its transaction rolls back, the new owner's wins", async () => {
    const setup = freshAnnals();
    await setup.admin().createTopics({ topics: [{ topic: 'fenced', numPartitions: 1 }] });
    const schema = (setup.storage as PgLogStorage).schema;
    await setup.transaction(async (tx) => {
      await sql`CREATE TABLE effects (member text, "offset" int)`.execute(tx.db);
    });
    await setup.producer().send({ topic: 'fenced', messages: [{ value: 'only' }] });
    const make = (name: string) =>
      new Annals({ clientId: name, storage: new PgLogStorage({ connectionString: database.connectionString, schema }), retry: { retries: 3, initialRetryTime: 50 } });
    const zombieClient = make('zombie');
    const heirClient = make('heir');
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let entered!: () => void;
    const inHandler = new Promise<void>((r) => (entered = r));
    const zombie = zombieClient.consumer({ groupId: 'gf', heartbeatInterval: 100, sessionTimeout: 1000, retry: { retries: 0 } });
    const crashes: unknown[] = [];
    zombie.on(zombie.events.CRASH, (e) => crashes.push(e.payload.error));
    await zombie.subscribe({ topic: 'fenced', fromBeginning: true });
    await zombie.run({
      eachMessage: async ({ message, tx }) => {
        await sql`INSERT INTO effects VALUES ('zombie', ${Number(message.offset)})`.execute(tx.db);
        entered();
        await gate;
      },
    });
    await inHandler;
    // Cut the zombie's group session (not its pool): its partition lock frees, the heir claims it.
    const admin = await adminClient();
    await admin.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1`, [`annals:${zombie.memberId}`.slice(0, 63)]);
    const heir = heirClient.consumer({ groupId: 'gf', heartbeatInterval: 100, sessionTimeout: 1000 });
    const heirSeen: string[] = [];
    await heir.subscribe({ topic: 'fenced', fromBeginning: true });
    await heir.run({
      eachMessage: async ({ message, tx }) => {
        await sql`INSERT INTO effects VALUES ('heir', ${Number(message.offset)})`.execute(tx.db);
        heirSeen.push(message.offset);
      },
    });
    await waitFor('the heir processed the record', () => heirSeen.length === 1);
    release();
    await waitFor('the zombie noticed', () => crashes.length > 0);
    expect(crashes.some((e) => e instanceof IllegalGenerationError)).toBe(true);
    const { rows } = await admin.query(`SELECT member, "offset" FROM "${schema}".effects`).catch(async () =>
      admin.query(`SELECT member, "offset" FROM effects`),
    );
    expect(rows).toEqual([{ member: 'heir', offset: 0 }]);
    expect((await setup.admin().fetchOffsets({ groupId: 'gf', topics: ['fenced'] }))[0]!.partitions[0]!.offset).toBe('1');
    await zombie.disconnect();
    await heir.disconnect();
    await zombieClient.disconnect();
    await heirClient.disconnect();
  }, 30_000);
});

describe('exactly-once effects', () => {
  it('members killed at random: every record is applied exactly once', async () => {
    const annals = freshAnnals();
    const topic = 'eos';
    await annals.admin().createTopics({ topics: [{ topic, numPartitions: 6 }] });
    const schema = (annals.storage as PgLogStorage).schema;
    const admin = await adminClient();
    await admin.query(`CREATE TABLE counters (topic text, partition int, "offset" int, n int NOT NULL, PRIMARY KEY (topic, partition, "offset"))`);
    const total = 3_000;
    const producer = annals.producer();
    for (let i = 0; i < total; i += 500) {
      await producer.send({ topic, messages: Array.from({ length: 500 }, (_, j) => ({ key: `k${(i + j) % 97}`, value: `v${i + j}` })) });
    }
    const live: Member[] = [0, 1, 2].map(() => spawnMember(schema, 'geos', topic, { mode: 'exactly-once', delay: 1 }));
    let kills = 0;
    const deadline = Date.now() + 60_000;
    const counted = async () => (await admin.query(`SELECT count(*)::int AS n FROM counters`)).rows[0].n as number;
    while ((await counted()) < total && Date.now() < deadline) {
      await sleep(300 + Math.floor(Math.random() * 400));
      if (kills < 8) {
        const victim = live.splice(Math.floor(Math.random() * live.length), 1)[0]!;
        victim.child.kill('SIGKILL');
        kills++;
        live.push(spawnMember(schema, 'geos', topic, { mode: 'exactly-once', delay: 1 }));
      }
    }
    expect(kills).toBeGreaterThan(2);
    expect(await counted()).toBe(total);
    const { rows } = await admin.query(`SELECT n, count(*)::int AS records FROM counters GROUP BY n`);
    expect(rows).toEqual([{ n: 1, records: total }]);
    const lag = await annals.admin().describeGroupLag('geos');
    await waitFor('offsets committed to the end', async () => (await annals.admin().describeGroupLag('geos')).every((p) => p.lag === '0'));
    expect(lag.length).toBe(6);
  }, 90_000);
});
