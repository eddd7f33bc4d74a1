/**
 * The command groups of `annals`, in the order `--help` lists them. To add a group, write
 * `src/commands/<group>.ts` exporting a `CommandGroup` and add it here.
 */
import type { CommandGroup } from '../program.js';
import { cleanerCommands } from './cleaner.js';
import { configsCommands } from './configs.js';
import { consumeCommand } from './consume.js';
import { groupsCommands } from './groups.js';
import { migrateCommand } from './migrate.js';
import { produceCommand } from './produce.js';
import { projectionsCommands } from './projections.js';
import { schemaCommands } from './schema.js';
import { topicsCommands } from './topics.js';

/** Every command group the binary registers. */
export const COMMAND_GROUPS: readonly CommandGroup[] = Object.freeze([
  topicsCommands,
  configsCommands,
  groupsCommands,
  consumeCommand,
  produceCommand,
  projectionsCommands,
  migrateCommand,
  cleanerCommands,
  schemaCommands,
]);
