import { fork } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { Worker } from './harness.js';
import { HistoryWriter } from './history.js';

describe('Worker.stop', () => {
  it('regression: a worker whose IPC channel closed before its exit is stopped without an unhandled error (it crashed the harness)', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'chaos-worker-'));
    const history = new HistoryWriter(path.join(dir, 'history.jsonl'));
    const uncaught: unknown[] = [];
    const onUncaught = (error: unknown) => uncaught.push(error);
    process.on('uncaughtException', onUncaught);
    // A child that drops its IPC channel and lives on a moment: the state a SIGKILLed worker is in
    // between its channel closing and its 'exit' arriving.
    const child = fork('-e', [], { execArgv: ['-e', 'process.disconnect(); setTimeout(() => {}, 500)'] });
    const worker = new Worker('w-1', child, history, () => {});
    try {
      await new Promise<void>((resolve) => child.once('disconnect', () => resolve()));
      await worker.stop(5_000);
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(worker.exited).toBe(true);
      expect(uncaught).toEqual([]);
    } finally {
      process.off('uncaughtException', onUncaught);
      child.kill('SIGKILL');
      history.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
