/**
 * The `annals` config file and the user modules it names.
 *
 * Commands that need the application's own code — `projections rebuild` runs the projection's
 * handlers, a schema check needs the topic and event contracts — find it through a small config
 * file: `annals.config.js`, `annals.config.mjs` or `annals.config.json` in the working directory,
 * or the file given with `--config`. It holds the connection (optional: `--url` and
 * `DATABASE_URL` win) and the modules to load:
 *
 * ```js
 * // annals.config.mjs
 * export default { schema: 'annals', modules: ['./dist/projections.js'] };
 * ```
 *
 * Module paths are relative to the config file. Every export of every module is classified once
 * ({@link loadConfigModules}): projections and subscribers (plain definitions, decorated classes
 * or instances), topic contracts and event contracts. Commands pick what they need.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import {
  isDecoratedClass,
  isEventContract,
  isProjectionDefinition,
  isSubscriberDefinition,
  isTopicContract,
  type EventContract,
  type Registrable,
  type TopicContract,
} from '@annals/core';
import { CliNotFoundError, CliUsageError } from './exit-codes.js';

/** The config file names looked for in the working directory, in this order. */
export const CONFIG_FILE_NAMES = Object.freeze(['annals.config.js', 'annals.config.mjs', 'annals.config.json']);

/** What a config file holds, as written. */
export interface AnnalsConfigInput {
  /** PostgreSQL connection string. `--url` and `DATABASE_URL` take precedence. @default undefined */
  readonly url?: string;
  /** Schema of the log's tables. `--schema` takes precedence. @default undefined (then 'annals') */
  readonly schema?: string;
  /** Modules exporting projections, subscribers, topics and events; relative to the config file. @default [] */
  readonly modules?: readonly string[];
}

/** A config file, resolved and validated. */
export interface AnnalsConfig {
  /** The absolute path of the file it came from. */
  readonly file: string;
  readonly url: string | undefined;
  readonly schema: string | undefined;
  /** Absolute paths of the modules to load. */
  readonly modules: readonly string[];
}

/** Options of {@link loadAnnalsConfig}. */
export interface LoadAnnalsConfigInput {
  /** Where to look for `annals.config.*`. @default process.cwd() */
  readonly cwd?: string;
  /** An explicit config file (relative to `cwd`); it must exist. @default undefined (search `cwd`) */
  readonly file?: string;
}

/**
 * Finds and reads the config file. Returns `undefined` when no file was asked for and none is in
 * `cwd`. Throws a usage error naming the file and the problem when a file is malformed.
 *
 * @example
 * ```ts
 * const config = await loadAnnalsConfig({ file: './annals.config.mjs' });
 * const loaded = await loadConfigModules(config!);
 * for (const p of loaded.registrables) annals.register(p);
 * ```
 */
export async function loadAnnalsConfig(input: LoadAnnalsConfigInput = {}): Promise<AnnalsConfig | undefined> {
  const cwd = input.cwd ?? process.cwd();
  let file: string | undefined;
  if (input.file !== undefined) {
    file = path.resolve(cwd, input.file);
    if (!existsSync(file)) throw new CliNotFoundError(`Config file ${file} does not exist.`);
  } else {
    file = CONFIG_FILE_NAMES.map((name) => path.join(cwd, name)).find((candidate) => existsSync(candidate));
    if (file === undefined) return undefined;
  }
  const raw = await readConfigFile(file);
  return resolveConfig(raw, file);
}

async function readConfigFile(file: string): Promise<unknown> {
  if (file.endsWith('.json')) {
    const text = await readFile(file, 'utf8');
    try {
      return JSON.parse(text) as unknown;
    } catch (cause) {
      throw new CliUsageError(`Config file ${file} is not valid JSON: ${(cause as Error).message}`);
    }
  }
  const namespace = (await import(pathToFileURL(file).href)) as { default?: unknown };
  return namespace.default ?? namespace;
}

