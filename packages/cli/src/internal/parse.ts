/** Parsers of command-line values. Each throws a {@link CliUsageError} naming the option and the problem. */
import type { ConfigEntry } from '@annals/core';
import { CliUsageError } from '../exit-codes.js';

/** Commander's collector for repeatable options: `-H a=1 -H b=2`. */
export function collect(value: string, previous: readonly string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

/** A non-negative (or positive) safe integer. */
export function parseInteger(value: string, option: string, min = 0): number {
  if (!/^-?\d+$/.test(value.trim())) throw new CliUsageError(`${option} must be an integer, got ${JSON.stringify(value)}.`);
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < min) throw new CliUsageError(`${option} must be an integer ≥ ${min}, got ${value}.`);
  return n;
}

/** An offset (any integer, possibly negative for shifts) as a bigint. */
export function parseOffset(value: string, option: string): bigint {
  if (!/^[+-]?\d+$/.test(value.trim())) throw new CliUsageError(`${option} must be an integer offset, got ${JSON.stringify(value)}.`);
  return BigInt(value.trim());
}

/**
 * Kafka's config list syntax: `k1=v1,k2=v2`, with `[a,b]` for a value that holds commas.
 * A comma-separated piece without `=` continues the previous value, so
 * `cleanup.policy=compact,delete` reads as one entry.
 */
export function parseConfigAssignments(values: readonly string[], option: string): ConfigEntry[] {
  const entries: Array<{ name: string; value: string }> = [];
  for (const value of values) {
    const pieces: string[] = [];
    let depth = 0;
    let current = '';
    for (const ch of value) {
      if (ch === '[') depth++;
      else if (ch === ']') depth = Math.max(0, depth - 1);
      if (ch === ',' && depth === 0) {
        pieces.push(current);
        current = '';
      } else current += ch;
    }
    pieces.push(current);
    for (const piece of pieces) {
      const eq = piece.indexOf('=');
      if (eq < 0) {
        const last = entries[entries.length - 1];
        if (!last || piece.trim() === '') throw new CliUsageError(`${option} takes key=value pairs, got ${JSON.stringify(value)}.`);
        last.value = `${last.value},${piece.trim()}`;
        continue;
      }
      const name = piece.slice(0, eq).trim();
      let v = piece.slice(eq + 1).trim();
      if (v.startsWith('[') && v.endsWith(']')) v = v.slice(1, -1);
      if (name === '') throw new CliUsageError(`${option} has an empty key in ${JSON.stringify(value)}.`);
      entries.push({ name, value: v });
    }
  }
  return entries;
}

/** Config keys to delete: `k1,k2` or repeated options. */
export function parseConfigNames(values: readonly string[]): string[] {
  return values.flatMap((v) => v.split(',')).map((k) => k.trim()).filter((k) => k !== '');
}

/** `topic` or `topic:p1,p2` (Kafka's `--topic` of `kafka-consumer-groups --reset-offsets`). */
export function parseTopicPartitions(value: string): { topic: string; partitions: number[] | undefined } {
  const colon = value.lastIndexOf(':');
  if (colon < 0) return { topic: value, partitions: undefined };
  const topic = value.slice(0, colon);
  const partitions = value
    .slice(colon + 1)
    .split(',')
    .map((p) => parseInteger(p, `--topic ${value}: partition`));
  if (topic === '' || partitions.length === 0) throw new CliUsageError(`--topic takes topic or topic:partition[,partition], got ${JSON.stringify(value)}.`);
  return { topic, partitions };
}

/**
 * An ISO-8601 duration as `kafka-consumer-groups --by-duration` takes it (`PnDTnHnMnS`,
 * e.g. `PT30M`, `P1DT2H`), in milliseconds.
 */
export function parseDuration(value: string, option: string): number {
  const m = /^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$/i.exec(value.trim());
  if (!m || value.trim().toUpperCase() === 'P' || /T$/i.test(value.trim())) {
    throw new CliUsageError(`${option} takes an ISO-8601 duration such as PT30M or P1DT2H, got ${JSON.stringify(value)}.`);
  }
  const [, d, h, min, s] = m;
  return ((Number(d ?? 0) * 24 + Number(h ?? 0)) * 60 + Number(min ?? 0)) * 60_000 + Math.round(Number(s ?? 0) * 1000);
}

/** A date-time (ISO 8601, e.g. `2026-11-26T10:00:00Z`; without a zone it is local time) or epoch milliseconds. */
export function parseDatetime(value: string, option: string): number {
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed);
  const ms = Date.parse(trimmed);
  if (Number.isNaN(ms)) throw new CliUsageError(`${option} takes an ISO-8601 date-time such as 2026-11-26T10:00:00Z or epoch milliseconds, got ${JSON.stringify(value)}.`);
  return ms;
}

/** `name=value` for a header. */
export function parseHeader(value: string): [string, string] {
  const eq = value.indexOf('=');
  if (eq <= 0) throw new CliUsageError(`-H takes name=value, got ${JSON.stringify(value)}.`);
  return [value.slice(0, eq), value.slice(eq + 1)];
}
