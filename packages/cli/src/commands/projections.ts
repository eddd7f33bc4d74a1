/**
 * `annals projections list|status|rebuild`. `list` and `status` read the projection store and
 * need no application code (when a config file names modules, their projections are registered
 * too, so the version the code builds is shown). `rebuild` runs the projection's handlers, so it
 * loads them from the config's modules.
 */
import type { ProjectionStatus, RebuildProgress, Registration } from '@annals/core';
import { loadConfigModules } from '../config.js';
import type { CliClient, CliContext } from '../context.js';
import { CliNotFoundError, CliUsageError, ExitCode } from '../exit-codes.js';
import { ProgressBar, formatDuration } from '../internal/progress.js';
import { renderTable } from '../internal/table.js';
import type { CommandGroup } from '../program.js';

/** Registers every projection and subscriber the config's modules export; warns about those that fail. */
async function registerConfigModules(ctx: CliContext, annals: CliClient): Promise<Registration[]> {
  const config = ctx.options.config;
  if (!config) return [];
  const loaded = await loadConfigModules(config);
  const registrations: Registration[] = [];
  for (const target of loaded.registrables) {
    try {
      registrations.push(annals.register(target));
    } catch (error) {
      ctx.err(`warning: could not register an export of ${config.file}'s modules: ${error instanceof Error ? error.message : String(error)}\n`);
    }
  }
  return registrations;
}

function versionsText(s: ProjectionStatus): string {
  return s.versions.map((v) => `v${v.version}:${v.status}`).join(',') || '-';
}

/** Registers `annals projections list|status|rebuild`. */
export const projectionsCommands: CommandGroup = (program, kit) => {
  const projections = program.command('projections').description('list projections, show their status, rebuild a new version');

  projections
    .command('list')
    .description('every projection the store knows: active version, versions, lag')
    .action(
      kit.action(async (ctx) => {
        const annals = ctx.client();
        await registerConfigModules(ctx, annals);
        const all = await annals.projections.status();
        const rows = all.map((s) => ({ name: s.name, codeVersion: s.version ?? null, activeVersion: s.activeVersion, versions: s.versions.map((v) => ({ version: v.version, status: v.status })), lag: s.lag }));
        ctx.print(rows, () =>
          rows.length === 0
            ? 'No projections.\n'
            : renderTable(['PROJECTION', 'ACTIVE-VERSION', 'CODE-VERSION', 'VERSIONS', 'LAG'], all.map((s) => [s.name, s.activeVersion, s.version, versionsText(s), s.lag])),
        );
      }),
    );

  projections
    .command('status')
    .description('versions of projections with their checkpoint and lag per partition')
    .argument('[names...]', 'projection names (default: all)')
    .action(
      kit.action(async (ctx, _options, [namesArg]) => {
        const names = (namesArg as string[] | undefined) ?? [];
        const annals = ctx.client();
        await registerConfigModules(ctx, annals);
        const all = await annals.projections.status(names.length > 0 ? names : undefined);
        const missing = names.find((n) => !all.some((s) => s.name === n));
        if (missing !== undefined) throw new CliNotFoundError(`No projection "${missing}" is known to the store (see \`annals projections list\`).`);
        const json = all.map((s) => ({ name: s.name, codeVersion: s.version ?? null, activeVersion: s.activeVersion, lag: s.lag, versions: s.versions }));
        ctx.print(json, () =>
          all
            .map((s) => {
              const head = `Projection: ${s.name}\tActive: ${s.activeVersion === null ? 'none' : `v${s.activeVersion}`}\tCode: ${s.version === undefined ? '(not loaded)' : `v${s.version}`}\tLag: ${s.lag ?? '-'}\n`;
              const rows = s.versions.flatMap((v) => v.checkpoint.map((c) => [`v${v.version}`, v.status, c.topic, c.partition, c.offset, c.logEndOffset, c.lag] as const));
              return head + (rows.length === 0 ? 'No checkpoints yet.\n' : renderTable(['VERSION', 'STATUS', 'TOPIC', 'PARTITION', 'CHECKPOINT', 'LOG-END-OFFSET', 'LAG'], rows));
            })
            .join('\n') || 'No projections.\n',
        );
      }),
    );

  projections
    .command('rebuild')
    .description("replay the log into the code's version of a projection, then swap it in (resumable)")
    .argument('<name>', 'projection name')
    .addHelpText('after', '\nNeeds the projection\'s code: a config file (annals.config.{js,mjs,json} or --config) whose "modules" export it.\nInterrupted (Ctrl-C), it stops after the batch in flight; run it again to resume.\n')
    .action(
      kit.action(async (ctx, _options, [nameArg]) => {
        const name = nameArg as string;
        if (!ctx.options.config) {
          throw new CliUsageError(`Rebuilding runs the projection's handlers: add annals.config.mjs (or .js/.json) with { modules: ['./dist/your-projections.js'] }, or pass --config <file>.`);
        }
        const annals = ctx.client();
        const registrations = await registerConfigModules(ctx, annals);
        const found = registrations.find((r) => r.kind === 'projection' && r.name === name);
        if (!found) {
          const known = registrations.filter((r) => r.kind === 'projection').map((r) => r.name);
          throw new CliNotFoundError(`No projection "${name}" in the modules of ${ctx.options.config.file} (found: ${known.join(', ') || 'none'}).`);
        }
        const bar = ctx.io.interactive && !ctx.options.json ? new ProgressBar(ctx.io.stderr) : undefined;
        let lastPhase: RebuildProgress['phase'] | undefined;
        const onProgress = (p: RebuildProgress) => {
          bar?.update({ label: `${p.projection} v${p.version} ${p.phase}`, done: p.eventsDone, total: p.eventsTotal, rate: p.eventsPerSecond, etaMs: p.etaMs });
          if (!bar && ctx.options.verbose && p.phase !== lastPhase) ctx.err(`${p.phase}: ${p.eventsDone}/${p.eventsTotal} events\n`);
          lastPhase = p.phase;
        };
        ctx.io.handlesInterrupt?.();
        let result;
        try {
          result = await annals.projections.rebuild(name, { onProgress, signal: ctx.io.signal });
        } catch (error) {
          bar?.end();
          if (ctx.io.signal.aborted) {
            ctx.err(`Rebuild of "${name}" interrupted; run the same command again to resume from its last committed batch.\n`);
            return ExitCode.INTERRUPTED;
          }
          throw error;
        }
        bar?.end();
        ctx.print(result, () =>
          result.swapped
            ? `Rebuilt projection "${name}" v${result.version}${result.previousVersion === null ? '' : ` (replacing v${result.previousVersion})`}: replayed ${result.events} event(s) in ${formatDuration(result.durationMs)}; v${result.version} is now active.\n`
            : `Projection "${name}" v${result.version} was already made active by another process; nothing to do.\n`,
        );
      }),
    );
};
