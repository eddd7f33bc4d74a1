/**
 * Structural compatibility of two JSON Schemas: can a reader on schema R read every payload a
 * writer on schema W writes?
 *
 * ## Design note
 * Confluent Schema Registry's modes are the reference: `backward` = the new version reads the
 * previous one's data, `forward` = the previous version reads the new one's data, `full` = both.
 * Every rule below follows from that one question, asked against Annals's data model:
 *
 * - a typed writer stores zod's *output*, and `z.object` strips undeclared keys — so a version
 *   writes only the properties it declares (unless it is a `z.looseObject` / `.catchall()`, whose
 *   JSON Schema says `additionalProperties`), and
 * - a `z.object` reader strips keys it does not declare; a `z.strictObject` reader
 *   (`additionalProperties: false`) rejects them.
 *
 * Hence (reader ← writer): a property the writer never writes must be optional for the reader; a
 * property the reader does not declare is fine unless the reader is closed; a type, enum or bound
 * must accept everything the writer's allows (`integer` widens to `number`, an enum may gain
 * values, a `minLength` may drop). Confluent's JSON Schema checker must assume an *open* writer
 * (any extra key with any type), which makes "add an optional property" backward-incompatible
 * there; Annals's writers are closed by construction, so it is compatible here — the one place
 * these rules depart from Confluent's, and why.
 *
 * The check is sound for the keywords zod emits; a keyword it does not understand that differs
 * between the two schemas is reported as a change it cannot prove safe, never passed silently.
 */
import { canonicalJson, type JsonSchema } from './json-schema.js';

/** One reason a reader cannot read a writer's data. */
export interface SchemaIncompatibility {
  /** Where, as a dotted path into the payload (`(root)`, `customer.address.zip`, `items[]`). */
  readonly path: string;
  readonly kind:
    | 'required-field-missing'
    | 'field-rejected'
    | 'type-changed'
    | 'enum-narrowed'
    | 'constraint-tightened'
    | 'unknown-keyword-changed';
  /** A sentence naming the path, what the writer produces and what the reader needs. */
  readonly message: string;
}

type Node = { readonly [k: string]: unknown };

const KNOWN = new Set([
  'type', 'properties', 'required', 'additionalProperties', 'items', 'prefixItems', 'enum', 'const', 'anyOf', 'oneOf', 'allOf',
  'minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum', 'multipleOf', 'minLength', 'maxLength', 'pattern', 'format',
  'minItems', 'maxItems', 'uniqueItems', 'default', 'x-zod-type', '$ref', '$defs', 'definitions', 'minProperties', 'maxProperties',
  'propertyNames', 'contentEncoding', 'contentMediaType',
]);

const show = (v: unknown): string => canonicalJson(v);
const join = (path: string, key: string): string => (path === '(root)' ? key : `${path}.${key}`);

function asNode(schema: JsonSchema | unknown): Node | boolean {
  if (typeof schema === 'boolean') return schema;
  if (schema === null || typeof schema !== 'object') return true;
  return schema as Node;
}

/** The set of JSON types a node allows, or undefined when it does not say (any type). */
function typesOf(node: Node): Set<string> | undefined {
  const t = node['type'];
  if (typeof t === 'string') return new Set([t]);
  if (Array.isArray(t)) return new Set(t as string[]);
  const values = valuesOf(node);
  if (values) return new Set(values.map(jsonTypeOf));
  return undefined;
}

function jsonTypeOf(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'number';
  return typeof v;
}

function valuesOf(node: Node): unknown[] | undefined {
  if (Array.isArray(node['enum'])) return node['enum'] as unknown[];
  if ('const' in node) return [node['const']];
  return undefined;
}

function describeType(node: Node): string {
  if (typeof node['x-zod-type'] === 'string') return `a ${String(node['x-zod-type'])} (zod)`;
  const values = valuesOf(node);
  if (values) return `one of ${values.map(show).join(', ')}`;
  const types = typesOf(node);
  return types ? [...types].join(' | ') : 'any value';
}

class Checker {
  readonly issues: SchemaIncompatibility[] = [];
  readonly #readerRoot: Node | boolean;
  readonly #writerRoot: Node | boolean;
  readonly #seen = new Set<string>();

  constructor(reader: JsonSchema, writer: JsonSchema) {
    this.#readerRoot = asNode(reader);
    this.#writerRoot = asNode(writer);
  }

