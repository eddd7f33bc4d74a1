/**
 * The docs are executable: every code block in `docs/*.md` whose info string is exactly
 * `ts run` runs here as its own test, so a page that drifts from the code fails the build.
 *
 * How a snippet runs:
 * - it is written to `.generated/<page>-L<line>.ts` (gitignored) and imported, so vitest
 *   transpiles it and resolves `@annals/*` to the workspace sources (the `@annals/source`
 *   condition of vitest.config.ts), exactly as a spec file's imports are;
 * - it gets a database of its own on the run's server (`createTestDatabase`), named in
 *   `process.env.DATABASE_URL` while it runs: a snippet connects the way an application does,
 *   `postgres({ connectionString: process.env.DATABASE_URL! })`, in the default `annals` schema,
 *   and may create tables of its own without meeting another snippet's;
 * - it asserts what the page claims (`node:assert/strict`) and disconnects what it connected;
 * - a snippet that fails keeps its database, and the test prints how to connect to it.
 *
 * Two more checks keep generated reference tables honest: the topic config table of
 * events-and-topics.md must equal `describeTopicConfigKeys()`, and errors.md must list every
 * error class of `@annals/core` with its code and retriable flag. And every runnable snippet must
 * type-check against the workspace sources.
 *
 * A snippet that starves the event loop (a busy loop in the code it calls) would hang the run
 * for good: vitest's timeout is a timer too. A watchdog thread therefore kills this test process
 * when the event loop has not turned for a minute, after printing which snippet was running.
 *
 * Run only some snippets with `DOCS_SNIPPETS=<substring of "page-Lline">`, e.g.
 * `DOCS_SNIPPETS=consuming npx vitest run examples/docs-snippets`.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { Worker } from 'node:worker_threads';
import * as core from '@annals/core';
import { describeTopicConfigKeys } from '@annals/core';
import { createTestDatabase, redactConnectionString } from '@annals/testing';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../..');
const docsDir = path.join(root, 'docs');
const generatedDir = path.join(here, '.generated');
const SNIPPET_TIMEOUT_MS = 90_000;
const STALL_LIMIT_MS = Number(process.env['DOCS_SNIPPETS_STALL_MS'] ?? 60_000);

interface Snippet {
  readonly page: string;
  /** 1-based line of the opening fence. */
  readonly line: number;
  readonly code: string;
  /** `<page>-L<line>`: the test name and the generated file's name. */
  readonly id: string;
}

/** The `ts run` blocks of a Markdown page (CommonMark fences: ``` or ~~~, three or more). */
function runnableSnippets(page: string, markdown: string): Snippet[] {
  const lines = markdown.split(/\r?\n/);
  const snippets: Snippet[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^ {0,3}(`{3,}|~{3,})(.*)$/.exec(lines[i]!);
    if (!open) continue;
    const fence = open[1]!;
    const info = open[2]!.trim();
    const body: string[] = [];
    let j = i + 1;
    const closes = new RegExp(`^ {0,3}${fence[0] === '`' ? '`' : '~'}{${fence.length},}\\s*$`);
    while (j < lines.length && !closes.test(lines[j]!)) body.push(lines[j++]!);
    if (info === 'ts run') {
      const name = page.replace(/\.md$/, '');
      snippets.push({ page, line: i + 1, code: body.join('\n') + '\n', id: `${name}-L${i + 1}` });
    }
    i = j;
  }
  return snippets;
}

const pages = readdirSync(docsDir)
  .filter((f) => f.endsWith('.md'))
  .sort();
const filter = process.env['DOCS_SNIPPETS'];
const snippets = pages
  .flatMap((page) => runnableSnippets(page, readFileSync(path.join(docsDir, page), 'utf8')))
  .filter((s) => !filter || s.id.includes(filter));

function generatedFile(snippet: Snippet): string {
  return path.join(generatedDir, `${snippet.id}.ts`);
}

/**
 * The watchdog: the main thread stamps `beat[0]` (seconds since `base`) twice a second and names
 * the running snippet in `label`; the watchdog thread kills the process if the stamp goes stale.
 */
const watchdog = (() => {
  const beat = new Int32Array(new SharedArrayBuffer(8));
  const label = new Uint8Array(new SharedArrayBuffer(512));
  const base = Date.now();
  const stamp = () => Atomics.store(beat, 0, Math.floor((Date.now() - base) / 1000));
  stamp();
  const timer = setInterval(stamp, 500);
  timer.unref();
  const worker = new Worker(
    `const { workerData: { beat, label, base, limitMs } } = require('node:worker_threads');
     const { writeSync } = require('node:fs');
     for (;;) {
       Atomics.wait(beat, 1, 0, 1000);
       const stalledMs = Date.now() - base - Atomics.load(beat, 0) * 1000;
       if (stalledMs > limitMs) {
         const name = Buffer.from(label).toString('utf8').split(String.fromCharCode(0))[0];
         const nl = String.fromCharCode(10);
         writeSync(2, nl + '[docs-snippets] the event loop has not turned for ' + Math.round(stalledMs / 1000) + ' s while running ' + (name || '(no snippet)') + ': killing this test process.' + nl);
         process.kill(process.pid, 'SIGKILL');
       }
     }`,
    { eval: true, workerData: { beat, label, base, limitMs: STALL_LIMIT_MS } },
  );
  worker.unref();
  return {
    running(name: string): void {
      label.fill(0);
      label.set(new TextEncoder().encode(name).subarray(0, label.length - 1));
    },
    async stop(): Promise<void> {
      clearInterval(timer);
      await worker.terminate();
    },
  };
})();
afterAll(() => watchdog.stop());

beforeAll(() => {
  rmSync(generatedDir, { recursive: true, force: true });
  mkdirSync(generatedDir, { recursive: true });
  for (const s of snippets) {
    writeFileSync(generatedFile(s), `// Generated from docs/${s.page}:${s.line} by docs-snippets.int.spec.ts. Do not edit.\n${s.code}`);
  }
  // For the type-check test: the snippets as a project of their own, on the workspace sources.
  writeFileSync(
    path.join(generatedDir, 'tsconfig.json'),
    JSON.stringify(
      {
        extends: '../../../tsconfig.base.json',
        compilerOptions: {
          composite: false,
          incremental: false,
          declaration: false,
          declarationMap: false,
          sourceMap: false,
          noEmit: true,
          customConditions: ['@annals/source'],
        },
        include: ['*.ts'],
      },
      null,
      2,
    ),
  );
});

