/**
 * Runs the BUILT `annals` binary (packages/cli/dist/bin.js, made by `tsc -b`, which `npm test`
 * runs first) in a child process, with a time limit, and collects its output and exit code.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Annals } from '@annals/core';
import { postgres } from '@annals/storage-pg';

export const BIN = fileURLToPath(new URL('../dist/bin.js', import.meta.url));

/** What a run of the binary produced. */
export interface CliResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Options of {@link runCli}. */
export interface RunCliInput {
  /** The connection string, passed as DATABASE_URL (not --url, so --url stays testable). */
  readonly url?: string;
  /** Written to stdin, which is then closed. @default '' */
  readonly stdin?: string;
  readonly env?: Readonly<Record<string, string>>;
  readonly cwd?: string;
  /** Kill the process after this many ms. @default 20000 */
  readonly timeoutMs?: number;
}

/**
 * Runs `node dist/bin.js ...args`.
 *
 * @example
 * ```ts
 * const { code, stdout } = await runCli(['topics', 'list', '--json'], { url: db.connectionString });
 * ```
 */
export function runCli(args: readonly string[], input: RunCliInput = {}): Promise<CliResult> {
  if (!existsSync(BIN)) throw new Error(`${BIN} does not exist: build first (npx tsc -b; npm test does it in pretest).`);
  const env: Record<string, string> = { PATH: process.env['PATH'] ?? '', ...(input.url !== undefined && { DATABASE_URL: input.url }), ...input.env };
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd: input.cwd ?? process.cwd(), env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`annals ${args.join(' ')} did not finish in ${input.timeoutMs ?? 20_000} ms.\nstdout: ${stdout}\nstderr: ${stderr}`));
    }, input.timeoutMs ?? 20_000);
    child.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    child.stdin.end(input.stdin ?? '');
  });
}

/**
 * Starts `node dist/bin.js ...args`, waits until its `stream` output matches `ready` (or it exits),
 * sends `signal` and resolves with its exit code. Killed after 60 s whatever happens.
 */
export async function interruptCli(
  args: readonly string[],
  input: { readonly url: string; readonly ready: RegExp; readonly stream: 'stdout' | 'stderr'; readonly signal: NodeJS.Signals },
): Promise<number | null> {
  if (!existsSync(BIN)) throw new Error(`${BIN} does not exist: build first (npx tsc -b; npm test does it in pretest).`);
  const child = spawn(process.execPath, [BIN, ...args], { env: { PATH: process.env['PATH'] ?? '', DATABASE_URL: input.url } });
  let seen = '';
  const ready = new Promise<void>((resolve) =>
    child[input.stream].setEncoding('utf8').on('data', (d: string) => {
      seen += d;
      if (input.ready.test(seen)) resolve();
    }),
  );
  const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  try {
    await Promise.race([ready, exited]);
    child.kill(input.signal);
    return await exited;
  } finally {
    clearTimeout(timer);
    child.kill('SIGKILL');
  }
}

/** Parses stdout as JSON (fails the test with the output when it is not). */
export function json<T = unknown>(result: CliResult): T {
  try {
    return JSON.parse(result.stdout) as T;
  } catch {
    throw new Error(`stdout is not JSON (exit ${result.code}):\n${result.stdout}\nstderr:\n${result.stderr}`);
  }
}

/** A client in the test process (to run a live group member, publish typed events, read projections). */
export function testClient(clientId: string, connectionString: string) {
  return new Annals({ clientId, storage: postgres({ connectionString }), cleaner: false });
}

/** The type of {@link testClient}'s client. */
export type TestClient = ReturnType<typeof testClient>;