  #deref(node: Node | boolean, root: Node | boolean): Node | boolean {
    let current = node;
    for (let hops = 0; typeof current === 'object' && typeof current['$ref'] === 'string' && hops < 32; hops++) {
      const ref = current['$ref'] as string;
      const match = /^#\/(\$defs|definitions)\/(.+)$/.exec(ref);
      const defs = typeof root === 'object' && match ? (root[match[1]!] as Record<string, unknown> | undefined) : undefined;
      if (ref === '#') current = root;
      else if (defs && match) current = asNode(defs[decodeURIComponent(match[2]!.replaceAll('~1', '/').replaceAll('~0', '~'))]);
      else return current;
    }
    return current;
  }

  #add(path: string, kind: SchemaIncompatibility['kind'], message: string): void {
    this.issues.push({ path, kind, message });
  }

  /** Issues found reading `writer` with `reader`, without recording them (for union branches). */
  #trial(reader: Node | boolean, writer: Node | boolean, path: string): SchemaIncompatibility[] {
    const before = this.issues.length;
    this.check(reader, writer, path);
    return this.issues.splice(before);
  }

  check(readerIn: Node | boolean, writerIn: Node | boolean, path: string): void {
    const reader = this.#deref(readerIn, this.#readerRoot);
    const writer = this.#deref(writerIn, this.#writerRoot);
    // Recursive schemas: a pair already under check is assumed compatible (checked where it started).
    if (typeof reader === 'object' && typeof reader['$ref'] === 'string') return;
    const key = `${show(reader)}\u0000${show(writer)}`;
    if (this.#seen.has(key)) return;
    this.#seen.add(key);
    try {
      this.#check(reader, writer, path);
    } finally {
      this.#seen.delete(key);
    }
  }

  #check(reader: Node | boolean, writer: Node | boolean, path: string): void {
    if (writer === false || reader === true) return;
    if (reader === false) {
      this.#add(path, 'field-rejected', `${path}: the reader accepts no value here, the writer writes ${writer === true ? 'any value' : describeType(writer)}.`);
      return;
    }
    const w: Node = writer === true ? {} : writer;
    const r: Node = reader;
    if (Object.keys(r).length === 0) return; // the reader accepts anything
    // Writer unions: every branch the writer may produce must be readable.
    for (const u of ['anyOf', 'oneOf'] as const) {
      if (Array.isArray(w[u])) {
        const { [u]: branches, ...rest } = w;
        for (const branch of branches as unknown[]) this.check(r, { ...rest, ...(asNode(branch) as Node) }, path);
        return;
      }
    }
    if (Array.isArray(w['allOf'])) {
      // The writer's data satisfies every member: readable if one member's data is.
      const trials = (w['allOf'] as unknown[]).map((m) => this.#trial(r, asNode(m), path));
      if (!trials.some((t) => t.length === 0)) this.issues.push(...(trials[0] ?? []));
      return;
    }
    // Reader unions: some branch must read all of the writer's data.
    for (const u of ['anyOf', 'oneOf'] as const) {
      if (Array.isArray(r[u])) {
        const { [u]: branches, ...rest } = r;
        const trials = (branches as unknown[]).map((b) => this.#trial({ ...rest, ...(asNode(b) as Node) }, w, path));
        if (trials.some((t) => t.length === 0)) return;
        const best = trials.reduce((a, b) => (b.length < a.length ? b : a));
        if (best.length === 1 && best[0]!.path === path) this.issues.push(best[0]!);
        else this.#add(path, 'type-changed', `${path}: no alternative of the reader (${(branches as unknown[]).map((b) => describeType(asNode(b) as Node)).join(' / ')}) reads the writer's ${describeType(w)}.`);
        return;
      }
    }
    if (Array.isArray(r['allOf'])) {
      for (const m of r['allOf'] as unknown[]) this.check(asNode(m), w, path);
      return;
    }
    // Opaque zod types (dates, bigints, maps, …): equal or incompatible.
    if (r['x-zod-type'] !== undefined || w['x-zod-type'] !== undefined) {
      if (r['x-zod-type'] !== w['x-zod-type']) {
        this.#add(path, 'type-changed', `${path}: the writer writes ${describeType(w)}, the reader needs ${describeType(r)}.`);
      }
      return;
    }
    if (!this.#types(r, w, path)) return;
    this.#values(r, w, path);
    this.#bounds(r, w, path);
    this.#object(r, w, path);
    this.#array(r, w, path);
    this.#unknownKeywords(r, w, path);
  }

  /** False when the types already disagree (no point in comparing further). */
  #types(r: Node, w: Node, path: string): boolean {
    const rt = typesOf(r);
    if (!rt) return true;
    const wt = typesOf(w);
    if (!wt) {
      this.#add(path, 'type-changed', `${path}: the writer may write any value, the reader needs ${describeType(r)}.`);
      return false;
    }
    const unread = [...wt].filter((t) => !rt.has(t) && !(t === 'integer' && rt.has('number')));
    if (unread.length > 0) {
      this.#add(path, 'type-changed', `${path}: type changed — the writer writes ${[...wt].join(' | ')}, the reader needs ${[...rt].join(' | ')}.`);
      return false;
    }
    return true;
  }

  #values(r: Node, w: Node, path: string): void {
    const rv = valuesOf(r);
    if (!rv) return;
    const wv = valuesOf(w);
    if (!wv) {
      this.#add(path, 'enum-narrowed', `${path}: the reader accepts only ${rv.map(show).join(', ')}, the writer may write any ${describeType(w)}.`);
      return;
    }
    const known = new Set(rv.map(show));
    const missing = wv.filter((v) => !known.has(show(v)));
    if (missing.length > 0) {
      this.#add(path, 'enum-narrowed', `${path}: the writer may write ${missing.map(show).join(', ')}, which the reader does not accept (reader: ${rv.map(show).join(', ')}).`);
    }
  }

  #bounds(r: Node, w: Node, path: string): void {
    const tighter = (keyword: string, detail: string) =>
      this.#add(path, 'constraint-tightened', `${path}: ${keyword} tightened — ${detail}.`);
    const num = (n: Node, k: string): number | undefined => (typeof n[k] === 'number' ? (n[k] as number) : undefined);
    // Lower bounds: the reader's must be ≤ the writer's (absent = -∞).
    const lower = (n: Node): { v: number; exclusive: boolean } | undefined => {
      const min = num(n, 'minimum');
      const ex = num(n, 'exclusiveMinimum');
      if (min === undefined && ex === undefined) return undefined;
      if (ex !== undefined && (min === undefined || ex >= min)) return { v: ex, exclusive: true };
      return { v: min!, exclusive: false };
    };
    const upper = (n: Node): { v: number; exclusive: boolean } | undefined => {
      const max = num(n, 'maximum');
      const ex = num(n, 'exclusiveMaximum');
      if (max === undefined && ex === undefined) return undefined;
      if (ex !== undefined && (max === undefined || ex <= max)) return { v: ex, exclusive: true };
      return { v: max!, exclusive: false };
    };
    const rl = lower(r);
    const wl = lower(w);
    if (rl && (!wl || wl.v < rl.v || (wl.v === rl.v && rl.exclusive && !wl.exclusive))) {
      tighter('minimum', `the reader needs ≥${rl.exclusive ? ' (exclusive)' : ''} ${rl.v}, the writer ${wl ? `allows from ${wl.v}` : 'has no lower bound'}`);
    }
    const ru = upper(r);
    const wu = upper(w);
    if (ru && (!wu || wu.v > ru.v || (wu.v === ru.v && ru.exclusive && !wu.exclusive))) {
      tighter('maximum', `the reader needs ≤${ru.exclusive ? ' (exclusive)' : ''} ${ru.v}, the writer ${wu ? `allows up to ${wu.v}` : 'has no upper bound'}`);
    }
    const rm = num(r, 'multipleOf');
    const wm = num(w, 'multipleOf');
    if (rm !== undefined && (wm === undefined || !Number.isInteger(wm / rm))) {
      tighter('multipleOf', `the reader needs multiples of ${rm}, the writer ${wm === undefined ? 'any number' : `multiples of ${wm}`}`);
    }
    for (const [minK, maxK] of [['minLength', 'maxLength'], ['minItems', 'maxItems'], ['minProperties', 'maxProperties']] as const) {
      const rmin = num(r, minK);
      const wmin = num(w, minK) ?? 0;
      if (rmin !== undefined && rmin > wmin) tighter(minK, `the reader needs at least ${rmin}, the writer allows ${wmin}`);
      const rmax = num(r, maxK);
      const wmax = num(w, maxK);
      if (rmax !== undefined && (wmax === undefined || wmax > rmax)) {
        tighter(maxK, `the reader allows at most ${rmax}, the writer ${wmax === undefined ? 'has no limit' : `allows ${wmax}`}`);
      }
    }
    for (const k of ['pattern', 'format', 'contentEncoding', 'contentMediaType'] as const) {
      if (r[k] !== undefined && show(r[k]) !== show(w[k])) {
        tighter(k, `the reader needs ${k} ${show(r[k])}, the writer ${w[k] === undefined ? `has no ${k}` : `has ${show(w[k])}`}`);
      }
    }
    if (r['uniqueItems'] === true && w['uniqueItems'] !== true) tighter('uniqueItems', 'the reader needs unique items, the writer allows repeats');
  }

  #object(r: Node, w: Node, path: string): void {
    const isObject = (n: Node) => n['properties'] !== undefined || n['required'] !== undefined || n['additionalProperties'] !== undefined || typesOf(n)?.has('object');
    if (!isObject(r)) return;
    const rp = (r['properties'] ?? {}) as Record<string, unknown>;
    const wp = (w['properties'] ?? {}) as Record<string, unknown>;
    const rreq = new Set((r['required'] ?? []) as string[]);
    const wreq = new Set((w['required'] ?? []) as string[]);
    // undefined: a z.object — strips unknown keys as a reader, writes only declared keys as a writer.
    const radd = r['additionalProperties'];
    const wadd = w['additionalProperties'];
    const writerOpen = wadd !== undefined && wadd !== false;
    for (const [name, ws] of Object.entries(wp)) {
      const at = join(path, name);
      if (name in rp) {
        this.check(asNode(rp[name]), asNode(ws), at);
        if (rreq.has(name) && !wreq.has(name)) {
          this.#add(at, 'required-field-missing', `${at}: optional for the writer but required by the reader — records without it cannot be read.`);
        }
      } else if (radd === false) {
        this.#add(at, 'field-rejected', `${at}: the writer writes it, the reader is a strict object that rejects undeclared fields.`);
      } else if (radd !== undefined) {
        this.check(asNode(radd), asNode(ws), at);
      }
    }
    for (const [name, rs] of Object.entries(rp)) {
      if (name in wp) continue;
      const at = join(path, name);
      if (rreq.has(name)) {
        this.#add(at, 'required-field-missing', `${at}: required by the reader (${describeType(asNode(rs) as Node)}), but the writer never writes it — add a default or make it optional.`);
      } else if (writerOpen) {
        // A loose writer may pass any key through, this one included.
        this.check(asNode(rs), asNode(wadd), at);
      }
    }
    if (writerOpen) {
      if (radd === false) this.#add(join(path, '*'), 'field-rejected', `${path}: the writer passes undeclared fields through, the reader is a strict object that rejects them.`);
      else if (radd !== undefined) this.check(asNode(radd), asNode(wadd), join(path, '*'));
    }
  }

  #array(r: Node, w: Node, path: string): void {
    const at = `${path}[]`;
    if (r['items'] !== undefined) {
      if (w['items'] === undefined && w['prefixItems'] === undefined && typesOf(w)?.has('array')) {
        this.check(asNode(r['items']), true, at);
      } else if (w['items'] !== undefined) {
        this.check(asNode(r['items']), asNode(w['items']), at);
      }
    }
    const rpre = Array.isArray(r['prefixItems']) ? (r['prefixItems'] as unknown[]) : undefined;
    const wpre = Array.isArray(w['prefixItems']) ? (w['prefixItems'] as unknown[]) : undefined;
    if (rpre || wpre) {
      const n = Math.max(rpre?.length ?? 0, wpre?.length ?? 0);
      for (let i = 0; i < n; i++) {
        const rs = rpre?.[i] ?? r['items'] ?? true;
        const ws = wpre?.[i] ?? w['items'] ?? true;
        this.check(asNode(rs), asNode(ws), `${path}[${i}]`);
      }
    }
  }

  #unknownKeywords(r: Node, w: Node, path: string): void {
    for (const k of Object.keys(r)) {
      if (KNOWN.has(k)) continue;
      if (show(r[k]) !== show(w[k])) {
        this.#add(path, 'unknown-keyword-changed', `${path}: keyword "${k}" differs (${w[k] === undefined ? 'absent' : show(w[k])} → ${show(r[k])}); the gate cannot prove the reader accepts the writer's data.`);
      }
    }
  }
}

/**
 * Why a reader on `reader` cannot read everything a writer on `writer` writes (empty: it can).
 *
 * @example
 * ```ts
 * const v1 = versionSchemaOf(OrderCreated.schema(1)!).schema;
 * const v2 = versionSchemaOf(OrderCreated.schema(2)!).schema;
 * readerIncompatibilities(v2, v1); // backward: can version 2 read version 1's records?
 * ```
 */
export function readerIncompatibilities(reader: JsonSchema, writer: JsonSchema): SchemaIncompatibility[] {
  const checker = new Checker(reader, writer);
  checker.check(asNode(reader), asNode(writer), '(root)');
  // One entry per (path, message): unions may find the same problem twice.
  const seen = new Set<string>();
  return checker.issues.filter((i) => {
    const k = `${i.path}\u0000${i.message}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}
