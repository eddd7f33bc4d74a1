/**
 * `annals groups …` through the built binary, with a real consumer-group member run in this
 * process (so "active group" is a live member with a heartbeat, not a fake row).
 */
import type { GroupLag } from '@annals/core';
import { useTestDatabase } from '@annals/testing';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { json, runCli, testClient, type TestClient } from './run-cli.js';

// Every test spawns the binary several times; on a loaded machine one spawn can take seconds.
vi.setConfig({ testTimeout: 120_000 });

const db = useTestDatabase();
const run = (args: string[], stdin?: string) => runCli(args, { url: db.connectionString, ...(stdin !== undefined && { stdin }) });

interface GroupJson {
  groupId: string;
  state: string;
  members: Array<{ memberId: string; clientId: string; assignment: Array<{ topic: string; partition: number }> }>;
  partitions: GroupLag[];
}
interface ResetJson {
  groupId: string;
  executed: boolean;
  offsets: Array<{ topic: string; partition: number; currentOffset: string | null; newOffset: string }>;
}

const committed = async (group: string): Promise<Record<string, string | null>> => {
  const g = json<GroupJson>(await run(['groups', 'describe', group, '--json']));
  return Object.fromEntries(g.partitions.map((p) => [`${p.topic}:${p.partition}`, p.currentOffset]));
};

