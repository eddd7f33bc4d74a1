/**
 * What every command gets: its streams, the global options resolved once, and a connected client.
 */
import { Annals } from '@annals/core';
import { PgLogStorage, postgres } from '@annals/storage-pg';
import { loadAnnalsConfig, type AnnalsConfig } from './config.js';
import { CliUsageError } from './exit-codes.js';

/** Where a command reads and writes. The binary passes the process's; tests may pass their own. */
export interface CliIo {
  readonly stdout: NodeJS.WritableStream;
  readonly stderr: NodeJS.WritableStream;
  readonly stdin: NodeJS.ReadableStream;
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly cwd: string;
  /** Aborted on SIGINT / SIGTERM when the command {@link CliIo.handlesInterrupt | handles it}. */
  readonly signal: AbortSignal;
  /**
   * Called by commands that stop cleanly when `signal` aborts (consume, projections rebuild): the
   * first Ctrl-C then aborts `signal` instead of ending the process at once. @default undefined
   */
  readonly handlesInterrupt?: () => void;
  /** Whether stderr is a terminal (progress bars are drawn only there). @default false */
  readonly interactive?: boolean;
}

/** The global options as commander parsed them. */
export interface GlobalOptionsInput {
  readonly url?: string;
  readonly schema?: string;
  readonly config?: string;
  readonly json?: boolean;
  readonly verbose?: boolean;
}

/** The global options, resolved. */
export interface GlobalOptions {
  /** `--url`, else `DATABASE_URL`, else the config file's `url`. */
  readonly url: string | undefined;
  /** `--schema`, else `ANNALS_SCHEMA`, else the config file's `schema`, else 'annals'. */
  readonly schema: string;
  readonly json: boolean;
  readonly verbose: boolean;
  readonly config: AnnalsConfig | undefined;
}

/** The default schema of the log's tables (as in `@annals/storage-pg`). */
export const DEFAULT_SCHEMA = 'annals';

/** The context a command's action runs in. */
export class CliContext {
  readonly io: CliIo;
  readonly options: GlobalOptions;
  #client: CliClient | undefined;
  #storage: PgLogStorage | undefined;

  private constructor(io: CliIo, options: GlobalOptions) {
    this.io = io;
    this.options = options;
  }

  /** Resolves the global options (reading the config file, if any) into a context. */
  static async create(io: CliIo, input: GlobalOptionsInput): Promise<CliContext> {
    const config = await loadAnnalsConfig({ cwd: io.cwd, ...(input.config !== undefined && { file: input.config }) });
    const url = nonEmpty(input.url) ?? nonEmpty(io.env['DATABASE_URL']) ?? config?.url;
    const schema = nonEmpty(input.schema) ?? nonEmpty(io.env['ANNALS_SCHEMA']) ?? config?.schema ?? DEFAULT_SCHEMA;
    return new CliContext(io, Object.freeze({ url, schema, json: input.json === true, verbose: input.verbose === true, config }));
  }

  /** The storage (not connected until the client is used). Never migrates: `annals migrate` does. */
  storage(): PgLogStorage {
    if (this.#storage) return this.#storage;
    const url = this.options.url;
    if (url === undefined) {
      throw new CliUsageError('No database given: pass --url postgres://user@host:5432/db, set DATABASE_URL, or put url in annals.config.json.');
    }
    this.#storage = postgres({ connectionString: url, schema: this.options.schema, migrate: false, poolSize: 4, connectionTimeoutMs: 5_000 });
    return this.#storage;
  }

  /** The Annals client of this command (created on first use, disconnected by {@link close}). */
  client(): CliClient {
    this.#client ??= createClient(this.storage());
    return this.#client;
  }

  /** Disconnects the client, if one was made. */
  async close(): Promise<void> {
    const client = this.#client;
    this.#client = undefined;
    if (client) await client.disconnect();
    else await this.#storage?.disconnect();
    this.#storage = undefined;
  }

  /** Writes to stdout. */
  out(text: string): void {
    this.io.stdout.write(text);
  }

  /** Writes to stderr. */
  err(text: string): void {
    this.io.stderr.write(text);
  }

  /** Prints `value` as JSON (`--json`) or runs `human` to print it for people. */
  print(value: unknown, human: () => string): void {
    this.out(this.options.json ? `${toJson(value)}\n` : human());
  }
}

function createClient(storage: PgLogStorage) {
  // An operator tool fails fast when the database is down: one quick retry, then exit 6.
  // It never runs the in-process cleaner: a `consume` left tailing must not become the database's
  // cleaner. `annals cleaner run` cleans explicitly.
  return new Annals({ clientId: 'annals-cli', storage, retry: { retries: 1, initialRetryTime: 200, maxRetryTime: 1_000 }, cleaner: false });
}

/** The client type commands use (an `Annals` over the Postgres storage). */
export type CliClient = ReturnType<typeof createClient>;

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value;
}

/** JSON with bigints as strings and byte arrays as base64 (what `--json` prints). */
export function toJson(value: unknown, indent?: number): string {
  return JSON.stringify(
    value,
    (_key, v: unknown) => {
      if (typeof v === 'bigint') return v.toString();
      if (v instanceof Uint8Array) return Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64');
      if (v instanceof Map) return Object.fromEntries(v);
      if (v instanceof Set) return [...v];
      return v;
    },
    indent,
  );
}
