/**
 * Schema-versioned event contracts.
 *
 * A contract lists every version of an event's payload (zod schemas keyed 1, 2, 3, … with no
 * gaps) and an upcaster from each version to the next. Publishing validates against the latest
 * version. Reading a stored event of version k validates it against version k, runs the upcasters
 * k → k+1 → … → latest, and validates the result against the latest schema, so a handler only
 * ever sees the latest shape — and a stored event that cannot get there is refused with a typed
 * error, never passed on half-converted.
 */
import type { z } from 'zod';
import { InvalidOptionsError, SchemaValidationError, UpcastError, type SchemaIssue } from '../errors.js';
import { validateCompatibility, type CompatibilityMode } from './compatibility-mode.js';

/** Any zod schema. */
export type AnySchema = z.ZodType;

/** Versions of an event: zod schemas keyed 1, 2, 3, … */
export type VersionMap = { readonly [version: number]: AnySchema };

// Successor table: lets the type system find the latest version of a gap-free map (up to 64).
type Next = [
  1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29,
  30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55,
  56, 57, 58, 59, 60, 61, 62, 63, 64, 65,
];
type NumericKeys<V> = Extract<keyof V, number>;
type SuccessorOf<K> = K extends keyof Next ? Next[K] : never;

/** The latest version number of a version map: the key whose successor is not a key (`number` for `any`). */
export type LatestVersion<V extends VersionMap> = 0 extends 1 & V
  ? number
  : {
      [K in NumericKeys<V>]: SuccessorOf<K> extends keyof V ? never : K;
    }[NumericKeys<V>];

/** Upcasters: for every version but the latest, a function from it to the next version's input. */
export type Upcasters<V extends VersionMap> = {
  readonly [K in Exclude<NumericKeys<V>, LatestVersion<V>>]: (
    payload: z.output<V[K]>,
  ) => SuccessorOf<K> extends keyof V ? z.input<V[SuccessorOf<K>]> : never;
};

export interface EventDefinitionInput<T extends string, V extends VersionMap> {
  /** The event type, stored in the `event-type` header (e.g. `order.created`). */
  readonly type: T;
  /** Payload schemas per version, keyed 1, 2, 3, … without gaps. */
  readonly versions: V;
  /** One upcaster per version except the latest, each to the following version. */
  readonly upcast?: NoInfer<Upcasters<V>>;
  /**
   * Which changes between consecutive versions the schema gate accepts (`checkContracts`), and
   * whether older consumers may read newer versions as their latest (`forward`, `full`).
   * @default the mode of the topics carrying the event, else 'backward'
   */
  readonly compatibility?: CompatibilityMode;
}

/**
 * The payload type of an event contract's latest version, as publishers give it and handlers get
 * it. For an event class (`EventClass`), its instance type: handlers receive instances.
 */
export type EventOf<C> = C extends abstract new (payload: any) => infer I ? I : C extends EventContract<string, infer V> ? z.output<V[LatestVersion<V>]> : never;
/** The input type accepted by `publish` for a contract (before zod defaults/transforms). */
export type EventInputOf<C> = C extends abstract new (payload: infer P) => any ? P : C extends EventContract<string, infer V> ? z.input<V[LatestVersion<V>]> : never;

/** A schema-versioned event contract. Made by {@link defineEvent}. */
export interface EventContract<T extends string = string, V extends VersionMap = VersionMap> {
  readonly kind: 'annals.event';
  readonly type: T;
  readonly latestVersion: LatestVersion<V> & number;
  /** Version numbers in ascending order. */
  readonly versions: readonly number[];
  /** The compatibility mode declared on the event, if any (else the topic's, else `backward`). */
  readonly compatibility: CompatibilityMode | undefined;
  /** True when `version` has an upcaster to the next version. */
  hasUpcaster(version: number): boolean;
  /** The schema of one version. */
  schema(version: number): AnySchema | undefined;
  /**
   * Validates a payload against the latest version and returns zod's output.
   * Throws {@link SchemaValidationError} (with the zod issues) when it does not match.
   */
  validate(payload: unknown): z.output<V[LatestVersion<V>]>;
  /**
   * Brings a stored payload of `version` to the latest version: validates it as `version`, runs
   * each upcaster in turn and validates the result as the latest.
   * Throws {@link UpcastError} or {@link SchemaValidationError}.
   */
  upcast(version: number, payload: unknown): z.output<V[LatestVersion<V>]>;
  /** Phantom field carrying the payload type; never set at run time. */
  readonly __payload?: z.output<V[LatestVersion<V>]>;
}

const EVENT_TYPE = /^[A-Za-z0-9][A-Za-z0-9._:/-]{0,254}$/;

function issuesOf(error: z.ZodError): SchemaIssue[] {
  return error.issues.map((i) => ({ ...i, path: [...i.path] }) as SchemaIssue);
}

function describeIssues(issues: readonly SchemaIssue[]): string {
  return issues
    .slice(0, 5)
    .map((i) => `${i.path.length ? i.path.map(String).join('.') : '(root)'}: ${i.message}`)
    .join('; ');
}

