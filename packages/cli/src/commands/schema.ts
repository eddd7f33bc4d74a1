/**
 * `annals schema snapshot|check|push` — the schema gate of docs/schema-registry.md. The contracts
 * come from the config file's `contracts` modules (read by @annals/core's `loadContracts`); the
 * snapshot file (`snapshot`, default `annals.contracts.json` beside the config) is committed, and
 * `check` fails the build on a breaking change.
 */
import { checkContracts, loadContracts, parseContractSnapshot, pushContracts, snapshotContracts } from '@annals/core';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import type { CliContext } from '../context.js';
import { CliUsageError, ExitCode } from '../exit-codes.js';
import type { CommandGroup } from '../program.js';

function load(ctx: CliContext) {
  const file = ctx.options.config?.file;
  return loadContracts(file ? { configFile: file } : { cwd: ctx.io.cwd });
}

/** Registers `annals schema snapshot|check|push`. */
export const schemaCommands: CommandGroup = (program, kit) => {
  const schema = program.command('schema').description('the contracts gate: snapshot, check for breaking changes, push to the registry');

  schema
    .command('snapshot')
    .description("write the snapshot file of the contracts the code declares (commit it; 'schema check' compares with it)")
    .action(
      kit.action(async (ctx) => {
        const { config, contracts } = await load(ctx);
        const snapshot = snapshotContracts(contracts, { defaultCompatibility: config.compatibility });
        await writeFile(config.snapshot, `${JSON.stringify(snapshot, null, 2)}\n`);
        const events = Object.keys(snapshot.events).length;
        ctx.print({ file: config.snapshot, eventTypes: events }, () => `Wrote ${config.snapshot} (${events} event type(s)).\n`);
      }),
    );

  schema
    .command('check')
    .description('compare the contracts with the snapshot (and with the database registry, with --registry); exit 8 on a breaking change')
    .option('--registry', "also compare with the registry in the database (--url / DATABASE_URL)")
    .action(
      kit.action<{ registry?: boolean }>(async (ctx, options) => {
        const { config, contracts } = await load(ctx);
        if (!existsSync(config.snapshot)) {
          throw new CliUsageError(`No snapshot at ${config.snapshot}: run "annals schema snapshot" and commit the file.`);
        }
        const snapshot = parseContractSnapshot(JSON.parse(await readFile(config.snapshot, 'utf8')), config.snapshot);
        let registry;
        if (options.registry) {
          const storage = ctx.storage();
          await storage.connect();
          registry = await storage.schemaRegistry.list();
        }
        const result = checkContracts({ contracts, snapshot, registry, defaultCompatibility: config.compatibility });
        ctx.print({ ok: result.ok, report: result.report }, () => result.report);
        return result.ok ? ExitCode.OK : ExitCode.CONTRACT_BREAKING;
      }),
    );

  schema
    .command('push')
    .description('register every version of the contracts in the database registry (refuses a version registered with another schema)')
    .action(
      kit.action(async (ctx) => {
        const { contracts } = await load(ctx);
        const result = await pushContracts({ storage: ctx.storage(), contracts, registeredBy: 'annals-cli' });
        ctx.print({ ok: result.ok, report: result.report }, () => result.report);
        return result.ok ? ExitCode.OK : ExitCode.CONTRACT_BREAKING;
      }),
    );
};
