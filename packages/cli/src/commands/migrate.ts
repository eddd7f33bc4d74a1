/** `annals migrate` — applies pending migrations of the log's schema (storage-pg's `migrateToLatest`). */
import { migrationNames } from '@annals/storage-pg';
import type { CommandGroup } from '../program.js';

/** Registers `annals migrate`. */
export const migrateCommand: CommandGroup = (program, kit) => {
  program
    .command('migrate')
    .description('create or upgrade the Annals tables in the schema (safe to run from several processes at once)')
    .action(
      kit.action(async (ctx) => {
        const storage = ctx.storage();
        await storage.connect();
        const applied = await storage.migrate();
        const all = migrationNames();
        ctx.print({ schema: ctx.options.schema, applied, migrations: all }, () =>
          applied.length === 0
            ? `Schema "${ctx.options.schema}" is up to date (${all.length} migrations).\n`
            : `Applied ${applied.length} migration(s) to schema "${ctx.options.schema}":\n${applied.map((m) => `  ${m}\n`).join('')}`,
        );
      }),
    );
};