/**
 * Defines a schema-versioned event.
 *
 * @example
 * ```ts
 * const OrderCreated = defineEvent({
 *   type: 'order.created',
 *   versions: {
 *     1: z.object({ orderId: z.string(), total: z.number() }),
 *     2: z.object({ orderId: z.string(), totalCents: z.number().int(), currency: z.string() }),
 *   },
 *   upcast: { 1: (v1) => ({ orderId: v1.orderId, totalCents: Math.round(v1.total * 100), currency: 'EUR' }) },
 * });
 * type Created = EventOf<typeof OrderCreated>; // { orderId: string; totalCents: number; currency: string }
 * ```
 */
export function defineEvent<const T extends string, const V extends VersionMap>(
  definition: EventDefinitionInput<T, V>,
): EventContract<T, V> {
  const { type, versions, upcast } = definition;
  if (typeof type !== 'string' || !EVENT_TYPE.test(type)) {
    throw new InvalidOptionsError(
      `Event type ${JSON.stringify(type)} is not valid: use 1–255 characters from letters, digits and . _ : / - (starting with a letter or digit).`,
    );
  }
  const keys = Object.keys(versions ?? {})
    .map(Number)
    .sort((a, b) => a - b);
  if (keys.length === 0) {
    throw new InvalidOptionsError(`Event "${type}" needs at least one version: versions: { 1: z.object({…}) }.`, {
      eventType: type,
    });
  }
  keys.forEach((k, i) => {
    if (k !== i + 1) {
      throw new InvalidOptionsError(
        `Event "${type}" versions must be 1, 2, 3, … without gaps; got ${keys.join(', ')}.`,
        { eventType: type },
      );
    }
    const schema = (versions as Record<number, unknown>)[k];
    if (!schema || typeof (schema as AnySchema).safeParse !== 'function') {
      throw new InvalidOptionsError(`Event "${type}" version ${k} is not a zod schema.`, { eventType: type });
    }
  });
  const latest = keys.length;
  const upcasters = (upcast ?? {}) as Record<number, ((p: unknown) => unknown) | undefined>;
  for (let k = 1; k < latest; k++) {
    if (typeof upcasters[k] !== 'function') {
      throw new InvalidOptionsError(
        `Event "${type}" has version ${k + 1} but no upcaster from version ${k}: add upcast: { ${k}: (v${k}) => … }.`,
        { eventType: type },
      );
    }
  }
  for (const extra of Object.keys(upcasters).map(Number)) {
    if (!(extra >= 1 && extra < latest)) {
      throw new InvalidOptionsError(
        `Event "${type}" has an upcaster for version ${extra}, which is not a version before the latest (${latest}).`,
        { eventType: type },
      );
    }
  }
  const compatibility = validateCompatibility(definition.compatibility, `Event "${type}"`);
  const schemaOf = (v: number): AnySchema => (versions as Record<number, AnySchema>)[v] as AnySchema;

  function parseAs(version: number, payload: unknown, phase: 'publish' | 'read'): unknown {
    const result = schemaOf(version).safeParse(payload);
    if (result.success) return result.data;
    const issues = issuesOf(result.error);
    throw new SchemaValidationError(
      phase === 'publish'
        ? `Payload for "${type}" does not match version ${version}: ${describeIssues(issues)}. Nothing was written.`
        : `Stored "${type}" payload does not match version ${version}: ${describeIssues(issues)}.`,
      issues,
      { eventType: type, schemaVersion: version, cause: result.error },
    );
  }

  const contract: EventContract<T, V> = {
    kind: 'annals.event',
    type,
    latestVersion: latest as LatestVersion<V> & number,
    versions: Object.freeze(keys),
    compatibility,
    hasUpcaster: (version) => typeof upcasters[version] === 'function' && version >= 1 && version < latest,
    schema: (version) => (versions as Record<number, AnySchema>)[version],
    validate: (payload) => parseAs(latest, payload, 'publish') as never,
    upcast(version, payload) {
      if (!Number.isInteger(version) || version < 1 || version > latest) {
        throw new UpcastError(
          `Stored "${type}" event has schema version ${String(version)}, but this contract knows versions 1–${latest}. Deploy the newer contract before reading it.`,
          { eventType: type, ...(Number.isInteger(version) ? { schemaVersion: version } : {}) },
        );
      }
      let current = parseAs(version, payload, 'read');
      for (let k = version; k < latest; k++) {
        try {
          current = (upcasters[k] as (p: unknown) => unknown)(current);
        } catch (cause) {
          throw new UpcastError(`Upcaster of "${type}" from version ${k} to ${k + 1} threw.`, {
            eventType: type,
            schemaVersion: k,
            cause,
          });
        }
        current = parseAs(k + 1, current, 'read');
      }
      return current as never;
    },
  };
  return Object.freeze(contract);
}

export function isEventContract(value: unknown): value is EventContract {
  // A function too: an event class (`EventClass`) is a contract.
  return (typeof value === 'object' || typeof value === 'function') && value !== null && (value as EventContract).kind === 'annals.event';
}
