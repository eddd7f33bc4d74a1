/**
 * The schema-registry port on PostgreSQL (`storage.schemaRegistry` of a `PgLogStorage`).
 *
 * `register` first reads the requested pairs (one statement): on the usual path — a client's
 * first publish of a version some other client already registered — that is all. Otherwise it
 * inserts what is missing and re-reads every pair in one transaction (READ COMMITTED: the re-read
 * sees rows a concurrent registration committed while the insert waited), and rolls back if any
 * pair is registered with another fingerprint, so a refused registration writes nothing.
 */
import {
  InvalidOptionsError,
  invalidRegistrations,
  type RegisteredSchema,
  type RegisterSchemasOptions,
  type RegisterSchemasResult,
  type SchemaRegistration,
  type SchemaRegistrationConflict,
  type SchemaRegistryStorage,
} from '@annals/core';
import type pg from 'pg';
import { translatePgError } from './internal/pg-errors.js';
import * as plans from './plans-schema-registry.js';

interface Row {
  event_type: string;
  version: number;
  fingerprint: string;
  schema: RegisteredSchema['schema'];
  registered_by: string | null;
  registered_at: number;
}

const toRegistered = (r: Row): RegisteredSchema => ({
  eventType: r.event_type,
  version: r.version,
  fingerprint: r.fingerprint,
  schema: r.schema,
  registeredBy: r.registered_by,
  registeredAt: Math.floor(r.registered_at),
});

/** What the registry needs from `PgLogStorage`. */
export interface PgSchemaRegistryHost {
  readonly schema: string;
  readonly pool: pg.Pool;
  acquireClient(): Promise<pg.PoolClient>;
}

type Compared = { conflicts: SchemaRegistrationConflict[]; existing: RegisteredSchema[]; missing: SchemaRegistration[] };

function compare(entries: readonly SchemaRegistration[], rows: readonly Row[]): Compared {
  const byKey = new Map(rows.map((r) => [`${r.event_type}\u0000${r.version}`, toRegistered(r)]));
  const out: Compared = { conflicts: [], existing: [], missing: [] };
  for (const e of entries) {
    const registered = byKey.get(`${e.eventType}\u0000${e.version}`);
    if (!registered) out.missing.push(e);
    else if (registered.fingerprint !== e.fingerprint) out.conflicts.push({ requested: e, registered });
    else out.existing.push(registered);
  }
  return out;
}

export class PgSchemaRegistry implements SchemaRegistryStorage {
  readonly #host: PgSchemaRegistryHost;
  readonly #table: string;

  constructor(host: PgSchemaRegistryHost) {
    this.#host = host;
    this.#table = plans.registryTable(host.schema);
  }

  async register(entries: readonly SchemaRegistration[], options: RegisterSchemasOptions = {}): Promise<RegisterSchemasResult> {
    const invalid = invalidRegistrations(entries);
    if (invalid) throw new InvalidOptionsError(`Schema registration refused: ${invalid}`);
    if (entries.length === 0) return { ok: true, registered: [], existing: [] };
    const first = await this.#query<Row>(plans.selectRegisteredStatement(this.#table, entries));
    const seen = compare(entries, first.rows);
    if (seen.conflicts.length > 0) return { ok: false, conflicts: seen.conflicts };
    if (seen.missing.length === 0) return { ok: true, registered: [], existing: seen.existing };

    const client = await this.#host.acquireClient();
    let broken: unknown;
    try {
      await client.query('BEGIN');
      const inserted = await client.query<{ event_type: string; version: number }>(
        plans.insertRegistrationsStatement(this.#table, seen.missing, options.registeredBy ?? null),
      );
      const now = await client.query<Row>(plans.selectRegisteredStatement(this.#table, entries));
      const after = compare(entries, now.rows);
      if (after.conflicts.length > 0 || after.missing.length > 0) {
        await client.query('ROLLBACK');
        if (after.missing.length > 0) {
          // Cannot happen while the table is only ever inserted into; say so rather than guess.
          throw new InvalidOptionsError(`Schema registration of ${after.missing.map((m) => `"${m.eventType}" v${m.version}`).join(', ')} did not persist; was the registry table altered?`);
        }
        return { ok: false, conflicts: after.conflicts };
      }
      await client.query('COMMIT');
      const insertedKeys = new Set(inserted.rows.map((r) => `${r.event_type}\u0000${r.version}`));
      return {
        ok: true,
        registered: entries.filter((e) => insertedKeys.has(`${e.eventType}\u0000${e.version}`)),
        existing: after.existing.filter((r) => !insertedKeys.has(`${r.eventType}\u0000${r.version}`)),
      };
    } catch (error) {
      if (!(error instanceof InvalidOptionsError)) {
        await client.query('ROLLBACK').catch((rollbackError: unknown) => {
          broken = rollbackError;
        });
      }
      throw translatePgError(error);
    } finally {
      client.release(broken instanceof Error ? broken : undefined);
    }
  }

  async list(filter: { readonly eventTypes?: readonly string[] } = {}): Promise<RegisteredSchema[]> {
    const { rows } = await this.#query<Row>(plans.listRegisteredStatement(this.#table, filter.eventTypes));
    return rows.map(toRegistered);
  }

  async #query<R extends pg.QueryResultRow>(statement: { text: string; values: unknown[] }): Promise<pg.QueryResult<R>> {
    try {
      return await this.#host.pool.query<R>(statement.text, statement.values);
    } catch (error) {
      throw translatePgError(error);
    }
  }
}
