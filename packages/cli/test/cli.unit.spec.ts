/** The CLI's pure parts: value parsers, the format string, tables, the progress bar, exit codes, the config loader. */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { GroupNotEmptyError, InvalidConfigError, StorageError, UnknownTopicOrPartitionError, type KafkaMessage } from '@annals/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseStart } from '../src/commands/consume.js';
import { loadAnnalsConfig, loadConfigModules } from '../src/config.js';
import { CliNotFoundError, CliUsageError, ExitCode, exitCodeOf } from '../src/exit-codes.js';
import { parseConfigAssignments, parseDatetime, parseDuration, parseInteger, parseTopicPartitions } from '../src/internal/parse.js';
import { ProgressBar, formatDuration, renderProgress } from '../src/internal/progress.js';
import { compileFormat, recordJson } from '../src/internal/records.js';
import { renderTable } from '../src/internal/table.js';

const FIXTURE = fileURLToPath(new URL('./fixtures/order-totals.mjs', import.meta.url));

const message = (over: Partial<KafkaMessage> = {}): KafkaMessage => ({
  key: Buffer.from('k-1'),
  value: Buffer.from('hello'),
  timestamp: '1700000000000',
  offset: '42',
  headers: { a: Buffer.from('1'), b: Buffer.from('two') },
  size: 10,
  attributes: 0,
  ...over,
});

describe('value parsers', () => {
  it("reads Kafka's config list syntax", () => {
    expect(parseConfigAssignments(['retention.ms=1,cleanup.policy=compact,delete'], '--add-config')).toEqual([
      { name: 'retention.ms', value: '1' },
      { name: 'cleanup.policy', value: 'compact,delete' },
    ]);
    expect(parseConfigAssignments(['cleanup.policy=[compact,delete]', 'retention.bytes=5'], '--add-config')).toEqual([
      { name: 'cleanup.policy', value: 'compact,delete' },
      { name: 'retention.bytes', value: '5' },
    ]);
    expect(() => parseConfigAssignments(['retention.ms'], '--add-config')).toThrow(CliUsageError);
    expect(() => parseConfigAssignments(['=1'], '--add-config')).toThrow('empty key');
  });

  it('reads integers, topic:partitions, durations and date-times', () => {
    expect(parseInteger('12', '-p', 1)).toBe(12);
    expect(() => parseInteger('0', '-p', 1)).toThrow('≥ 1');
    expect(() => parseInteger('1.5', '-p')).toThrow('must be an integer');
    expect(parseTopicPartitions('orders')).toEqual({ topic: 'orders', partitions: undefined });
    expect(parseTopicPartitions('orders:0,2')).toEqual({ topic: 'orders', partitions: [0, 2] });
    expect(parseDuration('PT30M', 'd')).toBe(1_800_000);
    expect(parseDuration('P1DT2H', 'd')).toBe(93_600_000);
    expect(parseDuration('PT1.5S', 'd')).toBe(1_500);
    for (const bad of ['P', 'PT', '30m', 'P1H']) expect(() => parseDuration(bad, 'd'), bad).toThrow(CliUsageError);
    expect(parseDatetime('2026-11-26T10:00:00Z', 't')).toBe(Date.UTC(2026, 10, 26, 10));
    expect(parseDatetime('1700000000000', 't')).toBe(1_700_000_000_000);
    expect(() => parseDatetime('tomorrow', 't')).toThrow(CliUsageError);
  });

  it('reads consume -o', () => {
    expect(parseStart('beginning')).toEqual({ kind: 'beginning' });
    expect(parseStart('end')).toEqual({ kind: 'end' });
    expect(parseStart('17')).toEqual({ kind: 'absolute', offset: 17n });
    expect(parseStart('-5')).toEqual({ kind: 'fromEnd', records: 5n });
    expect(parseStart('@1700000000000')).toEqual({ kind: 'timestamp', timestamp: 1_700_000_000_000 });
    expect(parseStart('s@2026-11-26T10:00:00Z')).toEqual({ kind: 'timestamp', timestamp: Date.UTC(2026, 10, 26, 10) });
    expect(() => parseStart('middle')).toThrow(CliUsageError);
  });
});

describe('records', () => {
  it('formats with every token and escape', () => {
    const f = compileFormat('%t|%p|%o|%k|%s|%h|%T|%K|%S|100%%\\t\\n');
    expect(f('orders', 3, message())).toBe('orders|3|42|k-1|hello|a=1,b=two|1700000000000|3|5|100%\t\n');
    expect(f('orders', 0, message({ key: null, value: null }))).toBe('orders|0|42|||a=1,b=two|1700000000000|-1|-1|100%\t\n');
    expect(() => compileFormat('%x')).toThrow('unknown format token %x');
  });

  it('decodes by content type, and shows bytes that are not UTF-8 as base64', () => {
    const typed = message({ value: Buffer.from('{"a":[1,2]}'), headers: { 'content-type': Buffer.from('application/json') } });
    expect(recordJson('t', 0, typed)).toMatchObject({ value: { a: [1, 2] }, contentType: 'application/json' });
    expect(compileFormat('%s')('t', 0, typed)).toBe('{"a":[1,2]}');
    const binary = message({ key: Buffer.from([0xff, 0xfe]), value: Buffer.from([0xc3, 0x28]) });
    expect(recordJson('t', 0, binary)).toMatchObject({ key: '//4=', keyEncoding: 'base64', value: 'wyg=', valueEncoding: 'base64' });
  });
});