/** Polls `check` every 100 ms, at most `timeoutMs`. */
async function until(what: string, check: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

let annals: TestClient;
let consumer: ReturnType<TestClient['consumer']> | undefined;

beforeAll(async () => {
  expect((await run(['migrate'])).code).toBe(0);
  expect((await run(['topics', 'create', 'payments', '--partitions', '2'])).code).toBe(0);
  expect((await run(['topics', 'create', 'refunds'])).code).toBe(0);
  // Keys k0..k9 spread over both partitions of payments; refunds gets 4 records.
  expect((await run(['produce', 'payments', '-K', ':'], Array.from({ length: 10 }, (_, i) => `k${i}:payment ${i}`).join('\n'))).code).toBe(0);
  expect((await run(['produce', 'refunds'], 'r0\nr1\nr2\nr3\n')).code).toBe(0);

  annals = testClient('billing-test', db.connectionString);
  consumer = annals.consumer({ groupId: 'billing', heartbeatInterval: 500 });
  await consumer.subscribe({ topics: ['payments', 'refunds'], fromBeginning: true });
  await consumer.run({ eachMessage: async () => {} });
  const admin = annals.admin();
  await until('the member to consume everything', async () => {
    const lag = await admin.describeGroupLag('billing');
    return lag.length === 3 && lag.every((p) => p.lag === '0' && p.currentOffset !== null);
  });
});

afterAll(async () => {
  await annals?.disconnect();
});

describe('an active group', () => {
  it('lists as Stable with its member', async () => {
    const r = await run(['groups', 'list']);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('GROUP    STATE   MEMBERS\nbilling  Stable  1\n');
  });

  it("describes with the seed's columns plus LAG-SECONDS, and its members", async () => {
    const r = await run(['groups', 'describe', 'billing']);
    expect(r.code).toBe(0);
    const lines = r.stdout.split('\n');
    expect(lines[0]).toBe('Group: billing\tState: Stable\tMembers: 1');
    expect(lines[2]).toMatch(/^TOPIC\s+PARTITION\s+CURRENT-OFFSET\s+LOG-END-OFFSET\s+LAG\s+LAG-SECONDS\s+CONSUMER-ID$/);
    expect(lines.slice(3, 6).join('\n')).toMatch(/^payments\s+0\s+(\d+)\s+\1\s+0\s+0\.0\s+billing-test-\S+\npayments\s+1\s+(\d+)\s+\2\s+0\s+0\.0\s+billing-test-\S+\nrefunds\s+0\s+4\s+4\s+0\s+0\.0\s+billing-test-\S+$/);
    expect(r.stdout).toMatch(/MEMBER-ID\s+CLIENT-ID\s+HOST\s+PARTITIONS\s+LAST-HEARTBEAT\nbilling-test-\S+\s+billing-test\s+\S+\s+payments:0,payments:1,refunds:0\s+\d{4}-/);
    const j = json<GroupJson>(await run(['groups', 'describe', 'billing', '--json']));
    expect(j).toMatchObject({ groupId: 'billing', state: 'Stable' });
    expect(j.members).toHaveLength(1);
    expect(j.members[0]!.assignment).toHaveLength(3);
    expect(j.partitions.map((p) => p.consumerId)).toEqual([j.members[0]!.memberId, j.members[0]!.memberId, j.members[0]!.memberId]);
  });

  it('refuses reset-offsets, dry run or not, with exit 3 and changes nothing', async () => {
    const before = await committed('billing');
    const r = await run(['groups', 'reset-offsets', 'billing', '--all-topics', '--to-earliest', '--execute']);
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/^error \[NON_EMPTY_GROUP\]: Group "billing" is active \(1 live member\(s\): billing-test-/);
    expect(r.stderr).toContain("hint: stop the group's consumers");
    expect((await run(['groups', 'reset-offsets', 'billing', '--topic', 'payments', '--to-earliest'])).code).toBe(3);
    const j = await run(['groups', 'reset-offsets', 'billing', '--topic', 'payments', '--to-earliest', '--json']);
    expect(j.code).toBe(3);
    expect(JSON.parse(j.stderr).error).toMatchObject({ code: 'NON_EMPTY_GROUP', exitCode: 3 });
    expect(await committed('billing')).toEqual(before);
  });

  it('refuses delete with exit 3', async () => {
    const r = await run(['groups', 'delete', 'billing']);
    expect(r.code).toBe(3);
    expect(r.stderr).toContain('NON_EMPTY_GROUP');
  });
});

describe('an inactive group', () => {
  beforeAll(async () => {
    await consumer!.disconnect();
    consumer = undefined;
    await until('the member to leave', async () => (await annals.admin().describeGroups(['billing'])).groups[0]!.members.length === 0);
  });

  it('lists as Empty', async () => {
    expect(json(await run(['groups', 'list', '--json']))).toEqual([{ groupId: 'billing', state: 'Empty', members: 0 }]);
  });

  it('dry run (the default) prints the planned offsets and changes nothing', async () => {
    const before = await committed('billing');
    const r = await run(['groups', 'reset-offsets', 'billing', '--all-topics', '--to-earliest']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^GROUP\s+TOPIC\s+PARTITION\s+CURRENT-OFFSET\s+NEW-OFFSET\nbilling\s+payments\s+0\s+\d+\s+0\nbilling\s+payments\s+1\s+\d+\s+0\nbilling\s+refunds\s+0\s+4\s+0\n\nDry run: nothing changed\. Add --execute to commit these offsets\.\n$/);
    const explicit = json<ResetJson>(await run(['groups', 'reset-offsets', 'billing', '--topic', 'refunds', '--to-offset', '1', '--dry-run', '--json']));
    expect(explicit).toEqual({ groupId: 'billing', executed: false, offsets: [{ topic: 'refunds', partition: 0, currentOffset: '4', newOffset: '1' }] });
    expect(await committed('billing')).toEqual(before);
  });

  it('--execute commits the new offsets', async () => {
    const r = json<ResetJson>(await run(['groups', 'reset-offsets', 'billing', '--topic', 'refunds', '--to-earliest', '--execute', '--json']));
    expect(r).toEqual({ groupId: 'billing', executed: true, offsets: [{ topic: 'refunds', partition: 0, currentOffset: '4', newOffset: '0' }] });
    const after = await committed('billing');
    expect(after['refunds:0']).toBe('0');
    const g = json<GroupJson>(await run(['groups', 'describe', 'billing', '--json']));
    expect(g.partitions.find((p) => p.topic === 'refunds')).toMatchObject({ lag: '4', logEndOffset: '4' });
  });

  it('shifts by n, clamped to the log, and resets only the named partitions', async () => {
    const r = json<ResetJson>(await run(['groups', 'reset-offsets', 'billing', '--topic', 'refunds', '--shift-by', '3', '--execute', '--json']));
    expect(r.offsets).toEqual([{ topic: 'refunds', partition: 0, currentOffset: '0', newOffset: '3' }]);
    const clamped = json<ResetJson>(await run(['groups', 'reset-offsets', 'billing', '--topic', 'refunds', '--shift-by', '-100', '--json']));
    expect(clamped.offsets[0]!.newOffset).toBe('0');
    const before = await committed('billing');
    const one = json<ResetJson>(await run(['groups', 'reset-offsets', 'billing', '--topic', 'payments:1', '--to-earliest', '--execute', '--json']));
    expect(one.offsets.map((o) => [o.partition, o.newOffset])).toEqual([[1, '0']]);
    const after = await committed('billing');
    expect(after['payments:0']).toBe(before['payments:0']);
    expect(after['payments:1']).toBe('0');
  });

  it('moves to a time: --to-datetime and --by-duration', async () => {
    const future = json<ResetJson>(await run(['groups', 'reset-offsets', 'billing', '--topic', 'refunds', '--to-datetime', '2999-01-01T00:00:00Z', '--json']));
    expect(future.offsets[0]!.newOffset).toBe('4');
    const past = json<ResetJson>(await run(['groups', 'reset-offsets', 'billing', '--topic', 'refunds', '--by-duration', 'P1D', '--json']));
    expect(past.offsets[0]!.newOffset).toBe('0');
    const latest = json<ResetJson>(await run(['groups', 'reset-offsets', 'billing', '--all-topics', '--to-latest', '--execute', '--json']));
    expect(latest.offsets.map((o) => o.newOffset)).toEqual([...(await committedValues())]);
  });

  it('refuses a bad command line with exit 2, an unknown topic, partition or group with exit 4', async () => {
    expect((await run(['groups', 'reset-offsets', 'billing', '--all-topics'])).code).toBe(2); // no target
    expect((await run(['groups', 'reset-offsets', 'billing', '--all-topics', '--to-earliest', '--to-latest'])).code).toBe(2);
    expect((await run(['groups', 'reset-offsets', 'billing', '--to-earliest'])).code).toBe(2); // no topic
    expect((await run(['groups', 'reset-offsets', 'billing', '--all-topics', '--by-duration', '1 hour'])).code).toBe(2);
    expect((await run(['groups', 'reset-offsets', 'billing', '--all-topics', '--to-offset', 'x'])).code).toBe(2);
    expect((await run(['groups', 'reset-offsets', 'billing', '--topic', 'nope', '--to-earliest'])).code).toBe(4);
    expect((await run(['groups', 'reset-offsets', 'billing', '--topic', 'refunds:7', '--to-earliest'])).code).toBe(4);
    const unknown = await run(['groups', 'describe', 'nobody']);
    expect(unknown.code).toBe(4);
    expect(unknown.stderr).toContain('error [GROUP_ID_NOT_FOUND]: Consumer group "nobody" does not exist');
  });

  it('deletes the group', async () => {
    expect((await run(['groups', 'delete', 'billing'])).stdout).toBe('Deleted consumer group "billing".\n');
    expect((await run(['groups', 'list'])).stdout).toBe('No consumer groups.\n');
    expect((await run(['groups', 'delete', 'billing'])).code).toBe(4);
  });
});

async function committedValues(): Promise<string[]> {
  const marks = await annals.admin().fetchTopicOffsets('payments');
  const refunds = await annals.admin().fetchTopicOffsets('refunds');
  return [...marks.map((m) => m.high), ...refunds.map((m) => m.high)];
}
