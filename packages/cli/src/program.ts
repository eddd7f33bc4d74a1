/**
 * The `annals` program: global options, the command groups, and the one place where errors become
 * messages and exit codes.
 *
 * A command group is one file in `src/commands/` exporting a {@link CommandGroup}; adding one is
 * adding that file and its name to the list in `src/commands/index.ts`.
 */
import { readFileSync } from 'node:fs';
import { AnnalsError } from '@annals/core';
import { Command, CommanderError } from 'commander';
import { COMMAND_GROUPS } from './commands/index.js';
import { CliContext, toJson, type CliIo, type GlobalOptionsInput } from './context.js';
import { ExitCode, exitCodeOf, type ExitCodeValue } from './exit-codes.js';

/** Helpers a command group uses to declare its commands. */
export interface CommandKit {
  /**
   * Wraps a command's action: resolves the global options into a {@link CliContext}, runs `fn`
   * with the command's own options and positional arguments, closes the client, and turns a
   * thrown error into a message and an exit code. `fn` may return an exit code (default 0).
   */
  action<O>(fn: (ctx: CliContext, options: O, args: readonly unknown[]) => Promise<ExitCodeValue | void>): (...commanderArgs: unknown[]) => Promise<void>;
}

/** Registers one command group (e.g. `topics` and its subcommands) on the program. */
export type CommandGroup = (program: Command, kit: CommandKit) => void;

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

const HELP_EPILOG = `
Connection: --url, else DATABASE_URL, else "url" in annals.config.{js,mjs,json}.
Exit codes: 0 ok, 1 error, 2 usage (bad command line, option, value or config key),
  3 refused because the consumer group is active, 4 not found, 5 already exists,
  6 database unreachable, 7 cleaner lease held elsewhere, 8 breaking schema change,
  130 interrupted.`;

/**
 * Builds the program. `setExitCode` receives the exit code of the command that ran.
 * Exported for embedding and tests; the binary calls {@link main}.
 */
export function createProgram(io: CliIo, setExitCode: (code: ExitCodeValue) => void, groups: readonly CommandGroup[] = COMMAND_GROUPS): Command {
  const program = new Command('annals')
    .description('Operate an Annals log in PostgreSQL: topics, configs, consumer groups, records, projections, migrations.')
    .version(version(), '-V, --version')
    .option('--url <url>', 'PostgreSQL connection string (default: $DATABASE_URL)')
    .option('--schema <schema>', 'schema of the log tables (default: $ANNALS_SCHEMA or "annals")')
    .option('--config <file>', 'config file (default: annals.config.{js,mjs,json} in the working directory)')
    .option('--json', 'print JSON for scripts instead of tables')
    .option('-v, --verbose', 'print stack traces and causes of errors')
    .addHelpText('after', HELP_EPILOG)
    .configureHelp({ showGlobalOptions: true })
    .showHelpAfterError('(add --help for usage)')
    .exitOverride()
    .configureOutput({
      writeOut: (s) => io.stdout.write(s),
      writeErr: (s) => io.stderr.write(s),
    });

  const kit: CommandKit = {
    action<O>(fn: (ctx: CliContext, options: O, args: readonly unknown[]) => Promise<ExitCodeValue | void>) {
      return async (...commanderArgs: unknown[]) => {
        const command = commanderArgs[commanderArgs.length - 1] as Command;
        const globals = command.optsWithGlobals<GlobalOptionsInput>();
        let ctx: CliContext | undefined;
        try {
          ctx = await CliContext.create(io, globals);
          const code = await fn(ctx, command.opts() as O, command.processedArgs);
          setExitCode(code ?? ExitCode.OK);
        } catch (error) {
          setExitCode(reportError(io, error, globals));
        } finally {
          // The command's outcome stands; a failure to disconnect afterwards is reported, not hidden.
          await ctx?.close().catch((error: unknown) => {
            io.stderr.write(`warning: disconnecting from PostgreSQL failed: ${error instanceof Error ? error.message : String(error)}\n`);
          });
        }
      };
    },
  };
  for (const register of groups) register(program, kit);
  return program;
}

/** Prints an error (JSON on stderr with `--json`) and returns its exit code. */
export function reportError(io: CliIo, error: unknown, options: GlobalOptionsInput): ExitCodeValue {
  const code = exitCodeOf(error);
  const message = error instanceof Error ? error.message : String(error);
  const errorCode = error instanceof AnnalsError ? error.code : undefined;
  const hint = hintFor(error);
  if (options.json) {
    io.stderr.write(`${toJson({ error: { code: errorCode ?? null, message, hint: hint ?? null, exitCode: code } })}\n`);
  } else {
    io.stderr.write(`error${errorCode ? ` [${errorCode}]` : ''}: ${message}\n`);
    if (hint) io.stderr.write(`hint: ${hint}\n`);
  }
  if (options.verbose) {
    let e: unknown = error;
    for (let depth = 0; e !== undefined && depth < 5; depth++) {
      io.stderr.write(`${depth === 0 ? '' : 'caused by: '}${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
      e = e instanceof Error ? e.cause : undefined;
    }
  } else if (!(error instanceof AnnalsError) && code === ExitCode.ERROR) {
    io.stderr.write('(run with --verbose for the stack trace)\n');
  }
  return code;
}

/** What to do next, for errors where the message alone does not say. */
function hintFor(error: unknown): string | undefined {
  if (!(error instanceof AnnalsError)) return undefined;
  switch (error.code) {
    case 'CONNECTION_ERROR':
      return 'check --url / DATABASE_URL and that PostgreSQL is running.';
    case 'STORAGE_ERROR': {
      const sqlState = (error as AnnalsError & { sqlState?: string }).sqlState;
      // undefined_table / invalid_schema_name: the schema was never migrated.
      if (sqlState === '42P01' || sqlState === '3F000') return 'the Annals tables are missing in this schema: run `annals migrate` (and check --schema).';
      return undefined;
    }
    case 'NON_EMPTY_GROUP':
      return 'stop the group\'s consumers (see `annals groups describe <group>`), then run the command again.';
    case 'UNKNOWN_TOPIC_OR_PARTITION':
      return 'see `annals topics list`.';
    case 'INVALID_CONFIG':
      return 'see `annals configs describe <topic>` for the keys and their values.';
    default:
      return undefined;
  }
}

/**
 * Runs `annals` with `argv` (without `node` and the script) and resolves to the exit code.
 *
 * @example
 * ```ts
 * process.exitCode = await main(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, stdin: process.stdin, env: process.env, cwd: process.cwd(), signal });
 * ```
 */
export async function main(argv: readonly string[], io: CliIo): Promise<ExitCodeValue> {
  let exitCode: ExitCodeValue = ExitCode.OK;
  const program = createProgram(io, (code) => {
    exitCode = code;
  });
  try {
    await program.parseAsync([...argv], { from: 'user' });
  } catch (error) {
    if (error instanceof CommanderError) {
      // --help and --version end with these codes; everything else is a usage error.
      return error.code === 'commander.helpDisplayed' || error.code === 'commander.version' ? ExitCode.OK : ExitCode.USAGE;
    }
    return reportError(io, error, program.opts<GlobalOptionsInput>());
  }
  return exitCode;
}
