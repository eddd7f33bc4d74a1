/**
 * `annals cleaner run` — runs the cleaner (retention and compaction) from the command line: one
 * pass, or passes every `--interval` ms with `--loop` until SIGINT/SIGTERM. Only one cleaner runs
 * per database (an advisory lock); when another process holds it, a single pass exits with
 * {@link ExitCode.LEASE_HELD} and a loop waits its turn as a standby.
 */
import type { CleanPassReport, PartitionCleanReport } from '@annals/core';
import type { CliContext } from '../context.js';
import { CliUsageError, ExitCode, type ExitCodeValue } from '../exit-codes.js';
import { renderTable } from '../internal/table.js';
import type { CommandGroup } from '../program.js';

interface CleanerRunFlags {
  readonly topic?: string[];
  readonly loop?: boolean;
  readonly interval: string;
  readonly chunk: string;
}

function positiveInt(raw: string, flag: string, min: number): number {
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < min) throw new CliUsageError(`${flag} must be an integer ≥ ${min}, got "${raw}".`);
  return n;
}

/** A partition line is worth showing when the pass changed something there. */
function didSomething(p: PartitionCleanReport): boolean {
  return p.logStartMovedBy !== null || p.recordsCompacted > 0 || p.tombstonesRemoved > 0 || p.recordsExpired > 0 || p.segmentsDropped > 0;
}

function reportJson(report: CleanPassReport) {
  return {
    ran: true,
    durationMs: Math.round(report.durationMs),
    partitions: report.partitions.map((p) => ({ ...p, logStartOffset: p.logStartOffset.toString(), cleanedOffset: p.cleanedOffset.toString() })),
  };
}

function reportText(report: CleanPassReport): string {
  const changed = report.partitions.filter(didSomething);
  const total = (f: (p: PartitionCleanReport) => number) => report.partitions.reduce((sum, p) => sum + f(p), 0);
  const summary =
    `Cleaned ${report.partitions.length} partition(s) in ${Math.round(report.durationMs)} ms: ` +
    `${total((p) => p.recordsCompacted)} compacted, ${total((p) => p.tombstonesRemoved)} tombstone(s) removed, ` +
    `${total((p) => p.recordsExpired)} expired row(s) deleted, ${total((p) => p.segmentsDropped)} segment(s) dropped.\n`;
  if (changed.length === 0) return summary;
  return (
    renderTable(
      ['TOPIC', 'PARTITION', 'LOG-START', 'MOVED-BY', 'COMPACTED', 'TOMBSTONES', 'EXPIRED', 'SEGMENTS-DROPPED', 'CLEANED-OFFSET'],
      changed.map((p) => [p.topic, p.partition, p.logStartOffset.toString(), p.logStartMovedBy ?? '-', p.recordsCompacted, p.tombstonesRemoved, p.recordsExpired, p.segmentsDropped, p.cleanedOffset.toString()]),
    ) + summary
  );
}

async function pass(ctx: CliContext, topics: readonly string[] | undefined, chunkRecords: number): Promise<ExitCodeValue> {
  const annals = ctx.client();
  if (topics) {
    const known = new Set(await annals.admin().listTopics());
    const unknown = topics.filter((t) => !known.has(t));
    // Same refusal as the admin API: name what is missing, do nothing.
    if (unknown.length > 0) throw new CliUsageError(`Unknown topic(s): ${unknown.join(', ')}. List them with: annals topics list`);
  }
  const result = await annals.cleaner.runOnce({ ...(topics && { topics }), chunkRecords, signal: ctx.io.signal });
  if (!result.ran) {
    ctx.print({ ran: false, reason: result.reason }, () => 'Another process holds the cleaner lease (it is cleaning this database); nothing done.\n');
    return ExitCode.LEASE_HELD;
  }
  ctx.print(reportJson(result.report), () => reportText(result.report));
  return ExitCode.OK;
}

/** Registers `annals cleaner run`. */
export const cleanerCommands: CommandGroup = (program, kit) => {
  const cleaner = program.command('cleaner').description('retention and compaction (see docs/retention.md)');
  cleaner
    .command('run')
    .description('run the cleaner: one pass, or every --interval ms with --loop (one cleaner per database; others wait)')
    .option('--topic <name...>', 'only these topics (default: all)')
    .option('--loop', 'keep running passes until interrupted, as a dedicated cleaner process')
    .option('--interval <ms>', 'time between passes with --loop', '30000')
    .option('--chunk <records>', 'records examined or removed per statement', '5000')
    .action(
      kit.action(async (ctx, flags: CleanerRunFlags) => {
        const interval = positiveInt(flags.interval, '--interval', 10);
        const chunk = positiveInt(flags.chunk, '--chunk', 1);
        // SIGINT/SIGTERM stop the pass in flight at its next chunk (what was done stays done; the
        // next pass goes on from there) and end with exit 0; a second signal ends it at once.
        ctx.io.handlesInterrupt?.();
        if (!flags.loop) return pass(ctx, flags.topic, chunk);
        const signal = ctx.io.signal;
        for (;;) {
          const code = await pass(ctx, flags.topic, chunk);
          if (code !== ExitCode.OK && code !== ExitCode.LEASE_HELD) return code;
          if (signal.aborted) return ExitCode.OK;
          await new Promise<void>((resolve) => {
            const timer = setTimeout(resolve, interval);
            signal.addEventListener('abort', () => (clearTimeout(timer), resolve()), { once: true });
          });
          if (signal.aborted) return ExitCode.OK;
        }
      }),
    );
};
