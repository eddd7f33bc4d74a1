/**
 * SQL plans of the schema registry (`schema_registry`, migration `0007_schema_registry`).
 * Entries travel as one JSON parameter unpacked by `jsonb_to_recordset`, so a registration of
 * any size is one statement and no value is ever spliced into SQL text; the table name is quoted
 * by `quoteIdent`.
 */
import type { SchemaRegistration } from '@annals/core';
import { quoteIdent } from './internal/ident.js';
import type { Statement } from './plans.js';

export function registryTable(schema: string): string {
  return `${quoteIdent(schema)}.${quoteIdent('schema_registry')}`;
}

const COLUMNS = `event_type, version, fingerprint, schema, registered_by, (extract(epoch FROM registered_at) * 1000)::float8 AS registered_at`;
const INPUT = `jsonb_to_recordset($1::jsonb) AS input(event_type text, version integer, fingerprint text, schema jsonb)`;

function entriesParam(entries: readonly SchemaRegistration[]): string {
  return JSON.stringify(entries.map((e) => ({ event_type: e.eventType, version: e.version, fingerprint: e.fingerprint, schema: e.schema })));
}

/** The registered rows of the given (event type, version) pairs. */
export function selectRegisteredStatement(table: string, entries: readonly SchemaRegistration[]): Statement {
  return {
    text: `SELECT ${COLUMNS} FROM ${table} r WHERE (r.event_type, r.version) IN (SELECT input.event_type, input.version FROM ${INPUT})`,
    values: [entriesParam(entries)],
  };
}

/**
 * Inserts the entries not yet registered; returns the pairs it inserted. A concurrent inserter of
 * the same pair makes this wait for its commit and then skip the pair (first writer wins); the
 * caller then reads the winner's row in a new statement.
 */
export function insertRegistrationsStatement(table: string, entries: readonly SchemaRegistration[], registeredBy: string | null): Statement {
  return {
    text: `INSERT INTO ${table} (event_type, version, fingerprint, schema, registered_by)
      SELECT input.event_type, input.version, input.fingerprint, input.schema, $2::text FROM ${INPUT}
      ON CONFLICT (event_type, version) DO NOTHING
      RETURNING event_type, version`,
    values: [entriesParam(entries), registeredBy],
  };
}

/** Every registered row (of some event types, when given), ordered. */
export function listRegisteredStatement(table: string, eventTypes: readonly string[] | undefined): Statement {
  return eventTypes === undefined
    ? { text: `SELECT ${COLUMNS} FROM ${table} ORDER BY event_type, version`, values: [] }
    : { text: `SELECT ${COLUMNS} FROM ${table} WHERE event_type = ANY($1::text[]) ORDER BY event_type, version`, values: [[...eventTypes]] };
}
