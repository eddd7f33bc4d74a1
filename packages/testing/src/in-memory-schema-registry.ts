/**
 * The schema-registry port in memory (`storage.schemaRegistry` of an `InMemoryLogStorage`): the
 * same all-or-nothing, first-writer-wins semantics as `PgSchemaRegistry`, checked by the same
 * conformance tests. Registrations are plain JS work with no await between check and write, so
 * concurrent calls cannot interleave inside one.
 */
import {
  InvalidOptionsError,
  NotConnectedError,
  invalidRegistrations,
  type RegisteredSchema,
  type RegisterSchemasOptions,
  type RegisterSchemasResult,
  type SchemaRegistration,
  type SchemaRegistrationConflict,
  type SchemaRegistryStorage,
} from '@annals/core';

const keyOf = (eventType: string, version: number) => `${eventType}\u0000${version}`;

export class InMemorySchemaRegistry implements SchemaRegistryStorage {
  readonly #rows = new Map<string, RegisteredSchema>();
  readonly #now: () => number;
  readonly #connected: () => boolean;

  constructor(now: () => number, connected: () => boolean) {
    this.#now = now;
    this.#connected = connected;
  }

  async register(entries: readonly SchemaRegistration[], options: RegisterSchemasOptions = {}): Promise<RegisterSchemasResult> {
    if (!this.#connected()) throw new NotConnectedError('The in-memory storage is not connected: call connect() first.');
    const invalid = invalidRegistrations(entries);
    if (invalid) throw new InvalidOptionsError(`Schema registration refused: ${invalid}`);
    const conflicts: SchemaRegistrationConflict[] = [];
    const existing: RegisteredSchema[] = [];
    const missing: SchemaRegistration[] = [];
    for (const e of entries) {
      const registered = this.#rows.get(keyOf(e.eventType, e.version));
      if (!registered) missing.push(e);
      else if (registered.fingerprint !== e.fingerprint) conflicts.push({ requested: e, registered });
      else existing.push(registered);
    }
    if (conflicts.length > 0) return { ok: false, conflicts };
    const registeredAt = this.#now();
    for (const e of missing) {
      // A deep copy, frozen: callers cannot alter what the registry holds.
      const schema = JSON.parse(JSON.stringify(e.schema)) as RegisteredSchema['schema'];
      this.#rows.set(
        keyOf(e.eventType, e.version),
        Object.freeze({ eventType: e.eventType, version: e.version, fingerprint: e.fingerprint, schema, registeredAt, registeredBy: options.registeredBy ?? null }),
      );
    }
    return { ok: true, registered: missing, existing };
  }

  async list(filter: { readonly eventTypes?: readonly string[] } = {}): Promise<RegisteredSchema[]> {
    if (!this.#connected()) throw new NotConnectedError('The in-memory storage is not connected: call connect() first.');
    const types = filter.eventTypes === undefined ? undefined : new Set(filter.eventTypes);
    return [...this.#rows.values()]
      .filter((r) => !types || types.has(r.eventType))
      .sort((a, b) => (a.eventType < b.eventType ? -1 : a.eventType > b.eventType ? 1 : a.version - b.version));
  }
}
