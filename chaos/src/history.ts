/**
 * The history of a chaos run: one JSON line per operation, written by every process to its own
 * file with a synchronous write (so a line written before a `kill -9` survives it), merged by the
 * harness after the scenario. The checker reads nothing else: what a process did is what it wrote
 * here, and what the log holds at the end is written here too (`log`, `effect`), by the harness.
 */
import { closeSync, openSync, readFileSync, readdirSync, writeSync } from 'node:fs';
import path from 'node:path';

/** How a send ended, as the client reported it. `aborted`: the application rolled it back on purpose. */
export type AckOutcome = 'ok' | 'failed' | 'unknown' | 'aborted';

export type HistoryEvent =
  /** A record about to be sent (values are unique within a run). `txn` groups records of one transaction. */
  | { e: 'send'; t: number; proc: string; topic: string; v: string; k?: string; txn?: string; poison?: boolean; hostile?: boolean }
  /** The client's answer to a send: `code` is the error's code when it failed. */
  | { e: 'ack'; t: number; proc: string; topic: string; v: string; outcome: AckOutcome; code?: string; p?: number; o?: number }
  /** A handler was called with a record. */
  | { e: 'deliver'; t: number; proc: string; g: string; m: string; topic: string; p: number; o: number; v: string; k?: string }
  /** A handler threw (the record will be retried or routed). */
  | { e: 'handler-error'; t: number; proc: string; g: string; m: string; topic: string; p: number; o: number; v: string }
  /** The consumer committed offsets (the next offset to read). */
  | { e: 'commit'; t: number; proc: string; g: string; m: string; topic: string; p: number; o: number }
  /** Group membership changes seen by a member: join, rebalance, crash (lost its session), stop. */
  | { e: 'rebalance' | 'join' | 'crash' | 'stop'; t: number; proc: string; g: string; m: string; detail?: string }
  /** A record routed to the dead-letter topic. */
  | { e: 'dlq'; t: number; proc: string; g: string; m: string; topic: string; p: number; o: number }
  /** A fault the harness injected. `targets`: the processes it hit (none: all of them). */
  | { e: 'fault'; t: number; kind: string; targets?: string[]; affects: 'producers' | 'consumers' | 'all'; until?: number; detail?: string }
  /** A sample of partition ownership: advisory-lock holders (pg_locks) and the group's owner row. */
  | { e: 'owners'; t: number; g: string; topic: string; p: number; holders: number[]; owner: string | null; ownerPid: number | null }
  /** The end state of the log, read by the harness after the scenario. */
  | { e: 'log'; topic: string; p: number; o: number; v: string; k?: string }
  /** How many times an exactly-once handler's effect was applied for a value (read from its table). */
  | { e: 'effect'; g: string; v: string; n: number }
  /** A worker process ended. `expected`: the harness stopped or killed it. */
  | { e: 'exit'; t: number; proc: string; code: number | null; signal: string | null; expected: boolean }
  /** The harness gave up waiting for progress (a group did not drain, a worker did not finish). */
  | { e: 'stall'; t: number; detail: string }
  /** Free-form note (not checked). */
  | { e: 'note'; t: number; proc: string; detail: string };

/** Appends history lines to a file, synchronously. */
export class HistoryWriter {
  readonly #fd: number;
  readonly file: string;

  constructor(file: string) {
    this.file = file;
    this.#fd = openSync(file, 'a');
  }

  write(event: HistoryEvent): void {
    writeSync(this.#fd, JSON.stringify(event) + '\n');
  }

  close(): void {
    try {
      closeSync(this.#fd);
    } catch {
      /* already closed */
    }
  }
}

/** Reads every `*.jsonl` file of a folder; a torn last line (a process killed mid-write) is skipped. */
export function readHistory(dir: string): HistoryEvent[] {
  const events: HistoryEvent[] = [];
  for (const name of readdirSync(dir).sort()) {
    if (!name.endsWith('.jsonl')) continue;
    for (const line of readFileSync(path.join(dir, name), 'utf8').split('\n')) {
      if (line.length === 0) continue;
      try {
        events.push(JSON.parse(line) as HistoryEvent);
      } catch {
        /* torn line */
      }
    }
  }
  return events;
}

/** A stored value as history text: UTF-8 when it is, else `hex:` and its bytes. */
export function valueText(bytes: Uint8Array | null | undefined): string {
  if (bytes === null || bytes === undefined) return 'null';
  const buffer = Buffer.from(bytes);
  const text = buffer.toString('utf8');
  return Buffer.from(text, 'utf8').equals(buffer) && !text.includes('\ufffd') ? text : `hex:${buffer.toString('hex')}`;
}
