/** Plain-text tables for people: a header row and left-aligned columns, two spaces apart. */

/** A cell: printed as is; null and undefined print as '-'. */
export type Cell = string | number | bigint | boolean | null | undefined;

const text = (cell: Cell): string => (cell === null || cell === undefined ? '-' : String(cell));

/**
 * Renders rows under headers, each column as wide as its widest cell.
 *
 * @example
 * ```ts
 * renderTable(['TOPIC', 'PARTITIONS'], [['orders', 6]]);
 * // TOPIC   PARTITIONS
 * // orders  6
 * ```
 */
export function renderTable(headers: readonly string[], rows: ReadonlyArray<readonly Cell[]>): string {
  const cells = [headers.map(String), ...rows.map((r) => r.map(text))];
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  return cells.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd()).join('\n') + '\n';
}

/** Renders `key: value` lines with the keys aligned. */
export function renderFields(fields: ReadonlyArray<readonly [string, Cell]>): string {
  const width = Math.max(0, ...fields.map(([k]) => k.length + 1));
  return fields.map(([k, v]) => `${`${k}:`.padEnd(width)} ${text(v)}`).join('\n') + '\n';
}
