/**
 * `annals consume` — kcat's consumer mode: reads partitions from an offset without a consumer
 * group (nothing is committed), prints each record with a format string or as JSON lines, and
 * either follows the log (woken by commit notifications) or exits at its end with `-e`.
 */
import { UnknownTopicOrPartitionError } from '@annals/core';
import { toJson, type CliContext } from '../context.js';
import { CliUsageError } from '../exit-codes.js';
import { parseDatetime, parseInteger } from '../internal/parse.js';
import { compileFormat, recordJson } from '../internal/records.js';
import type { CommandGroup } from '../program.js';

interface ConsumeOptions {
  readonly offset: string;
  readonly partition?: string;
  readonly exit?: boolean;
  readonly count?: string;
  readonly format?: string;
}

/** Where to start, as `-o` says it. */
export type StartSpec =
  | { readonly kind: 'beginning' }
  | { readonly kind: 'end' }
  | { readonly kind: 'absolute'; readonly offset: bigint }
  | { readonly kind: 'fromEnd'; readonly records: bigint }
  | { readonly kind: 'timestamp'; readonly timestamp: number };

/** Parses `-o`: `beginning`, `end`, `N`, `-N` (N before the end) or `@timestamp` (ms or ISO-8601). */
export function parseStart(value: string): StartSpec {
  const v = value.trim();
  if (v === 'beginning' || v === 'earliest') return { kind: 'beginning' };
  if (v === 'end' || v === 'latest') return { kind: 'end' };
  if (/^\d+$/.test(v)) return { kind: 'absolute', offset: BigInt(v) };
  if (/^-\d+$/.test(v)) return { kind: 'fromEnd', records: BigInt(v.slice(1)) };
  if (v.startsWith('@') || v.startsWith('s@')) return { kind: 'timestamp', timestamp: parseDatetime(v.slice(v.indexOf('@') + 1), '-o @') };
  throw new CliUsageError(`-o takes beginning, end, an offset N, -N (N records before the end) or @timestamp, got ${JSON.stringify(value)}.`);
}

const FETCH_RECORDS = 500;
const POLL_MS = 1_000;

async function write(ctx: CliContext, text: string): Promise<void> {
  if (!ctx.io.stdout.write(text)) await new Promise<void>((resolve) => ctx.io.stdout.once('drain', () => resolve()));
}

/** Registers `annals consume <topic>`. */
export const consumeCommand: CommandGroup = (program, kit) => {
  program
    .command('consume')
    .description('print records of a topic (no consumer group, nothing committed)')
    .argument('<topic>', 'topic name')
    .option('-o, --offset <where>', 'start at beginning | end | N | -N (N before the end) | @timestamp', 'end')
    .option('-p, --partition <n>', 'only this partition (default: all)')
    .option('-e, --exit', 'exit when the end of every partition is reached')
    .option('-c, --count <n>', 'exit after n records')
    .option('-f, --format <fmt>', 'output format: %k key, %s value, %o offset, %p partition, %t topic, %h headers, %T timestamp, %S / %K sizes', '%s\\n')
    .addHelpText('after', '\nValues written by typed publishers (content-type application/msgpack or application/json) are shown as JSON.\nWith --json, each record is one JSON object per line.\n')
    .action(
      kit.action<ConsumeOptions>(async (ctx, options, [topicArg]) => {
        const topic = topicArg as string;
        const start = parseStart(options.offset);
        const limit = options.count === undefined ? undefined : parseInteger(options.count, '--count', 1);
        const render = compileFormat(options.format ?? '%s\\n');
        const annals = ctx.client();
        const admin = annals.admin();
        const marks = await admin.fetchTopicOffsets(topic);
        let partitions = marks.map((m) => m.partition);
        if (options.partition !== undefined) {
          const p = parseInteger(options.partition, '--partition');
          if (!partitions.includes(p)) throw new UnknownTopicOrPartitionError(`Topic "${topic}" has no partition ${p} (it has ${marks.length}).`, { topic, partition: p });
          partitions = [p];
        }
        const byTime = start.kind === 'timestamp' ? await admin.fetchTopicOffsetsByTimestamp(topic, start.timestamp) : [];
        const next = new Map<number, bigint>();
        for (const p of partitions) {
          const m = marks.find((x) => x.partition === p)!;
          const low = BigInt(m.low);
          const high = BigInt(m.high);
          let at: bigint;
          if (start.kind === 'beginning') at = low;
          else if (start.kind === 'end') at = high;
          else if (start.kind === 'absolute') at = start.offset;
          else if (start.kind === 'fromEnd') at = high - start.records;
          else at = BigInt(byTime.find((b) => b.partition === p)?.offset ?? m.high);
          next.set(p, at < low ? low : at);
        }

        if (ctx.options.verbose) {
          ctx.err(`Reading "${topic}" from ${partitions.map((p) => `${p}@${next.get(p)!}`).join(', ')}${options.exit ? ' to the end' : ', following'}.\n`);
        }
        ctx.io.handlesInterrupt?.();
        let printed = 0;
        const reachedEnd = new Set<number>();
        let wake: (() => void) | undefined;
        const unwatch = options.exit ? undefined : await annals.storage.watch([topic], () => wake?.());
        const onAbort = () => wake?.();
        ctx.io.signal.addEventListener('abort', onAbort);
        try {
          while (!ctx.io.signal.aborted && (limit === undefined || printed < limit)) {
            let progressed = false;
            for (const p of partitions) {
              if (ctx.io.signal.aborted || (limit !== undefined && printed >= limit)) break;
              if (options.exit && reachedEnd.has(p)) continue;
              const from = next.get(p)!;
              const batch = await annals.fetch(topic, p, from, { maxRecords: FETCH_RECORDS });
              const low = BigInt(batch.logStartOffset);
              // Retention moved the log start past us: carry on from there, as kcat does.
              if (from < low && batch.messages.length === 0) {
                next.set(p, low);
                progressed = true;
                continue;
              }
              for (const message of batch.messages) {
                if (limit !== undefined && printed >= limit) break;
                await write(ctx, ctx.options.json ? `${toJson(recordJson(topic, p, message))}\n` : render(topic, p, message));
                next.set(p, BigInt(message.offset) + 1n);
                printed++;
                progressed = true;
              }
              // Nothing more to read now (also when compaction left a gap at the end of the log).
              if (batch.messages.length === 0 || next.get(p)! >= BigInt(batch.highWatermark)) reachedEnd.add(p);
            }
            if (options.exit && partitions.every((p) => reachedEnd.has(p))) break;
            if (!progressed && !options.exit) {
              await new Promise<void>((resolve) => {
                const timer = setTimeout(resolve, POLL_MS);
                wake = () => {
                  clearTimeout(timer);
                  resolve();
                };
              });
              wake = undefined;
            }
          }
        } finally {
          ctx.io.signal.removeEventListener('abort', onAbort);
          await unwatch?.();
        }
        if (options.exit && !ctx.options.json && ctx.options.verbose) ctx.err(`Reached the end of ${partitions.length} partition(s); ${printed} record(s).\n`);
      }),
    );
};
