/**
 * The compatibility modes against a table of changes: each row is a change between version 1
 * and version 2 of one event, with the verdict the gate must give under each mode.
 */
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { defineEvent, type EventContract } from '../contracts/event.js';
import type { CompatibilityMode } from '../contracts/compatibility-mode.js';
import { checkContracts } from './contracts-gate.js';
import { readerIncompatibilities } from './compatibility.js';
import { versionSchemaOf } from './json-schema.js';

type Verdict = '✓' | '✗';
interface Row {
  readonly change: string;
  readonly v1: z.ZodType;
  readonly v2: z.ZodType;
  /** backward, forward, full, none */
  readonly verdicts: readonly [Verdict, Verdict, Verdict, Verdict];
  /** A path the breaking report must name. */
  readonly names?: string;
}

const table: readonly Row[] = [
  { change: 'add optional field', v1: z.object({ a: z.string() }), v2: z.object({ a: z.string(), b: z.number().optional() }), verdicts: ['✓', '✓', '✓', '✓'] },
  { change: 'add field with a default', v1: z.object({ a: z.string() }), v2: z.object({ a: z.string(), b: z.number().default(0) }), verdicts: ['✓', '✓', '✓', '✓'] },
  { change: 'add required field', v1: z.object({ a: z.string() }), v2: z.object({ a: z.string(), b: z.number() }), verdicts: ['✗', '✓', '✗', '✓'], names: 'b' },
  { change: 'remove required field', v1: z.object({ a: z.string(), b: z.number() }), v2: z.object({ a: z.string() }), verdicts: ['✓', '✗', '✗', '✓'], names: 'b' },
  { change: 'remove optional field', v1: z.object({ a: z.string(), b: z.number().optional() }), v2: z.object({ a: z.string() }), verdicts: ['✓', '✓', '✓', '✓'] },
  { change: 'change a type (string → number)', v1: z.object({ a: z.string() }), v2: z.object({ a: z.number() }), verdicts: ['✗', '✗', '✗', '✓'], names: 'a' },
  { change: 'widen a type (integer → number)', v1: z.object({ a: z.number().int() }), v2: z.object({ a: z.number() }), verdicts: ['✓', '✗', '✗', '✓'], names: 'a' },
  { change: 'rename a required field', v1: z.object({ name: z.string() }), v2: z.object({ fullName: z.string() }), verdicts: ['✗', '✗', '✗', '✓'], names: 'name' },
  { change: 'rename an optional field', v1: z.object({ name: z.string().optional() }), v2: z.object({ fullName: z.string().optional() }), verdicts: ['✓', '✓', '✓', '✓'] },
  { change: 'enum widened', v1: z.object({ s: z.enum(['new', 'paid']) }), v2: z.object({ s: z.enum(['new', 'paid', 'shipped']) }), verdicts: ['✓', '✗', '✗', '✓'], names: 'shipped' },
  { change: 'enum narrowed', v1: z.object({ s: z.enum(['new', 'paid', 'shipped']) }), v2: z.object({ s: z.enum(['new', 'paid']) }), verdicts: ['✗', '✓', '✗', '✓'], names: 'shipped' },
  { change: 'optional → required', v1: z.object({ a: z.string().optional() }), v2: z.object({ a: z.string() }), verdicts: ['✗', '✓', '✗', '✓'], names: 'a' },
  { change: 'add optional field to a strict object', v1: z.strictObject({ a: z.string() }), v2: z.strictObject({ a: z.string(), b: z.number().optional() }), verdicts: ['✓', '✗', '✗', '✓'], names: 'b' },
  { change: 'tighten a string (max 5)', v1: z.object({ a: z.string() }), v2: z.object({ a: z.string().max(5) }), verdicts: ['✗', '✓', '✗', '✓'], names: 'maxLength' },
  { change: 'nullable added', v1: z.object({ a: z.string() }), v2: z.object({ a: z.string().nullable() }), verdicts: ['✓', '✗', '✗', '✓'], names: 'a' },
  { change: 'date → bigint (unrepresentable types kept apart)', v1: z.object({ at: z.date() }), v2: z.object({ at: z.bigint() }), verdicts: ['✗', '✗', '✗', '✓'], names: 'at' },
  {
    change: 'nested: required field added inside an object',
    v1: z.object({ customer: z.object({ id: z.string() }) }),
    v2: z.object({ customer: z.object({ id: z.string(), tier: z.string() }) }),
    verdicts: ['✗', '✓', '✗', '✓'],
    names: 'customer.tier',
  },
  {
    change: 'array items retyped',
    v1: z.object({ tags: z.array(z.string()) }),
    v2: z.object({ tags: z.array(z.number()) }),
    verdicts: ['✗', '✗', '✗', '✓'],
    names: 'tags[]',
  },
  {
    change: 'union member added (writer may write the new member)',
    v1: z.object({ p: z.discriminatedUnion('kind', [z.object({ kind: z.literal('card'), last4: z.string() })]) }),
    v2: z.object({ p: z.discriminatedUnion('kind', [z.object({ kind: z.literal('card'), last4: z.string() }), z.object({ kind: z.literal('iban'), iban: z.string() })]) }),
    verdicts: ['✓', '✗', '✗', '✓'],
    names: 'p',
  },
];

