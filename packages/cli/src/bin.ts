#!/usr/bin/env node
/** The `annals` executable. */
import { ExitCode } from './exit-codes.js';
import { main } from './program.js';

const controller = new AbortController();
let interrupts = 0;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    // First signal: stop cleanly (consume exits, rebuild stops after its batch). Second: now.
    if (++interrupts > 1) process.exit(ExitCode.INTERRUPTED);
    controller.abort(new Error(`received ${signal}`));
  });
}
// `annals consume … | head` closes stdout early: that is a normal end, not a crash.
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code === 'EPIPE') process.exit(ExitCode.OK);
  throw error;
});

process.exitCode = await main(process.argv.slice(2), {
  stdout: process.stdout,
  stderr: process.stderr,
  stdin: process.stdin,
  env: process.env,
  cwd: process.cwd(),
  signal: controller.signal,
  interactive: process.stderr.isTTY === true,
});
