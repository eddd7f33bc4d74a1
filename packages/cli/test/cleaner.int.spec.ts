/** `annals cleaner run` through the built binary: a pass's report, --json, the lease, bad input. */
import { useTestDatabase } from '@annals/testing';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { interruptCli, json, runCli, testClient, type TestClient } from './run-cli.js';

vi.setConfig({ testTimeout: 120_000 });

const db = useTestDatabase();
const run = (args: string[]) => runCli(args, { url: db.connectionString });
let annals: TestClient;

beforeAll(async () => {
  annals = testClient('cli-cleaner-test', db.connectionString);
  await annals.admin().createTopics({
    topics: [
      { topic: 'profiles', numPartitions: 1, configEntries: [{ name: 'cleanup.policy', value: 'compact' }] },
      { topic: 'audit', numPartitions: 1 },
    ],
  });
  const producer = annals.producer();
  await producer.send({ topic: 'profiles', messages: ['a', 'b', 'c', 'd'].map((v, i) => ({ key: i % 2 === 0 ? 'u1' : 'u2', value: v })) });
  await producer.send({ topic: 'audit', messages: [{ value: 'x' }] });
});
afterAll(() => annals.disconnect());

interface PassJson {
  ran: boolean;
  durationMs: number;
  partitions: Array<{ topic: string; partition: number; recordsCompacted: number; cleanedOffset: string; logStartOffset: string; logStartMovedBy: string | null }>;
}

describe('annals cleaner run', () => {
  it('runs one pass and prints what it changed', async () => {
    const result = await run(['cleaner', 'run']);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^TOPIC\s+PARTITION\s+LOG-START\s+MOVED-BY\s+COMPACTED/m);
    expect(result.stdout).toMatch(/^profiles\s+0\s+0\s+-\s+2\s+0\s+0\s+0\s+4\s*$/m);
    expect(result.stdout).not.toMatch(/^audit/m); // nothing changed there
    expect(result.stdout).toMatch(/Cleaned 2 partition\(s\) in \d+ ms: 2 compacted/);
    const { records } = await annals.storage.fetch('profiles', 0, 0n, { maxRecords: 10, maxBytes: 1 << 20 });
    expect(records.map((r) => r.offset)).toEqual([2n, 3n]);
  });

  it('--json gives every partition, --topic limits the pass', async () => {
    const result = await run(['cleaner', 'run', '--topic', 'profiles', '--json']);
    expect(result.code).toBe(0);
    const pass = json<PassJson>(result);
    expect(pass.ran).toBe(true);
    expect(pass.partitions).toEqual([expect.objectContaining({ topic: 'profiles', partition: 0, recordsCompacted: 0, cleanedOffset: '4', logStartOffset: '0' })]);
  });

  it('exits 7 and does nothing while another process holds the cleaner lease', async () => {
    const lease = await annals.storage.cleaner!.acquireCleaner();
    expect(lease).not.toBeNull();
    try {
      const result = await run(['cleaner', 'run', '--json']);
      expect(result.code).toBe(7);
      expect(json(result)).toEqual({ ran: false, reason: 'another-cleaner-holds-the-lease' });
      const human = await run(['cleaner', 'run']);
      expect(human.code).toBe(7);
      expect(human.stdout).toMatch(/Another process holds the cleaner lease/);
    } finally {
      await lease!.release();
    }
  });

  it('refuses an unknown topic and a bad --interval with a usage error', async () => {
    const unknown = await run(['cleaner', 'run', '--topic', 'nope']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/Unknown topic\(s\): nope\. List them with: annals topics list/);
    const interval = await run(['cleaner', 'run', '--loop', '--interval', 'soon']);
    expect(interval.code).toBe(2);
    expect(interval.stderr).toMatch(/--interval must be an integer ≥ 10/);
  });
});

describe('interrupts', () => {
  it('regression: cleaner run --loop stops cleanly on SIGTERM and exits 0 (it was killed with 130)', async () => {
    // SIGTERM once its first pass has reported (or found the lease held): it is waiting for the next one.
    const code = await interruptCli(['cleaner', 'run', '--loop', '--interval', '60000'], { url: db.connectionString, ready: /Cleaned|lease/, stream: 'stdout', signal: 'SIGTERM' });
    expect(code).toBe(0);
  });
});
