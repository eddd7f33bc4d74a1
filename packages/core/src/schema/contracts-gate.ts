/**
 * The schema gate: snapshots of a codebase's event contracts, and the check a CI runs before a
 * merge — against the committed snapshot and, optionally, the live registry.
 *
 * ## What is breaking
 * 1. **A version changed in place** (its fingerprint differs from the snapshot's or the
 *    registry's): records already stored as that version would be read with another schema.
 *    A changed contract needs a new version and an upcaster.
 * 2. **A version or an event type removed** that the snapshot or registry knows: its stored
 *    records would have no contract (`UnknownEventTypeError`) or no upcast path.
 * 3. **No upcast path**: every version but the latest must have an upcaster to the next, so
 *    every older version reaches the latest.
 * 4. **Consecutive versions that break the event's compatibility mode** (`backward` by default,
 *    else `forward`, `full`, `none`; see `compatibility.ts`).
 *
 * Added versions and events, and a changed mode, are reported as non-breaking changes.
 * Everything here is pure: no database, no file system (see `load-contracts.ts` for loading).
 */
import { DEFAULT_COMPATIBILITY, directionsOf, strictestOf, type CompatibilityMode } from '../contracts/compatibility-mode.js';
import { isEventContract, type EventContract } from '../contracts/event.js';
import { isTopicContract, type TopicContract } from '../contracts/topic.js';
import { ContractLoadError } from '../errors.js';
import type { RegisteredSchema } from '../storage/schema-registry.js';
import { readerIncompatibilities } from './compatibility.js';
import { canonicalJson, versionSchemaOf, type JsonSchema } from './json-schema.js';
import { diffJsonSchemas } from './schema-diff.js';

/** Contracts as given to the gate: event contracts and topic contracts (whose events are included). */
export type ContractList = ReadonlyArray<EventContract<string, any> | TopicContract>;

/** The format tag of {@link ContractSnapshot}. */
export const CONTRACT_SNAPSHOT_FORMAT = 'annals.contracts/1';

/** One event type in a snapshot. */
export interface SnapshotEvent {
  /** The mode the gate applies to this event (its own, else its topics', else `backward`). */
  readonly compatibility: CompatibilityMode;
  /** Topics (in these contracts) that carry the event, sorted. */
  readonly topics: readonly string[];
  /** Each version's normalised JSON Schema and fingerprint, keyed by version number. */
  readonly versions: { readonly [version: string]: { readonly fingerprint: string; readonly schema: JsonSchema } };
}

/**
 * A deterministic, JSON-serialisable record of contracts (keys sorted, no timestamps), meant to
 * be committed next to them so a diff in review shows every contract change.
 */
export interface ContractSnapshot {
  readonly format: typeof CONTRACT_SNAPSHOT_FORMAT;
  readonly events: { readonly [eventType: string]: SnapshotEvent };
}

/** One difference the gate found. */
export interface ContractChange {
  readonly eventType: string;
  readonly kind:
    | 'version-changed'
    | 'version-removed'
    | 'event-removed'
    | 'no-upcast-path'
    | 'incompatible'
    | 'version-added'
    | 'event-added'
    | 'compatibility-changed'
    | 'not-registered';
  /** True when the change must not be merged. */
  readonly breaking: boolean;
  /** The version concerned (for `incompatible`: the newer of the pair). */
  readonly version?: number;
  /** What the change is compared against. */
  readonly against: 'snapshot' | 'registry' | 'contracts';
  /** One sentence: what changed and what to do. */
  readonly message: string;
  /** Diff lines (schema diff, or one line per incompatibility). */
  readonly details: readonly string[];
}

/** Input of {@link checkContracts}. */
export interface CheckContractsInput {
  /** The contracts as the code defines them now. */
  readonly contracts: ContractList;
  /** The committed snapshot (from {@link snapshotContracts}); omit on the first run. */
  readonly snapshot?: ContractSnapshot;
  /** What the live registry holds (`storage.schemaRegistry.list()`); omit to check offline. */
  readonly registry?: readonly RegisteredSchema[];
  /** The mode of events and topics that declare none. @default 'backward' */
  readonly defaultCompatibility?: CompatibilityMode;
}

