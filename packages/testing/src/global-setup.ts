/**
 * Vitest globalSetup: one PostgreSQL server for the whole run.
 *
 * If DATABASE_URL is set, the run uses that server. Otherwise, one non-persistent
 * EmbeddedPostgresServer is started here and stopped in teardown. Spec files receive the admin
 * connection string through `inject('annalsAdminUrl')`, and `useTestDatabase()` uses it to create
 * one database per spec file.
 */
import { EmbeddedPostgresServer } from '@annals/storage-pg';
import pg from 'pg';
import type { TestProject } from 'vitest/node';
import { redactConnectionString } from './test-database.js';

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const external = process.env['DATABASE_URL'];
  if (external !== undefined && external !== '') {
    const version = await serverVersion(external).catch((error: unknown) => {
      throw new Error(
        `DATABASE_URL is set, but the server it names cannot be reached: ${(error as Error).message}. ` +
          `Fix DATABASE_URL, or unset it to run the tests on an embedded PostgreSQL.`,
        { cause: error },
      );
    });
    project.provide('annalsAdminUrl', external);
    console.log(`[annals] tests use PostgreSQL ${version} from DATABASE_URL: ${redactConnectionString(external)}`);
    return async () => {};
  }

  const startedAt = performance.now();
  const server = new EmbeddedPostgresServer({ postgresFlags: { fsync: false } });
  const { connectionString } = await server.start();
  const ms = Math.round(performance.now() - startedAt);
  try {
    const version = await serverVersion(connectionString);
    project.provide('annalsAdminUrl', connectionString);
    console.log(
      `[annals] tests use embedded PostgreSQL ${version} at ${redactConnectionString(connectionString)} ` +
        `(started in ${ms} ms; set DATABASE_URL to use another server)`,
    );
  } catch (error) {
    await server.stop();
    throw error;
  }
  return () => server.stop();
}

async function serverVersion(connectionString: string): Promise<string> {
  const client = new pg.Client({ connectionString, connectionTimeoutMillis: 10_000 });
  client.on('error', () => undefined);
  await client.connect();
  try {
    const { rows } = await client.query<{ server_version: string }>('show server_version');
    return rows[0]?.server_version.split(' ')[0] ?? 'unknown';
  } finally {
    await client.end().catch(() => undefined);
  }
}
