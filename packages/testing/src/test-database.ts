/**
 * A fresh database per spec file, on the server that the global setup chose.
 *
 * Spec files in one run execute in parallel on one server. Each file gets its own database, so
 * specs never see each other's tables, and nothing needs to be cleaned up between files. The
 * database is dropped when the file finishes. If a test in the file failed, it is kept and its
 * connection string is printed, so you can inspect the state that the test left behind.
 */
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { InvalidOptionsError } from '@annals/core';
import pg from 'pg';
import { afterAll, beforeAll, beforeEach, inject } from 'vitest';

declare module 'vitest' {
  export interface ProvidedContext {
    /**
     * The connection string of a role that may create and drop databases on the run's server.
     * Set by `@annals/testing`'s globalSetup: DATABASE_URL, or the embedded server it started.
     */
    annalsAdminUrl: string;
  }
}

/** A database that exists until it is dropped. Use it with `await using`. */
export interface TestDatabase extends AsyncDisposable {
  /** The database name, e.g. `annals_t_consumer_group_k3v9q2mz`. */
  readonly name: string;
  /** The admin connection string with the database replaced by this one. */
  readonly connectionString: string;
  /** Drops the database, ending any connections still open. Idempotent. */
  drop(): Promise<void>;
}

/** Options of {@link useTestDatabase}. */
export interface UseTestDatabaseInput {
  /**
   * The readable part of the database name.
   * @default the spec file's name without `.int.spec.ts` and the like, e.g. `consumer_group`
   */
  readonly label?: string;
  /**
   * Keep the database, and print how to connect to it, when a test in the file failed.
   * @default true
   */
  readonly keepOnFailure?: boolean;
}

/** What {@link useTestDatabase} returns. Its fields can be read once the file's `beforeAll` hooks have run. */
export interface TestDatabaseHandle {
  readonly name: string;
  readonly connectionString: string;
}

const NAME_PREFIX = 'annals_t_';
const MAX_LABEL_LENGTH = 36;

/**
 * Creates a fresh database for the current spec file, or the current `describe`, in `beforeAll`.
 * It is dropped in `afterAll`, unless a test failed. In that case it is kept, and
 * `kept database <name> for inspection: <connectionString>` is printed.
 *
 * @example
 * ```ts
 * const db = useTestDatabase();
 * let pool: pg.Pool;
 * beforeAll(() => { pool = new pg.Pool({ connectionString: db.connectionString }); });
 * afterAll(() => pool.end());
 * ```
 */
export function useTestDatabase(input: UseTestDatabaseInput = {}): TestDatabaseHandle {
  const keepOnFailure = input.keepOnFailure ?? true;
  let database: TestDatabase | undefined;
  let failed = false;

  beforeAll(async ({}, suite) => {
    const label = input.label ?? labelFromFile(suite.file.filepath ?? suite.file.name);
    database = await createTestDatabase(inject('annalsAdminUrl'), label);
  });
  beforeEach(({ onTestFailed }) => {
    onTestFailed(() => {
      failed = true;
    });
  });
  afterAll(async ({}, suite) => {
    if (database === undefined) return;
    if (keepOnFailure && (failed || hasFailure(suite))) {
      console.log(`kept database ${database.name} for inspection: ${database.connectionString}`);
      return;
    }
    await database.drop();
  });

  const current = (): TestDatabase => {
    if (database === undefined) {
      throw new Error(
        'useTestDatabase(): the database does not exist yet. ' +
          'Read its fields inside tests or hooks, not while the file is being collected.',
      );
    }
    return database;
  };
  return Object.freeze({
    get name() {
      return current().name;
    },
    get connectionString() {
      return current().connectionString;
    },
  });
}

/**
 * Creates a fresh database named `annals_t_<label>_<random>` on the server that `adminUrl`
 * points at. Disposing it drops it. Use this when a test needs more than the one database from
 * {@link useTestDatabase}.
 *
 * @example
 * ```ts
 * await using a = await createTestDatabase(inject('annalsAdminUrl'), 'replica_a');
 * await using b = await createTestDatabase(inject('annalsAdminUrl'), 'replica_b');
 * ```
 */
export async function createTestDatabase(adminUrl: string, label: string): Promise<TestDatabase> {
  const name = `${NAME_PREFIX}${slug(label)}_${randomBytes(5).readUIntBE(0, 5).toString(36).padStart(8, '0')}`;
  const connectionString = withDatabase(adminUrl, name);
  await withAdminClient(adminUrl, (client) => client.query(`create database ${pg.escapeIdentifier(name)}`));
  return new PgTestDatabase(adminUrl, name, connectionString);
}

class PgTestDatabase implements TestDatabase {
  readonly #adminUrl: string;
  #dropping: Promise<void> | undefined;

  constructor(
    adminUrl: string,
    readonly name: string,
    readonly connectionString: string,
  ) {
    this.#adminUrl = adminUrl;
  }

  drop(): Promise<void> {
    this.#dropping ??= withAdminClient(this.#adminUrl, async (client) => {
      await client.query(`drop database if exists ${pg.escapeIdentifier(this.name)} with (force)`);
    }).catch((error: unknown) => {
      this.#dropping = undefined;
      throw error;
    });
    return this.#dropping;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.drop();
  }
}

/** `postgres://user:***@host:port/db`: for logs. */
export function redactConnectionString(connectionString: string): string {
  try {
    const url = new URL(connectionString);
    if (url.password !== '') url.password = '***';
    return url.toString();
  } catch {
    return '(not a URL)';
  }
}

async function withAdminClient<T>(adminUrl: string, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: adminUrl, connectionTimeoutMillis: 10_000 });
  client.on('error', () => undefined);
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

function withDatabase(adminUrl: string, database: string): string {
  const url = URL.canParse(adminUrl) ? new URL(adminUrl) : undefined;
  if (url?.protocol !== 'postgres:' && url?.protocol !== 'postgresql:') {
    throw new InvalidOptionsError(
      `The admin connection string must be a postgres:// URL, got ${redactConnectionString(adminUrl)}`,
    );
  }
  url.pathname = `/${encodeURIComponent(database)}`;
  return url.toString();
}

/** `src/consumer-group.int.spec.ts` → `consumer-group`. */
function labelFromFile(file: string): string {
  return path.basename(file).replace(/(\.(unit|int|e2e))?\.(spec|test)\.[cm]?[jt]sx?$/, '');
}

function slug(label: string): string {
  const cleaned = label
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '_')
    .replace(/^_+|_+$/g, '')
    .slice(0, MAX_LABEL_LENGTH)
    .replace(/_+$/, '');
  return cleaned === '' ? 'db' : cleaned;
}

interface TaskLike {
  readonly result?: { readonly state?: string; readonly errors?: readonly unknown[] };
  readonly tasks?: readonly TaskLike[];
}

/** A failure anywhere under the suite, including its own hooks. */
function hasFailure(task: TaskLike): boolean {
  if (task.result?.state === 'fail' || (task.result?.errors?.length ?? 0) > 0) return true;
  return task.tasks?.some(hasFailure) ?? false;
}
