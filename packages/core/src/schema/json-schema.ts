/**
 * The JSON Schema of an event version, as the registry stores it and the gate compares it.
 *
 * ## Choices (docs/schema-registry.md explains them to users)
 * - **`io: 'input'`** — the schema describes what a version's zod schema *accepts*: what a reader
 *   of that version parses (a stored record is parsed with its version's schema) and what
 *   `publish` takes. A field with `.default()` is therefore optional, and a `.transform()` is
 *   described by its input side (output mode cannot represent transforms at all).
 * - **Unrepresentable types are kept, not erased** — zod's `unrepresentable: 'any'` turns
 *   `z.date()`, `z.bigint()`, `z.map()`, `z.set()`, `z.custom()`, … into `{}` (anything), which
 *   would make `z.date()` → `z.bigint()` an invisible change. Such a node is annotated with
 *   `"x-zod-type": "<zod type>"`, which the fingerprint covers and the compatibility check treats
 *   as an opaque type (equal or incompatible). msgpack stores dates and bigints as themselves, so
 *   they are real wire types here.
 * - **Normalised** — annotations (`title`, `description`, `examples`, `$comment`, `deprecated`,
 *   `readOnly`, `writeOnly`, `$schema`, `$id`) are removed, `required` / `type` / `enum` lists are
 *   sorted, and object keys are sorted: editing a description or reordering fields does not change
 *   a version's fingerprint. `default` is kept (it changes what a reader produces).
 * - **Fingerprint** — `sha256:` + the hex SHA-256 of the normalised schema's canonical JSON (keys
 *   sorted, no whitespace).
 */
import { createHash } from 'node:crypto';
import { z } from 'zod';
import type { AnySchema } from '../contracts/event.js';
import { InvalidOptionsError } from '../errors.js';

/** A JSON Schema document (draft 2020-12) as plain JSON. */
export type JsonSchema = boolean | { readonly [keyword: string]: unknown };

/** A version's normalised JSON Schema and its fingerprint. */
export interface VersionSchema {
  readonly schema: JsonSchema;
  /** `sha256:<hex>` of the canonical JSON of `schema`. */
  readonly fingerprint: string;
}

/** Zod types that JSON Schema cannot describe: annotated with `x-zod-type` instead of erased. */
const UNREPRESENTABLE = new Set(['bigint', 'date', 'map', 'set', 'symbol', 'undefined', 'void', 'nan', 'custom', 'function', 'promise']);
const ANNOTATIONS = new Set(['title', 'description', 'examples', '$comment', 'deprecated', 'readOnly', 'writeOnly', '$schema', '$id']);
/** Keywords whose value is a map of name → schema. */
const SCHEMA_MAPS = new Set(['properties', 'patternProperties', '$defs', 'definitions', 'dependentSchemas']);
/** Keywords whose value is one schema. */
const SCHEMA_VALUES = new Set(['items', 'additionalProperties', 'not', 'contains', 'propertyNames', 'if', 'then', 'else', 'unevaluatedProperties', 'unevaluatedItems', 'additionalItems']);
/** Keywords whose value is a list of schemas. */
const SCHEMA_LISTS = new Set(['anyOf', 'oneOf', 'allOf', 'prefixItems']);
/** Keywords whose value is a set (order carries no meaning). */
const SETS = new Set(['required', 'type', 'enum']);

/** JSON text with object keys sorted and no whitespace: equal values give equal text. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') {
    if (value === undefined) return 'null';
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  const entries = Object.keys(value as object)
    .filter((k) => (value as Record<string, unknown>)[k] !== undefined)
    .sort()
    .map((k) => `${JSON.stringify(k)}:${canonicalJson((value as Record<string, unknown>)[k])}`);
  return `{${entries.join(',')}}`;
}

/** Removes annotations and sorts set-like lists, walking only schema positions (a property named `description` stays). */
export function normalizeJsonSchema(schema: unknown): JsonSchema {
  if (typeof schema === 'boolean') return schema;
  if (schema === null || typeof schema !== 'object' || Array.isArray(schema)) {
    throw new InvalidOptionsError(`Not a JSON Schema: ${canonicalJson(schema).slice(0, 100)} (a schema is an object or a boolean).`);
  }
  const out: Record<string, unknown> = {};
  for (const [keyword, value] of Object.entries(schema as Record<string, unknown>)) {
    if (ANNOTATIONS.has(keyword) || value === undefined) continue;
    if (SCHEMA_MAPS.has(keyword) && value && typeof value === 'object') {
      out[keyword] = Object.fromEntries(Object.entries(value as Record<string, unknown>).map(([k, v]) => [k, normalizeJsonSchema(v)]));
    } else if (SCHEMA_VALUES.has(keyword)) {
      // `items` as a list is draft-07's tuple form.
      out[keyword] = Array.isArray(value) ? value.map(normalizeJsonSchema) : normalizeJsonSchema(value);
    } else if (SCHEMA_LISTS.has(keyword) && Array.isArray(value)) {
      out[keyword] = value.map(normalizeJsonSchema);
    } else if (SETS.has(keyword) && Array.isArray(value)) {
      out[keyword] = [...value].sort((a, b) => (canonicalJson(a) < canonicalJson(b) ? -1 : canonicalJson(a) > canonicalJson(b) ? 1 : 0));
    } else {
      out[keyword] = value;
    }
  }
  return out;
}

/** `sha256:<hex>` of a schema's canonical JSON. */
export function fingerprintOf(schema: JsonSchema): string {
  return `sha256:${createHash('sha256').update(canonicalJson(schema)).digest('hex')}`;
}

const cache = new WeakMap<object, VersionSchema>();

/**
 * The normalised JSON Schema (input side, unrepresentable types annotated) and fingerprint of a
 * zod schema. Computed once per schema object.
 *
 * @example
 * ```ts
 * const { schema, fingerprint } = versionSchemaOf(OrderCreated.schema(2)!);
 * ```
 */
export function versionSchemaOf(zodSchema: AnySchema): VersionSchema {
  const cached = cache.get(zodSchema);
  if (cached) return cached;
  const raw = z.toJSONSchema(zodSchema, {
    target: 'draft-2020-12',
    io: 'input',
    unrepresentable: 'any',
    cycles: 'ref',
    reused: 'inline',
    override: (ctx) => {
      const type = (ctx.zodSchema as { _zod?: { def?: { type?: string } } })._zod?.def?.type;
      if (type !== undefined && UNREPRESENTABLE.has(type)) (ctx.jsonSchema as Record<string, unknown>)['x-zod-type'] = type;
    },
  });
  const schema = normalizeJsonSchema(raw);
  const result = Object.freeze({ schema, fingerprint: fingerprintOf(schema) });
  cache.set(zodSchema, result);
  return result;
}
