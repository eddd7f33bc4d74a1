/** A readable line diff between two JSON Schemas, for the gate's report and conflict errors. */
import { canonicalJson, type JsonSchema } from './json-schema.js';

const MAX_LINES = 40;

/**
 * Lines describing how `after` differs from `before`: `~ path: old → new`, `+ path: value`,
 * `- path: value`. Paths are JSON-Schema paths (`properties.total.type`). Empty when equal.
 *
 * @example
 * ```ts
 * diffJsonSchemas({ type: 'number' }, { type: 'string' }); // ['~ type: "number" → "string"']
 * ```
 */
export function diffJsonSchemas(before: JsonSchema, after: JsonSchema): string[] {
  const lines: string[] = [];
  walk(before, after, '', lines);
  if (lines.length > MAX_LINES) return [...lines.slice(0, MAX_LINES), `… ${lines.length - MAX_LINES} more difference(s)`];
  return lines;
}

const isPlainObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

function walk(a: unknown, b: unknown, path: string, lines: string[]): void {
  if (canonicalJson(a) === canonicalJson(b)) return;
  const here = path === '' ? '(root)' : path;
  if (isPlainObject(a) && isPlainObject(b)) {
    const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort();
    for (const k of keys) {
      const p = path === '' ? k : `${path}.${k}`;
      if (!(k in b)) lines.push(`- ${p}: ${canonicalJson(a[k])}`);
      else if (!(k in a)) lines.push(`+ ${p}: ${canonicalJson(b[k])}`);
      else walk(a[k], b[k], p, lines);
    }
    return;
  }
  lines.push(`~ ${here}: ${canonicalJson(a)} → ${canonicalJson(b)}`);
}