/** Result of {@link checkContracts}. */
export interface CheckContractsResult {
  /** True when nothing is breaking. */
  readonly ok: boolean;
  readonly breaking: readonly ContractChange[];
  /** Every change found, breaking or not. */
  readonly changes: readonly ContractChange[];
  /** A readable report of every change (breaking first), for a terminal or a CI log. */
  readonly report: string;
}

interface ResolvedEvent {
  readonly contract: EventContract;
  readonly compatibility: CompatibilityMode;
  readonly topics: string[];
}

/**
 * The distinct event types of a contract list with their effective modes. Two different contract
 * objects for one event type must have identical versions, or `ContractLoadError` is thrown.
 */
export function resolveContractEvents(contracts: ContractList, defaultCompatibility: CompatibilityMode = DEFAULT_COMPATIBILITY): Map<string, ResolvedEvent> {
  const events = new Map<string, { contract: EventContract; topicModes: CompatibilityMode[]; topics: Set<string> }>();
  const add = (event: EventContract, topic?: TopicContract) => {
    let entry = events.get(event.type);
    if (!entry) {
      entry = { contract: event, topicModes: [], topics: new Set() };
      events.set(event.type, entry);
    } else if (entry.contract !== event && !sameVersions(entry.contract, event)) {
      throw new ContractLoadError(
        `Event type "${event.type}" is defined twice with different versions or schemas. Define each event contract once (in the contracts package) and import it everywhere.`,
        { eventType: event.type },
      );
    }
    if (topic) {
      entry.topics.add(topic.name);
      if (topic.compatibility) entry.topicModes.push(topic.compatibility);
    }
  };
  for (const c of contracts) {
    if (isTopicContract(c)) for (const e of c.events) add(e, c);
    else if (isEventContract(c)) add(c);
    else throw new ContractLoadError('Contracts must be event contracts (defineEvent, EventClass) or topic contracts (defineTopic).');
  }
  const resolved = new Map<string, ResolvedEvent>();
  for (const [type, e] of [...events].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    const mode = e.contract.compatibility ?? (e.topicModes.length > 0 ? e.topicModes.reduce(strictestOf) : defaultCompatibility);
    resolved.set(type, { contract: e.contract, compatibility: mode, topics: [...e.topics].sort() });
  }
  return resolved;
}

function sameVersions(a: EventContract, b: EventContract): boolean {
  return (
    a.versions.length === b.versions.length &&
    a.versions.every((v) => versionSchemaOf(a.schema(v)!).fingerprint === versionSchemaOf(b.schema(v)!).fingerprint)
  );
}

/**
 * A snapshot of contracts: every event type's versions with their JSON Schema and fingerprint,
 * and the compatibility mode the gate applies. Deterministic: the same contracts give the same
 * JSON, so write it with `JSON.stringify(snapshot, null, 2)` and commit it.
 *
 * @example
 * ```ts
 * const snapshot = snapshotContracts([orders, payments]);
 * await writeFile('annals.contracts.json', JSON.stringify(snapshot, null, 2) + '\n');
 * ```
 */
export function snapshotContracts(contracts: ContractList, options: { readonly defaultCompatibility?: CompatibilityMode } = {}): ContractSnapshot {
  const events: Record<string, SnapshotEvent> = {};
  for (const [type, e] of resolveContractEvents(contracts, options.defaultCompatibility)) {
    const versions: Record<string, { fingerprint: string; schema: JsonSchema }> = {};
    for (const v of e.contract.versions) {
      const { schema, fingerprint } = versionSchemaOf(e.contract.schema(v)!);
      // Keys sorted: reordering fields in the source leaves the committed file unchanged.
      versions[String(v)] = { fingerprint, schema: JSON.parse(canonicalJson(schema)) as JsonSchema };
    }
    events[type] = { compatibility: e.compatibility, topics: e.topics, versions };
  }
  return { format: CONTRACT_SNAPSHOT_FORMAT, events };
}

/**
 * Checks that a snapshot read from a file is one (format tag, shape). Throws `ContractLoadError`.
 */
