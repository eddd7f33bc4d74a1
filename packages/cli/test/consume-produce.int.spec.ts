/** `annals produce` and `annals consume` through the built binary. */
import { spawn } from 'node:child_process';
import { defineEvent, defineTopic } from '@annals/core';
import { useTestDatabase } from '@annals/testing';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { BIN, interruptCli, json, runCli, testClient, type TestClient } from './run-cli.js';

// Every test spawns the binary several times; on a loaded machine one spawn can take seconds.
vi.setConfig({ testTimeout: 120_000 });

const db = useTestDatabase();
const run = (args: string[], stdin?: string) => runCli(args, { url: db.connectionString, ...(stdin !== undefined && { stdin }) });
const ndjson = (stdout: string) => stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);

const Shipped = defineEvent({
  type: 'parcel.shipped',
  versions: { 1: z.object({ parcelId: z.string(), grams: z.number().int(), at: z.date() }) },
});
const parcels = defineTopic({ name: 'parcels', partitions: 1, events: [Shipped], key: (e) => e.parcelId });

let annals: TestClient;

beforeAll(async () => {
  expect((await run(['migrate'])).code).toBe(0);
  expect((await run(['topics', 'create', 'lines'])).code).toBe(0);
  expect((await run(['topics', 'create', 'keyed', '--partitions', '3'])).code).toBe(0);
  annals = testClient('consume-test', db.connectionString);
});

afterAll(async () => {
  await annals?.disconnect();
});

describe('produce then consume', () => {
  it('sends one record per line of stdin, and consume -e -o beginning prints them in order', async () => {
    const lines = Array.from({ length: 25 }, (_, i) => `line ${i}`);
    const p = await run(['produce', 'lines'], lines.join('\n') + '\n');
    expect(p).toMatchObject({ code: 0, stdout: 'Sent 25 record(s) to "lines" (partition 0).\n' });
    const c = await run(['consume', 'lines', '-o', 'beginning', '-e']);
    expect(c.code).toBe(0);
    expect(c.stdout).toBe(lines.map((l) => `${l}\n`).join(''));
  });

  it('formats with -f: key, value, offset, partition, topic, headers, timestamp, sizes', async () => {
    const before = Date.now();
    const p = await run(['produce', 'keyed', '-K', ':', '-H', 'source=cli', '-H', 'trace=t-1'], 'alice:{"n":1}\nbob:{"n":2}\nalice:{"n":3}\n');
    expect(p.code).toBe(0);
    const c = await run(['consume', 'keyed', '-o', 'beginning', '-e', '-f', '%t/%p@%o %k=%s [%h] %K:%S %T\\n']);
    expect(c.code).toBe(0);
    const out = c.stdout.trim().split('\n');
    expect(out).toHaveLength(3);
    const alice = out.filter((l) => l.includes(' alice=')).map((l) => /^keyed\/(\d)@(\d+) alice=(\{"n":\d\}) \[source=cli,trace=t-1\] 5:7 \d+$/.exec(l));
    // Same key: same partition, in the order sent.
    expect(alice.every((m) => m !== null)).toBe(true);
    expect(alice[0]![1]).toBe(alice[1]![1]);
    expect(Number(alice[0]![2])).toBeLessThan(Number(alice[1]![2]));
    expect(alice.map((m) => m![3])).toEqual(['{"n":1}', '{"n":3}']);
    for (const line of out) expect(Number(line.split(' ').pop())).toBeGreaterThanOrEqual(before - 60_000);
  });

  it('prints JSON lines with --json', async () => {
    const c = await run(['consume', 'keyed', '-o', 'beginning', '-e', '--json']);
    expect(c.code).toBe(0);
    const records = ndjson(c.stdout);
    expect(records).toHaveLength(3);
    expect(records.find((r) => r['value'] === '{"n":2}')).toMatchObject({ topic: 'keyed', key: 'bob', headers: { source: 'cli', trace: 't-1' } });
    expect(typeof records[0]!['timestamp']).toBe('number');
  });

  it('takes JSON records with produce --json', async () => {
    const input = [
      JSON.stringify({ key: 'k1', value: { total: 5 }, headers: { h: 'v' } }),
      JSON.stringify({ value: 'plain text', partition: 2 }),
      JSON.stringify({ key: 'k3', value: null }),
    ].join('\n');
    const p = await run(['produce', 'keyed', '--json'], input);
    expect(p.code).toBe(0);
    expect(json(p)).toMatchObject({ topic: 'keyed', records: 3 });
    const c = ndjson((await run(['consume', 'keyed', '-o', 'beginning', '-e', '--json'])).stdout);
    expect(c.find((r) => r['key'] === 'k1')).toMatchObject({ value: '{"total":5}', headers: { h: 'v' } });
    expect(c.find((r) => r['value'] === 'plain text')).toMatchObject({ partition: 2, key: null });
    expect(c.find((r) => r['key'] === 'k3')).toMatchObject({ value: null });
    const bad = await run(['produce', 'keyed', '--json'], '{"key": "x"}\n');
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('stdin line 1: with --json each line is an object');
  });

  it('uses one key for every line with -k, and sends to a partition with -p', async () => {
    expect((await run(['produce', 'keyed', '-k', 'same', '-p', '1'], 'x\ny\n')).code).toBe(0);
    const c = await run(['consume', 'keyed', '-p', '1', '-o', '-2', '-e', '-f', '%k %s\\n']);
    expect(c).toMatchObject({ code: 0, stdout: 'same x\nsame y\n' });
  });
});