describe('tables and progress', () => {
  it('aligns columns and prints - for missing cells', () => {
    expect(renderTable(['TOPIC', 'PARTITION', 'OWNER'], [['orders', 0, null], ['o', 12, 'm-1']])).toBe('TOPIC   PARTITION  OWNER\norders  0          -\no       12         m-1\n');
  });

  it('draws a bar with percentage, rate and ETA', () => {
    expect(renderProgress({ label: 'p v2 replaying', done: 500, total: 1000, rate: 1234.4, etaMs: 65_000 })).toBe(
      `p v2 replaying [${'█'.repeat(15)}${'░'.repeat(15)}]  50% 500/1000 1,234/s ETA 1m05s`,
    );
    expect(renderProgress({ label: 'x', done: 0, total: 0, rate: 0, etaMs: null })).toContain('  0% 0/0 0/s ETA --');
    expect(formatDuration(3_723_000)).toBe('1h02m');
    const stream = new PassThrough();
    let written = '';
    stream.on('data', (d: Buffer) => (written += d.toString()));
    const bar = new ProgressBar(stream);
    bar.update({ label: 'x', done: 1, total: 2, rate: 1, etaMs: 1000 });
    bar.end();
    expect(written).toMatch(/^\r\u001b\[2Kx \[.*\]  50% 1\/2 1\/s ETA 1s\n$/);
  });
});

describe('exit codes', () => {
  it('maps errors by code', () => {
    expect(exitCodeOf(new CliUsageError('x'))).toBe(ExitCode.USAGE);
    expect(exitCodeOf(new CliNotFoundError('x'))).toBe(ExitCode.NOT_FOUND);
    expect(exitCodeOf(new GroupNotEmptyError('x'))).toBe(ExitCode.GROUP_ACTIVE);
    expect(exitCodeOf(new UnknownTopicOrPartitionError('x'))).toBe(ExitCode.NOT_FOUND);
    expect(exitCodeOf(new InvalidConfigError('x'))).toBe(ExitCode.USAGE);
    expect(exitCodeOf(new StorageError('x', '42P01', false))).toBe(ExitCode.ERROR);
    expect(exitCodeOf(new Error('x'))).toBe(ExitCode.ERROR);
  });
});

describe('config loader', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'annals-config-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('returns undefined when there is no config file', async () => {
    expect(await loadAnnalsConfig({ cwd: dir })).toBeUndefined();
  });

  it('reads a JSON config, resolving module paths against the file', async () => {
    await writeFile(path.join(dir, 'annals.config.json'), JSON.stringify({ url: 'postgres://x/y', modules: ['./dist/a.js'] }));
    const config = await loadAnnalsConfig({ cwd: dir });
    expect(config).toEqual({ file: path.join(dir, 'annals.config.json'), url: 'postgres://x/y', schema: undefined, modules: [path.join(dir, 'dist/a.js')] });
    expect(Object.isFrozen(config)).toBe(true);
  });

  it('prefers annals.config.js over .mjs over .json, and reads the default export', async () => {
    await writeFile(path.join(dir, 'annals.config.mjs'), "export default { schema: 'from_mjs' };\n");
    expect((await loadAnnalsConfig({ cwd: dir }))!.schema).toBe('from_mjs');
  });

  it('refuses malformed files with the file and the problem', async () => {
    const bad = path.join(dir, 'bad.json');
    await writeFile(bad, '{ nope');
    await expect(loadAnnalsConfig({ cwd: dir, file: 'bad.json' })).rejects.toThrow(`Config file ${bad} is not valid JSON`);
    await writeFile(bad, JSON.stringify({ modules: 'a.js' }));
    await expect(loadAnnalsConfig({ cwd: dir, file: 'bad.json' })).rejects.toThrow('"modules" must be an array');
    await expect(loadAnnalsConfig({ cwd: dir, file: 'missing.json' })).rejects.toThrow(CliNotFoundError);
  });

  it('loads modules and classifies their exports', async () => {
    const loaded = await loadConfigModules({ modules: [FIXTURE] });
    expect(loaded.exports.map((e) => e.name).sort()).toEqual(['OrderCreated', 'orderTotals', 'orders']);
    expect(loaded.registrables).toHaveLength(1);
    expect(loaded.topics.map((t) => t.name)).toEqual(['cli-orders']);
    expect(loaded.events.map((e) => e.type)).toEqual(['order.created']);
  });
});

describe('docs/cli.md', () => {
  it('documents every command with an example run', async () => {
    const { readFile } = await import('node:fs/promises');
    const { createProgram } = await import('../src/program.js');
    const markdown = await readFile(fileURLToPath(new URL('../../../docs/cli.md', import.meta.url)), 'utf8');
    const io = { stdout: new PassThrough(), stderr: new PassThrough(), stdin: new PassThrough(), env: {}, cwd: tmpdir(), signal: new AbortController().signal };
    const program = createProgram(io, () => {});
    const commands = program.commands.flatMap((group) => (group.commands.length === 0 ? [group.name()] : group.commands.map((c) => `${group.name()} ${c.name()}`)));
    expect(commands.length).toBeGreaterThan(15);
    for (const command of commands) {
      expect(markdown, `a heading for \`annals ${command}\``).toMatch(new RegExp(`^##+ \`(annals )?${command}[ \`]`, 'm'));
      expect(markdown, `an example of \`annals ${command}\``).toContain(`annals ${command}`);
    }
  });
});