function resolveConfig(raw: unknown, file: string): AnnalsConfig {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new CliUsageError(`Config file ${file} must export an object { url?, schema?, modules?, contracts?, snapshot?, compatibility? }.`);
  }
  // `contracts`, `snapshot` and `compatibility` belong to the schema gate (`annals schema …`),
  // which reads them with @annals/core's loadContracts: one config file serves both.
  const known = new Set(['url', 'schema', 'modules', 'contracts', 'snapshot', 'compatibility']);
  const unknown = Object.keys(raw).filter((k) => !known.has(k));
  if (unknown.length > 0) {
    throw new CliUsageError(`Config file ${file} has unknown key(s) ${unknown.map((k) => JSON.stringify(k)).join(', ')}; known keys: ${[...known].join(', ')}.`);
  }
  const c = raw as Record<string, unknown>;
  for (const key of ['url', 'schema'] as const) {
    if (c[key] !== undefined && (typeof c[key] !== 'string' || c[key] === '')) {
      throw new CliUsageError(`Config file ${file}: "${key}" must be a non-empty string.`);
    }
  }
  const modules = c['modules'] ?? [];
  if (!Array.isArray(modules) || modules.some((m) => typeof m !== 'string' || m === '')) {
    throw new CliUsageError(`Config file ${file}: "modules" must be an array of module paths (strings).`);
  }
  const dir = path.dirname(file);
  return Object.freeze({
    file,
    url: c['url'] as string | undefined,
    schema: c['schema'] as string | undefined,
    modules: Object.freeze((modules as string[]).map((m) => path.resolve(dir, m))),
  });
}

/** One export of a user module. */
export interface ModuleExport {
  /** The module's absolute path. */
  readonly module: string;
  /** The export's name (`default` for the default export). */
  readonly name: string;
  readonly value: unknown;
}

/** The exports of the config's modules, classified. */
export interface LoadedModules {
  /**
   * What `annals.register` accepts: `defineProjection` / `defineSubscriber` definitions, and
   * classes or instances decorated with `@Projection` / `@Subscriber`. Registering tells which is which.
   */
  readonly registrables: readonly Registrable[];
  /** `defineTopic(...)` contracts, once each. */
  readonly topics: readonly TopicContract[];
  /** `defineEvent(...)` contracts (and `EventClass` classes), once each. */
  readonly events: readonly EventContract[];
  /** Every export of every module, in load order. */
  readonly exports: readonly ModuleExport[];
}

/**
 * Imports the config's modules and classifies their exports. A module that cannot be imported
 * fails with its path and the import error as `cause`.
 */
export async function loadConfigModules(config: Pick<AnnalsConfig, 'modules'>): Promise<LoadedModules> {
  const exports: ModuleExport[] = [];
  for (const module of config.modules) {
    if (!existsSync(module)) throw new CliNotFoundError(`Module ${module} (listed in the config's modules) does not exist. Build your code first?`);
    let namespace: Record<string, unknown>;
    try {
      namespace = (await import(pathToFileURL(module).href)) as Record<string, unknown>;
    } catch (cause) {
      throw new Error(`Could not load module ${module}: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
    }
    for (const [name, value] of Object.entries(namespace)) exports.push(Object.freeze({ module, name, value }));
  }
  const registrables = new Set<Registrable>();
  const topics = new Set<TopicContract>();
  const events = new Set<EventContract>();
  for (const { value } of exports) {
    if (isProjectionDefinition(value) || isSubscriberDefinition(value) || isDecoratedClass(value)) registrables.add(value as Registrable);
    else if (typeof value === 'object' && value !== null && isDecoratedClass((value as { constructor?: unknown }).constructor)) registrables.add(value);
    else if (isTopicContract(value)) topics.add(value);
    else if (isEventContract(value)) events.add(value);
  }
  return Object.freeze({
    registrables: Object.freeze([...registrables]),
    topics: Object.freeze([...topics]),
    events: Object.freeze([...events]),
    exports: Object.freeze(exports),
  });
}