describe('consume offsets and limits', () => {
  it('-o N starts at an offset, -o -N N records before the end, -c stops after a count', async () => {
    expect((await run(['consume', 'lines', '-o', '23', '-e'])).stdout).toBe('line 23\nline 24\n');
    expect((await run(['consume', 'lines', '-o', '-3', '-e'])).stdout).toBe('line 22\nline 23\nline 24\n');
    expect((await run(['consume', 'lines', '-o', 'beginning', '-c', '2'])).stdout).toBe('line 0\nline 1\n');
    expect((await run(['consume', 'lines', '-o', 'end', '-e'])).stdout).toBe('');
  });

  it('-o @timestamp starts at the first record at or after a time', async () => {
    const r = await run(['consume', 'lines', '-o', '@2999-01-01T00:00:00Z', '-e']);
    expect(r).toMatchObject({ code: 0, stdout: '' });
    const past = await run(['consume', 'lines', '-o', '@0', '-e', '-c', '1']);
    expect(past.stdout).toBe('line 0\n');
  });

  it('follows the log without -e: records produced after it started are printed', async () => {
    const high = (await annals.admin().fetchTopicOffsets('lines'))[0]!.high;
    const child = spawn(process.execPath, [BIN, 'consume', 'lines', '-o', high, '-c', '2', '--verbose'], {
      env: { PATH: process.env['PATH'] ?? '', DATABASE_URL: db.connectionString },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    const started = new Promise<void>((resolve) =>
      child.stderr.setEncoding('utf8').on('data', (d: string) => {
        stderr += d;
        if (stderr.includes('following.')) resolve();
      }),
    );
    const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    try {
      await Promise.race([started, exited]);
      expect(stderr).toBe(`Reading "lines" from 0@${high}, following.\n`);
      expect((await run(['produce', 'lines'], 'late 1\nlate 2\n')).code).toBe(0);
      expect(await exited).toBe(0);
      expect(stdout).toBe('late 1\nlate 2\n');
    } finally {
      clearTimeout(timer);
      child.kill('SIGKILL');
    }
  });
});

describe('interrupts', () => {
  it('consume stops cleanly on SIGINT and exits 0', async () => {
    const code = await interruptCli(['consume', 'lines', '-o', 'end', '--verbose'], { url: db.connectionString, ready: /following\./, stream: 'stderr', signal: 'SIGINT' });
    expect(code).toBe(0);
  });
});

describe('typed records', () => {
  it('shows msgpack values (content-type header) as JSON', async () => {
    await annals.admin().createTopics({ topics: [parcels] });
    const at = new Date('2026-11-26T10:00:00.000Z');
    await annals.producer().publish(parcels, Shipped, { parcelId: 'p-1', grams: 1200, at });
    const human = await run(['consume', 'parcels', '-o', 'beginning', '-e', '-f', '%k %s %h\\n']);
    expect(human).toMatchObject({
      code: 0,
      stdout: 'p-1 {"parcelId":"p-1","grams":1200,"at":"2026-11-26T10:00:00.000Z"} event-type=parcel.shipped,schema-version=1,content-type=application/msgpack\n',
    });
    const [record] = ndjson((await run(['consume', 'parcels', '-o', 'beginning', '-e', '--json'])).stdout);
    expect(record).toMatchObject({
      key: 'p-1',
      contentType: 'application/msgpack',
      value: { parcelId: 'p-1', grams: 1200, at: '2026-11-26T10:00:00.000Z' },
      headers: { 'event-type': 'parcel.shipped', 'content-type': 'application/msgpack' },
    });
  });
});

describe('errors', () => {
  it('fails on an unknown topic or partition with exit 4', async () => {
    const c = await run(['consume', 'nope', '-e']);
    expect(c.code).toBe(4);
    expect(c.stderr).toContain('Topic "nope" does not exist');
    expect((await run(['consume', 'lines', '-p', '5', '-e'])).code).toBe(4);
    const p = await run(['produce', 'nope'], 'x\n');
    expect(p.code).toBe(4);
  });

  it('refuses a bad -o, -f, -c, -H or key delimiter with exit 2', async () => {
    expect((await run(['consume', 'lines', '-o', 'yesterday', '-e'])).code).toBe(2);
    const f = await run(['consume', 'lines', '-o', 'beginning', '-e', '-f', '%z']);
    expect(f.code).toBe(2);
    expect(f.stderr).toContain('unknown format token %z');
    expect((await run(['consume', 'lines', '-c', '0'])).code).toBe(2);
    expect((await run(['produce', 'lines', '-H', 'novalue'], 'x\n')).code).toBe(2);
    const k = await run(['produce', 'lines', '-K', ':'], 'no delimiter here\n');
    expect(k.code).toBe(2);
    expect(k.stderr).toContain('stdin line 1 has no key delimiter ":"');
  });
});