export function parseContractSnapshot(value: unknown, source = 'the snapshot'): ContractSnapshot {
  const v = value as ContractSnapshot;
  if (!v || typeof v !== 'object' || v.format !== CONTRACT_SNAPSHOT_FORMAT || !v.events || typeof v.events !== 'object') {
    throw new ContractLoadError(`${source} is not an Annals contract snapshot (format "${CONTRACT_SNAPSHOT_FORMAT}"): write one with snapshotContracts().`);
  }
  for (const [type, e] of Object.entries(v.events)) {
    if (!e || typeof e !== 'object' || !e.versions || typeof e.versions !== 'object') {
      throw new ContractLoadError(`${source}: event "${type}" has no versions.`, { eventType: type });
    }
  }
  return v;
}

/** Why the reader of one version cannot read the other's records, per direction the mode requires. */
function pairIssues(mode: CompatibilityMode, older: JsonSchema, newer: JsonSchema, v: number): string[] {
  const { backward, forward } = directionsOf(mode);
  const lines: string[] = [];
  if (backward) {
    for (const i of readerIncompatibilities(newer, older)) lines.push(`backward (v${v} reading v${v - 1} records): ${i.message}`);
  }
  if (forward) {
    for (const i of readerIncompatibilities(older, newer)) lines.push(`forward (v${v - 1} reading v${v} records): ${i.message}`);
  }
  return lines;
}

/**
 * The schema gate. Compares contracts with a snapshot and/or the registry and checks each event's
 * consecutive versions against its compatibility mode. Never throws for a breaking change: it is
 * in `breaking` (and `ok` is false); the CLI exits non-zero on it.
 *
 * @example
 * ```ts
 * const { ok, report } = checkContracts({ contracts, snapshot: JSON.parse(await readFile('annals.contracts.json', 'utf8')) });
 * console.log(report);
 * process.exitCode = ok ? 0 : 1;
 * ```
 */
export function checkContracts(input: CheckContractsInput): CheckContractsResult {
  const events = resolveContractEvents(input.contracts, input.defaultCompatibility);
  const changes: ContractChange[] = [];

  for (const [type, e] of events) {
    const c = e.contract;
    for (const v of c.versions) {
      if (v < c.latestVersion && !c.hasUpcaster(v)) {
        changes.push({
          eventType: type, kind: 'no-upcast-path', breaking: true, version: v, against: 'contracts',
          message: `"${type}" v${v} has no upcaster to v${v + 1}: its stored records cannot reach the latest version (v${c.latestVersion}). Add upcast: { ${v}: (v${v}) => … }.`,
          details: [],
        });
      }
    }
    if (e.compatibility === 'none') continue;
    for (let v = 2; v <= c.latestVersion; v++) {
      const lines = pairIssues(e.compatibility, versionSchemaOf(c.schema(v - 1)!).schema, versionSchemaOf(c.schema(v)!).schema, v);
      if (lines.length > 0) {
        changes.push({
          eventType: type, kind: 'incompatible', breaking: true, version: v, against: 'contracts',
          message: `"${type}" v${v} is not ${e.compatibility}-compatible with v${v - 1}. Make the change compatible (an optional field, a default), or declare compatibility: 'none' on the event if every consumer relies on the upcaster.`,
          details: lines,
        });
      }
    }
  }

  if (input.snapshot) compareWithBaseline(events, snapshotBaseline(input.snapshot), 'snapshot', changes);
  if (input.registry) compareWithBaseline(events, registryBaseline(input.registry), 'registry', changes);

  const breaking = changes.filter((c) => c.breaking);
  return { ok: breaking.length === 0, breaking, changes, report: formatReport(changes, events.size) };
}

interface Baseline {
  readonly compatibility?: CompatibilityMode;
  readonly versions: Map<number, { fingerprint: string; schema: JsonSchema | undefined; registeredBy?: string | null }>;
}

function snapshotBaseline(snapshot: ContractSnapshot): Map<string, Baseline> {
  const out = new Map<string, Baseline>();
  for (const [type, e] of Object.entries(snapshot.events)) {
    out.set(type, {
      compatibility: e.compatibility,
      versions: new Map(Object.entries(e.versions).map(([v, s]) => [Number(v), { fingerprint: s.fingerprint, schema: s.schema }])),
    });
  }
  return out;
}

function registryBaseline(registry: readonly RegisteredSchema[]): Map<string, Baseline> {
  const out = new Map<string, Baseline & { versions: Baseline['versions'] }>();
  for (const r of registry) {
    let b = out.get(r.eventType);
    if (!b) out.set(r.eventType, (b = { versions: new Map() }));
    b.versions.set(r.version, { fingerprint: r.fingerprint, schema: r.schema, registeredBy: r.registeredBy });
  }
  return out;
}

