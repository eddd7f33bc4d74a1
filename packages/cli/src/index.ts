/**
 * @annals/cli — the `annals` command line, and the pieces other tools reuse: the config-file
 * loader, the program builder and the exit codes. The export list is written out by name.
 */
export { main, createProgram, reportError } from './program.js';
export type { CommandGroup, CommandKit } from './program.js';
export { COMMAND_GROUPS } from './commands/index.js';
export { CliContext, DEFAULT_SCHEMA, toJson } from './context.js';
export type { CliClient, CliIo, GlobalOptions, GlobalOptionsInput } from './context.js';
export { ExitCode, CliNotFoundError, CliUsageError, exitCodeOf } from './exit-codes.js';
export type { ExitCodeValue } from './exit-codes.js';
export { CONFIG_FILE_NAMES, loadAnnalsConfig, loadConfigModules } from './config.js';
export type { AnnalsConfig, AnnalsConfigInput, LoadAnnalsConfigInput, LoadedModules, ModuleExport } from './config.js';
