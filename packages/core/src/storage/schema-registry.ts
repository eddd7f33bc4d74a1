/**
 * The schema-registry part of the storage port: each event type's versions with their JSON Schema
 * and fingerprint, registered once and never changed.
 *
 * A store promises:
 * - **immutability**: a registered (event type, version) keeps its fingerprint and schema for good;
 * - **all or nothing**: `register` either records every entry not yet registered, or — when any
 *   entry's version is registered with another fingerprint — writes nothing and reports the
 *   conflicts (a result, not an error: the caller decides what to throw);
 * - **first writer wins** under concurrency: of two registrations of one new version with
 *   different fingerprints, exactly one is recorded and the other sees a conflict.
 *
 * `PgLogStorage` keeps the registry in the `schema_registry` table (migration
 * `0007_schema_registry`); `InMemoryLogStorage` in memory. The conformance suite covers both.
 */
import type { JsonSchema } from '../schema/json-schema.js';

/** One version to register. */
export interface SchemaRegistration {
  readonly eventType: string;
  readonly version: number;
  /** `sha256:<hex>` of the canonical JSON of `schema` (see `versionSchemaOf`). */
  readonly fingerprint: string;
  readonly schema: JsonSchema;
}

/** A registered version. */
export interface RegisteredSchema extends SchemaRegistration {
  /** Milliseconds since the epoch. */
  readonly registeredAt: number;
  /** The client id that registered it, if given. */
  readonly registeredBy: string | null;
}

/** An entry refused because its version is registered with another fingerprint. */
export interface SchemaRegistrationConflict {
  readonly requested: SchemaRegistration;
  readonly registered: RegisteredSchema;
}

/** The outcome of {@link SchemaRegistryStorage.register}. */
export type RegisterSchemasResult =
  | {
      readonly ok: true;
      /** Entries recorded by this call. */
      readonly registered: readonly SchemaRegistration[];
      /** Entries that were already registered with the same fingerprint. */
      readonly existing: readonly RegisteredSchema[];
    }
  | {
      readonly ok: false;
      /** Nothing was written. */
      readonly conflicts: readonly SchemaRegistrationConflict[];
    };

/** Options of {@link SchemaRegistryStorage.register}. */
export interface RegisterSchemasOptions {
  /** Recorded as `registeredBy` (a client id). */
  readonly registeredBy?: string;
}

/** The registry port. Every method may throw an `AnnalsError` (connection loss is retriable). */
export interface SchemaRegistryStorage {
  /**
   * Registers versions, all or nothing (see the module note). Entries must be distinct
   * (event type, version) pairs with valid fingerprints, else `InvalidOptionsError`.
   */
  register(entries: readonly SchemaRegistration[], options?: RegisterSchemasOptions): Promise<RegisterSchemasResult>;
  /** Registered versions, sorted by event type then version; only `eventTypes` when given. */
  list(filter?: { readonly eventTypes?: readonly string[] }): Promise<RegisteredSchema[]>;
}

const FINGERPRINT = /^sha256:[0-9a-f]{64}$/;

/**
 * Validates registration entries the same way in every store: a non-empty event type, a positive
 * integer version, a `sha256:` fingerprint, an object or boolean schema, no pair twice.
 * Returns an error message, or undefined when they are valid.
 */
export function invalidRegistrations(entries: readonly SchemaRegistration[]): string | undefined {
  if (!Array.isArray(entries)) return 'register(entries) needs an array.';
  const seen = new Set<string>();
  for (const e of entries) {
    if (!e || typeof e.eventType !== 'string' || e.eventType.length === 0 || e.eventType.length > 255) return 'Each entry needs an eventType of 1–255 characters.';
    if (!Number.isSafeInteger(e.version) || e.version < 1) return `"${e.eventType}": version must be a positive integer, got ${String(e.version)}.`;
    if (typeof e.fingerprint !== 'string' || !FINGERPRINT.test(e.fingerprint)) return `"${e.eventType}" v${e.version}: fingerprint must be sha256:<64 hex digits> (use versionSchemaOf).`;
    if (typeof e.schema !== 'boolean' && (e.schema === null || typeof e.schema !== 'object' || Array.isArray(e.schema))) return `"${e.eventType}" v${e.version}: schema must be a JSON Schema object.`;
    const k = `${e.eventType}\u0000${e.version}`;
    if (seen.has(k)) return `"${e.eventType}" v${e.version} is listed twice.`;
    seen.add(k);
  }
  return undefined;
}
