/**
 * Compatibility modes of event contracts: which changes between consecutive versions of an event
 * type the schema gate accepts. The words are Confluent Schema Registry's; the rules behind them
 * are in `schema/compatibility.ts` and docs/schema-registry.md.
 */
import { InvalidOptionsError } from '../errors.js';

/**
 * - `backward` (default): a reader on version n+1 can read records written as version n, as they
 *   are (upgrade consumers first);
 * - `forward`: a reader on version n can read records written as version n+1 (upgrade producers
 *   first; lets older consumers use `onUnknownVersion: 'read-as-latest-known'`);
 * - `full`: both;
 * - `none`: no structural check; readers rely on the upcasters alone.
 */
export type CompatibilityMode = 'backward' | 'forward' | 'full' | 'none';

/** Every compatibility mode. */
export const COMPATIBILITY_MODES: readonly CompatibilityMode[] = Object.freeze(['backward', 'forward', 'full', 'none']);

/** The mode used when neither the event nor a topic carrying it declares one. */
export const DEFAULT_COMPATIBILITY: CompatibilityMode = 'backward';

/** Validates a compatibility mode given in a definition; `where` names the definition in the error. */
export function validateCompatibility(value: unknown, where: string): CompatibilityMode | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || !(COMPATIBILITY_MODES as readonly string[]).includes(value)) {
    throw new InvalidOptionsError(`${where}: compatibility must be one of ${COMPATIBILITY_MODES.map((m) => `'${m}'`).join(', ')}; got ${JSON.stringify(value)}.`);
  }
  return value as CompatibilityMode;
}

/** Whether a mode requires readers on version n+1 to read version n (`backward`) and/or the reverse (`forward`). */
export function directionsOf(mode: CompatibilityMode): { readonly backward: boolean; readonly forward: boolean } {
  return { backward: mode === 'backward' || mode === 'full', forward: mode === 'forward' || mode === 'full' };
}

/** The mode that demands both modes' checks: used when an event is carried by topics declaring different modes. */
export function strictestOf(a: CompatibilityMode, b: CompatibilityMode): CompatibilityMode {
  const da = directionsOf(a);
  const db = directionsOf(b);
  const backward = da.backward || db.backward;
  const forward = da.forward || db.forward;
  return backward && forward ? 'full' : backward ? 'backward' : forward ? 'forward' : 'none';
}
