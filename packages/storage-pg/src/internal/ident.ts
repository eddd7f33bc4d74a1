import { InvalidOptionsError } from '@annals/core';

/** Quotes an SQL identifier. Every identifier that reaches SQL text goes through here. */
export function quoteIdent(name: string): string {
  if (name.includes('\u0000')) throw new InvalidOptionsError('SQL identifiers cannot contain NUL characters.');
  return `"${name.replaceAll('"', '""')}"`;
}

const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

/**
 * Validates a schema name: lower-case letters, digits and `_`, at most 63 bytes (Postgres's
 * identifier limit), so the name is the same quoted or not and never truncated silently.
 */
export function validateSchemaName(schema: unknown): string {
  if (typeof schema !== 'string' || !SCHEMA_NAME.test(schema) || schema.startsWith('pg_')) {
    throw new InvalidOptionsError(
      `Schema name ${JSON.stringify(schema)} is not valid: use 1–63 lower-case letters, digits and '_', starting with a letter or '_' (and not 'pg_').`,
    );
  }
  return schema;
}
