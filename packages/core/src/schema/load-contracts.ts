/**
 * Loading contracts for the schema gate from a small config file, `annals.config.{js,mjs,json}`:
 *
 * ```js
 * // annals.config.mjs
 * export default {
 *   contracts: ['./packages/contracts/dist/index.js'], // modules, relative to this file
 *   snapshot: './annals.contracts.json',                // optional; this is the default
 *   compatibility: 'backward',                          // optional default mode
 * };
 * ```
 *
 * Every module is imported and every export that is an event or topic contract (or an array or
 * plain object of them, one level deep) is collected. Modules are imported as they are: point
 * the config at built JavaScript, or run the gate under a loader that understands TypeScript.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { validateCompatibility, type CompatibilityMode } from '../contracts/compatibility-mode.js';
import { isEventContract, type EventContract } from '../contracts/event.js';
import { isTopicContract, type TopicContract } from '../contracts/topic.js';
import { ContractLoadError } from '../errors.js';
import { resolveContractEvents, type ContractList } from './contracts-gate.js';

/** The config file names looked for, in order. */
export const ANNALS_CONFIG_FILES: readonly string[] = Object.freeze(['annals.config.js', 'annals.config.mjs', 'annals.config.json']);

/** What `annals.config.*` holds. */
export interface AnnalsConfigInput {
  /** Modules exporting the contracts, relative to the config file. */
  readonly contracts: readonly string[];
  /** Where the committed snapshot lives, relative to the config file. @default './annals.contracts.json' */
  readonly snapshot?: string;
  /** The compatibility mode of events and topics that declare none. @default 'backward' */
  readonly compatibility?: CompatibilityMode;
}

/** A resolved config: absolute paths, defaults applied. */
export interface AnnalsConfig {
  /** The config file. */
  readonly file: string;
  /** Absolute module paths. */
  readonly contracts: readonly string[];
  /** Absolute path of the snapshot file. */
  readonly snapshot: string;
  readonly compatibility: CompatibilityMode;
}

/** Options of {@link loadAnnalsConfig} and {@link loadContracts}. */
export interface LoadConfigOptions {
  /** Directory searched for `annals.config.{js,mjs,json}`. @default process.cwd() */
  readonly cwd?: string;
  /** An explicit config file (wins over `cwd`). */
  readonly configFile?: string;
}

/** Contracts loaded from a config. */
export interface LoadedContracts {
  readonly config: AnnalsConfig;
  /** Every distinct contract found, in module order. */
  readonly contracts: ContractList;
  /** Which module each event type came from (first definition). */
  readonly sources: ReadonlyMap<string, string>;
}

/**
 * Finds and reads `annals.config.{js,mjs,json}` (in `cwd`, or `configFile`), validating it.
 * Throws `ContractLoadError` naming the file and what is wrong.
 *
 * @example
 * ```ts
 * const config = await loadAnnalsConfig({ cwd: process.cwd() });
 * ```
 */
export async function loadAnnalsConfig(options: LoadConfigOptions = {}): Promise<AnnalsConfig> {
  const cwd = path.resolve(options.cwd ?? process.cwd());
  const file = options.configFile
    ? path.resolve(cwd, options.configFile)
    : ANNALS_CONFIG_FILES.map((f) => path.join(cwd, f)).find((f) => existsSync(f));
  if (!file || !existsSync(file)) {
    throw new ContractLoadError(
      options.configFile
        ? `Config file ${file} does not exist.`
        : `No ${ANNALS_CONFIG_FILES.join(' / ')} in ${cwd}. Create one: export default { contracts: ['./path/to/contracts.js'] }.`,
    );
  }
  let raw: unknown;
  try {
    if (file.endsWith('.json')) raw = JSON.parse(readFileSync(file, 'utf8'));
    else raw = ((await import(pathToFileURL(file).href)) as { default?: unknown }).default;
  } catch (cause) {
    throw new ContractLoadError(`Cannot read ${file}: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
  }
  const input = raw as AnnalsConfigInput | undefined;
  if (!input || typeof input !== 'object' || !Array.isArray(input.contracts) || input.contracts.length === 0 || !input.contracts.every((c) => typeof c === 'string' && c.length > 0)) {
    throw new ContractLoadError(`${file} must ${file.endsWith('.json') ? 'hold' : 'export default'} { contracts: ['./module.js', …] } with at least one module path.`);
  }
  if (input.snapshot !== undefined && (typeof input.snapshot !== 'string' || input.snapshot.length === 0)) {
    throw new ContractLoadError(`${file}: snapshot must be a file path.`);
  }
  let compatibility: CompatibilityMode;
  try {
    compatibility = validateCompatibility(input.compatibility, file) ?? 'backward';
  } catch (cause) {
    throw new ContractLoadError((cause as Error).message, { cause });
  }
  const dir = path.dirname(file);
  return Object.freeze({
    file,
    contracts: Object.freeze(input.contracts.map((c) => path.resolve(dir, c))),
    snapshot: path.resolve(dir, input.snapshot ?? './annals.contracts.json'),
    compatibility,
  });
}

function collect(value: unknown, into: Array<EventContract | TopicContract>, depth = 0): void {
  if (isEventContract(value) || isTopicContract(value)) {
    if (!into.includes(value)) into.push(value);
    return;
  }
  if (depth > 0 || value === null || typeof value !== 'object') return;
  const items = Array.isArray(value) ? value : Object.getPrototypeOf(value) === Object.prototype ? Object.values(value) : [];
  for (const item of items) collect(item, into, depth + 1);
}

/**
 * Loads the config and imports its contract modules, collecting every exported event and topic
 * contract. Throws `ContractLoadError` when a module cannot be imported, exports no contract, or
 * one event type is defined twice with different schemas.
 *
 * @example
 * ```ts
 * const { contracts, config } = await loadContracts({ cwd: process.cwd() });
 * const snapshot = JSON.parse(await readFile(config.snapshot, 'utf8'));
 * const { ok, report } = checkContracts({ contracts, snapshot, defaultCompatibility: config.compatibility });
 * ```
 */
export async function loadContracts(options: LoadConfigOptions = {}): Promise<LoadedContracts> {
  const config = await loadAnnalsConfig(options);
  const contracts: Array<EventContract | TopicContract> = [];
  const sources = new Map<string, string>();
  for (const modulePath of config.contracts) {
    let namespace: Record<string, unknown>;
    try {
      namespace = (await import(pathToFileURL(modulePath).href)) as Record<string, unknown>;
    } catch (cause) {
      throw new ContractLoadError(`Cannot import contracts module ${modulePath} (listed in ${config.file}): ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
    }
    const found: Array<EventContract | TopicContract> = [];
    for (const value of Object.values(namespace)) collect(value, found);
    if (found.length === 0) {
      throw new ContractLoadError(`${modulePath} (listed in ${config.file}) exports no event or topic contract.`);
    }
    for (const c of found) {
      if (!contracts.includes(c)) contracts.push(c);
      const events = isTopicContract(c) ? c.events : [c as EventContract];
      for (const e of events) if (!sources.has(e.type)) sources.set(e.type, modulePath);
    }
  }
  // Throws ContractLoadError for one event type defined twice with different schemas.
  resolveContractEvents(contracts, config.compatibility);
  return { config, contracts, sources };
}
