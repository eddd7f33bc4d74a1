/**
 * `annals produce` — kcat's producer mode: one record per line of stdin. Lines are sent in
 * batches; each batch commits on its own (a failure stops the command, and the batches before it
 * stay written — the summary says how many).
 */
import { createInterface } from 'node:readline';
import type { IHeaders, Message, RecordMetadata } from '@annals/core';
import { CliUsageError } from '../exit-codes.js';
import { collect, parseHeader, parseInteger } from '../internal/parse.js';
import type { CommandGroup } from '../program.js';

interface ProduceOptions {
  readonly key?: string;
  readonly keyDelimiter?: string;
  readonly header?: string[];
  readonly partition?: string;
}

const BATCH = 500;

/** One line of `produce --json` input. */
interface JsonLine {
  readonly key?: string | null;
  readonly value: unknown;
  readonly headers?: Record<string, string>;
  readonly partition?: number;
  readonly timestamp?: number | string;
}

function parseJsonLine(line: string, n: number): JsonLine {
  let parsed: unknown;
  try {
    parsed = JSON.parse(line);
  } catch (cause) {
    throw new CliUsageError(`stdin line ${n} is not JSON: ${(cause as Error).message}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed) || !('value' in parsed)) {
    throw new CliUsageError(`stdin line ${n}: with --json each line is an object {"key"?, "value", "headers"?, "partition"?, "timestamp"?}.`);
  }
  const o = parsed as Record<string, unknown>;
  if (o['key'] !== undefined && o['key'] !== null && typeof o['key'] !== 'string') throw new CliUsageError(`stdin line ${n}: "key" must be a string or null.`);
  if (o['headers'] !== undefined && (typeof o['headers'] !== 'object' || o['headers'] === null || Object.values(o['headers']).some((v) => typeof v !== 'string'))) {
    throw new CliUsageError(`stdin line ${n}: "headers" must be an object of strings.`);
  }
  if (o['partition'] !== undefined && !Number.isSafeInteger(o['partition'])) throw new CliUsageError(`stdin line ${n}: "partition" must be an integer.`);
  return o as unknown as JsonLine;
}

/** Registers `annals produce <topic>`. */
export const produceCommand: CommandGroup = (program, kit) => {
  program
    .command('produce')
    .description('send one record per line of stdin')
    .argument('<topic>', 'topic name')
    .option('-k, --key <key>', 'the key of every record')
    .option('-K, --key-delimiter <delim>', 'split each line at the first <delim> into key and value')
    .option('-H, --header <name=value>', 'a header on every record (repeatable)', collect)
    .option('-p, --partition <n>', 'send to this partition instead of the key\'s')
    .addHelpText(
      'after',
      '\nEmpty lines are skipped. With --json, each line is a JSON object {"key"?, "value", "headers"?, "partition"?, "timestamp"?}:\n' +
        'a string value is sent as its text, any other value as its JSON text; the summary is printed as JSON.\n',
    )
    .action(
      kit.action<ProduceOptions>(async (ctx, options, [topicArg]) => {
        const topic = topicArg as string;
        if (options.key !== undefined && options.keyDelimiter !== undefined) throw new CliUsageError('Give -k (one key for all) or -K (a key per line), not both.');
        if (options.keyDelimiter === '') throw new CliUsageError('-K needs a non-empty delimiter.');
        const headers: IHeaders = Object.fromEntries((options.header ?? []).map(parseHeader));
        const partition = options.partition === undefined ? undefined : parseInteger(options.partition, '--partition');
        const producer = ctx.client().producer();
        // Fail before reading stdin when the topic does not exist.
        await ctx.client().admin().fetchTopicOffsets(topic);

        const results: RecordMetadata[] = [];
        let sent = 0;
        let batch: Message[] = [];
        const flush = async (): Promise<void> => {
          if (batch.length === 0) return;
          results.push(...(await producer.send({ topic, messages: batch })));
          sent += batch.length;
          batch = [];
        };
        const lines = createInterface({ input: ctx.io.stdin, crlfDelay: Infinity });
        let n = 0;
        for await (const line of lines) {
          n++;
          if (line === '') continue;
          let message: Message;
          if (ctx.options.json) {
            const j = parseJsonLine(line, n);
            const merged = { ...headers, ...(j.headers ?? {}) };
            const p = j.partition ?? partition;
            message = {
              key: j.key === undefined ? (options.key ?? null) : j.key,
              value: j.value === null ? null : typeof j.value === 'string' ? j.value : JSON.stringify(j.value),
              ...(Object.keys(merged).length > 0 && { headers: merged }),
              ...(p !== undefined && { partition: p }),
              ...(j.timestamp !== undefined && { timestamp: j.timestamp }),
            };
          } else {
            let key: string | null = options.key ?? null;
            let value = line;
            if (options.keyDelimiter !== undefined) {
              const at = line.indexOf(options.keyDelimiter);
              if (at < 0) throw new CliUsageError(`stdin line ${n} has no key delimiter ${JSON.stringify(options.keyDelimiter)} (${sent} record(s) were sent before it).`);
              key = line.slice(0, at);
              value = line.slice(at + options.keyDelimiter.length);
            }
            message = { key, value, ...(Object.keys(headers).length > 0 && { headers }), ...(partition !== undefined && { partition }) };
          }
          batch.push(message);
          if (batch.length >= BATCH) await flush();
        }
        await flush();
        await producer.disconnect();

        const partitions = [...new Set(results.map((r) => r.partition))].sort((a, b) => a - b);
        ctx.print({ topic, records: sent, partitions }, () =>
          sent === 0 ? 'No records: stdin had no lines.\n' : `Sent ${sent} record(s) to "${topic}" (partition${partitions.length === 1 ? '' : 's'} ${partitions.join(', ')}).\n`,
        );
      }),
    );
};