describe('docs snippets', () => {
  it('finds runnable snippets in docs/*.md', () => {
    expect(pages.length).toBeGreaterThan(0);
    if (!filter) expect(snippets.length).toBeGreaterThan(0);
  });

  for (const snippet of snippets) {
    it(
      `${snippet.id} runs`,
      async () => {
        const database = await createTestDatabase(inject('annalsAdminUrl'), `docs_${snippet.id}`);
        const previous = process.env['DATABASE_URL'];
        process.env['DATABASE_URL'] = database.connectionString;
        let passed = false;
        watchdog.running(`docs/${snippet.page}:${snippet.line}`);
        try {
          await import(pathToFileURL(generatedFile(snippet)).href);
          passed = true;
        } finally {
          watchdog.running('');
          if (previous === undefined) delete process.env['DATABASE_URL'];
          else process.env['DATABASE_URL'] = previous;
          if (passed) await database.drop();
          else {
            console.log(
              `docs/${snippet.page}:${snippet.line} failed; kept database ${database.name} for inspection: ` +
                redactConnectionString(database.connectionString),
            );
          }
        }
      },
      SNIPPET_TIMEOUT_MS,
    );
  }

  it.skipIf(snippets.length === 0)(
    'every runnable snippet type-checks',
    async () => {
      const tsc = path.join(root, 'node_modules', 'typescript', 'bin', 'tsc');
      const result = await promisify(execFile)(process.execPath, [tsc, '-p', path.join(generatedDir, 'tsconfig.json'), '--pretty', 'false'], {
        cwd: root,
        maxBuffer: 16 * 1024 * 1024,
      }).then(
        ({ stdout }) => stdout,
        (error: { stdout?: string; message: string }) => error.stdout ?? error.message,
      );
      // Errors inside the workspace packages are theirs to report; only the snippets' count here.
      const ours = result
        .split('\n')
        .filter((line) => line.includes('.generated'))
        .map((line) => line.replace(/^.*\.generated[\\/]/, ''));
      expect(ours, 'type errors in docs snippets (file names are <page>-L<line of the fence>)').toEqual([]);
    },
    120_000,
  );
});

describe('reference tables', () => {
  it('the topic config table of events-and-topics.md is describeTopicConfigKeys()', () => {
    const markdown = readFileSync(path.join(docsDir, 'events-and-topics.md'), 'utf8');
    const block = /<!-- topic-config-keys:start -->([\s\S]*?)<!-- topic-config-keys:end -->/.exec(markdown);
    expect(block, 'the table between <!-- topic-config-keys:start --> and <!-- topic-config-keys:end -->').not.toBeNull();
    const rows = block![1]!
      .split('\n')
      .filter((l) => l.startsWith('| `'))
      .map((l) => {
        const cells = l.split(' | ').map((c) => c.replace(/^\|?\s*|\s*\|?$/g, ''));
        return { name: cells[0]!.replaceAll('`', ''), default: cells[1]!.replaceAll('`', ''), doc: cells[2]! };
      });
    expect(rows).toEqual(describeTopicConfigKeys().map((k) => ({ name: k.name, default: k.default, doc: k.doc })));
  });

  it('errors.md lists every error class of @annals/core with its code and retriable flag', () => {
    const markdown = readFileSync(path.join(docsDir, 'errors.md'), 'utf8');
    const classes = Object.entries(core).filter(
      ([name, value]) => typeof value === 'function' && value.prototype instanceof core.AnnalsError && name !== 'AnnalsError',
    ) as Array<[string, new (...args: unknown[]) => core.AnnalsError]>;
    expect(classes.length).toBeGreaterThan(20);
    const missing: string[] = [];
    for (const [name, Class] of classes) {
      // Constructor arguments that suit every subclass: (message, issues | size | sqlState, limit | retriable).
      const error = new Class('m', [], false);
      const row = new RegExp(`^\\| \`${name}\` \\| \`${error.code}\` \\| ${error.retriable ? 'yes' : 'no'}\\b`, 'm');
      if (!row.test(markdown)) missing.push(`| \`${name}\` | \`${error.code}\` | ${error.retriable ? 'yes' : 'no'} |`);
    }
    expect(missing, 'rows errors.md lacks (or has with another code or retriable flag)').toEqual([]);
  });
});