const MODES: readonly CompatibilityMode[] = ['backward', 'forward', 'full', 'none'];

function contract(row: Row, mode: CompatibilityMode): EventContract {
  return defineEvent({ type: 'table.event', versions: { 1: row.v1, 2: row.v2 }, upcast: { 1: (v: any) => v }, compatibility: mode } as never);
}

describe('compatibility modes against a table of changes', () => {
  for (const row of table) {
    MODES.forEach((mode, i) => {
      const expected = row.verdicts[i]!;
      it(`${row.change}: ${mode} ${expected}`, () => {
        const result = checkContracts({ contracts: [contract(row, mode)] });
        const incompatible = result.breaking.filter((c) => c.kind === 'incompatible');
        expect(incompatible.length === 0 ? '✓' : '✗', result.report).toBe(expected);
        if (expected === '✗' && row.names) expect(result.report.toLowerCase()).toContain(row.names.toLowerCase());
      });
    });
  }

  it('reports each direction the mode requires, with the versions and the path', () => {
    const row = table.find((r) => r.change === 'change a type (string → number)')!;
    const { report, ok } = checkContracts({ contracts: [contract(row, 'full')] });
    expect(ok).toBe(false);
    expect(report).toContain('"table.event" v2 is not full-compatible with v1');
    expect(report).toMatch(/backward \(v2 reading v1 records\): a: type changed — the writer writes string, the reader needs number/);
    expect(report).toMatch(/forward \(v1 reading v2 records\): a: type changed — the writer writes number, the reader needs string/);
  });

  it('checks every consecutive pair, not only the last one', () => {
    const e = defineEvent({
      type: 'three',
      versions: { 1: z.object({ a: z.string() }), 2: z.object({ a: z.number() }), 3: z.object({ a: z.number(), b: z.string().optional() }) },
      upcast: { 1: (v) => ({ a: Number(v.a) }), 2: (v) => v },
    });
    const { breaking } = checkContracts({ contracts: [e] });
    expect(breaking.map((c) => [c.kind, c.version])).toEqual([['incompatible', 2]]);
  });

  it('resolves $ref and recursive schemas without looping', () => {
    type Node = { name: string; children: Node[] };
    const NodeV1: z.ZodType<Node> = z.lazy(() => z.object({ name: z.string(), children: z.array(NodeV1) }));
    type Node2 = { name: string; children: Node2[]; size?: number };
    const NodeV2: z.ZodType<Node2> = z.lazy(() => z.object({ name: z.string(), children: z.array(NodeV2), size: z.number().optional() }));
    const v1 = versionSchemaOf(z.object({ root: NodeV1 })).schema;
    const v2 = versionSchemaOf(z.object({ root: NodeV2 })).schema;
    expect(readerIncompatibilities(v2, v1)).toEqual([]);
    const v3 = versionSchemaOf(z.object({ root: z.object({ name: z.number() }) })).schema;
    expect(readerIncompatibilities(v3, v1).map((i) => i.path)).toEqual(['root.name']);
  });
});