function compareWithBaseline(events: Map<string, ResolvedEvent>, baseline: Map<string, Baseline>, against: 'snapshot' | 'registry', changes: ContractChange[]): void {
  const where = against === 'snapshot' ? 'the snapshot' : 'the registry';
  for (const [type, base] of [...baseline].sort(([a], [b]) => (a < b ? -1 : 1))) {
    const e = events.get(type);
    if (!e) {
      changes.push({
        eventType: type, kind: 'event-removed', breaking: true, against,
        message: `"${type}" is in ${where} but no longer in the contracts: its stored records would fail with UnknownEventTypeError. Keep the contract (it may stop being published).`,
        details: [],
      });
      continue;
    }
    for (const [v, b] of [...base.versions].sort(([x], [y]) => x - y)) {
      const schema = e.contract.schema(v);
      if (!schema) {
        changes.push({
          eventType: type, kind: 'version-removed', breaking: true, version: v, against,
          message: `"${type}" v${v} is in ${where}${b.registeredBy ? ` (registered by ${b.registeredBy})` : ''} but the contract only has v1–v${e.contract.latestVersion}: records of v${v} could not be read. Restore the version${against === 'registry' ? ', or add it to the contracts package if another service published it' : ''}.`,
          details: [],
        });
        continue;
      }
      const local = versionSchemaOf(schema);
      if (local.fingerprint !== b.fingerprint) {
        changes.push({
          eventType: type, kind: 'version-changed', breaking: true, version: v, against,
          message: `"${type}" v${v} was changed in place (${where}: ${b.fingerprint.slice(0, 19)}…, now ${local.fingerprint.slice(0, 19)}…). Records stored as v${v} keep the old shape: restore v${v} and add v${e.contract.latestVersion + 1} with an upcaster from v${e.contract.latestVersion}.`,
          details: b.schema === undefined ? [] : diffJsonSchemas(b.schema, local.schema),
        });
      }
    }
    for (const v of e.contract.versions) {
      if (base.versions.has(v)) continue;
      changes.push(
        against === 'snapshot'
          ? { eventType: type, kind: 'version-added', breaking: false, version: v, against, message: `"${type}" v${v} is new (update the snapshot).`, details: [] }
          : { eventType: type, kind: 'not-registered', breaking: false, version: v, against, message: `"${type}" v${v} is not registered yet (it will be on first publish, or with push).`, details: [] },
      );
    }
    if (against === 'snapshot' && base.compatibility && base.compatibility !== e.compatibility) {
      changes.push({
        eventType: type, kind: 'compatibility-changed', breaking: false, against,
        message: `"${type}" compatibility changed from ${base.compatibility} to ${e.compatibility}.`,
        details: [],
      });
    }
  }
  for (const [type, e] of events) {
    if (baseline.has(type)) continue;
    changes.push(
      against === 'snapshot'
        ? { eventType: type, kind: 'event-added', breaking: false, against, message: `"${type}" is new (v1–v${e.contract.latestVersion}; update the snapshot).`, details: [] }
        : { eventType: type, kind: 'not-registered', breaking: false, against, message: `"${type}" has no registered version yet.`, details: [] },
    );
  }
}

function formatReport(changes: readonly ContractChange[], eventCount: number): string {
  const breaking = changes.filter((c) => c.breaking);
  const other = changes.filter((c) => !c.breaking);
  const lines: string[] = [];
  lines.push(
    breaking.length === 0
      ? `✓ schema check passed: ${eventCount} event type(s), no breaking change.`
      : `✗ schema check failed: ${breaking.length} breaking change(s) in ${new Set(breaking.map((c) => c.eventType)).size} event type(s).`,
  );
  const block = (c: ContractChange, mark: string) => {
    lines.push('', `${mark} [${c.kind}${c.against === 'contracts' ? '' : ` vs ${c.against}`}] ${c.message}`);
    for (const d of c.details) lines.push(`    ${d}`);
  };
  for (const c of breaking) block(c, '✗');
  for (const c of other) block(c, '·');
  return `${lines.join('\n')}\n`;
}
