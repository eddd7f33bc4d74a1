/** Registering contracts explicitly (the `annals schema push` command): every version of every event type. */
import type { CompatibilityMode } from '../contracts/compatibility-mode.js';
import type { LogStorage } from '../storage/log-storage.js';
import type { RegisteredSchema, SchemaRegistration, SchemaRegistrationConflict } from '../storage/schema-registry.js';
import { resolveContractEvents, type ContractList } from './contracts-gate.js';
import { versionSchemaOf } from './json-schema.js';
import { diffJsonSchemas } from './schema-diff.js';

/** Input of {@link pushContracts}. */
export interface PushContractsInput {
  /** A store (connected or not: it is connected here). */
  readonly storage: LogStorage<any>;
  readonly contracts: ContractList;
  /** Recorded as `registeredBy`. @default 'annals-schema-push' */
  readonly registeredBy?: string;
  /** Passed to contract resolution (does not affect what is registered). @default 'backward' */
  readonly defaultCompatibility?: CompatibilityMode;
}

/** Result of {@link pushContracts}: a result, since conflicts are an expected outcome in CI. */
export type PushContractsResult =
  | { readonly ok: true; readonly registered: readonly SchemaRegistration[]; readonly unchanged: readonly RegisteredSchema[]; readonly report: string }
  | { readonly ok: false; readonly conflicts: readonly SchemaRegistrationConflict[]; readonly report: string };

/**
 * Registers every version of every event type in `contracts`, all or nothing: if any version is
 * registered with another schema, nothing is registered and the conflicts are returned with a
 * readable diff in `report`.
 *
 * @example
 * ```ts
 * const result = await pushContracts({ storage: postgres({ connectionString }), contracts });
 * console.log(result.report);
 * process.exitCode = result.ok ? 0 : 1;
 * ```
 */
export async function pushContracts(input: PushContractsInput): Promise<PushContractsResult> {
  const entries: SchemaRegistration[] = [];
  for (const [type, e] of resolveContractEvents(input.contracts, input.defaultCompatibility)) {
    for (const version of e.contract.versions) {
      const { schema, fingerprint } = versionSchemaOf(e.contract.schema(version)!);
      entries.push({ eventType: type, version, fingerprint, schema });
    }
  }
  await input.storage.connect();
  const result = await input.storage.schemaRegistry.register(entries, { registeredBy: input.registeredBy ?? 'annals-schema-push' });
  if (result.ok) {
    const lines = [`✓ schema push: ${result.registered.length} version(s) registered, ${result.existing.length} already registered.`];
    for (const r of result.registered) lines.push(`  + ${r.eventType} v${r.version} ${r.fingerprint.slice(0, 19)}…`);
    return { ok: true, registered: result.registered, unchanged: result.existing, report: `${lines.join('\n')}\n` };
  }
  const lines = [`✗ schema push refused: ${result.conflicts.length} version(s) are registered with another schema. Nothing was registered.`];
  for (const c of result.conflicts) {
    lines.push('', `✗ "${c.requested.eventType}" v${c.requested.version} (registered${c.registered.registeredBy ? ` by ${c.registered.registeredBy}` : ''}) differs:`);
    for (const d of diffJsonSchemas(c.registered.schema, c.requested.schema)) lines.push(`    ${d}`);
    lines.push(`  Restore v${c.requested.version} and add a new version with an upcaster instead.`);
  }
  return { ok: false, conflicts: result.conflicts, report: `${lines.join('\n')}\n` };
}
