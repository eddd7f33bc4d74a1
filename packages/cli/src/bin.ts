#!/usr/bin/env node
/** The `annals` executable. */
import { ExitCode } from './exit-codes.js';
import { main } from './program.js';

const controller = new AbortController();
let graceful = false;
let interrupts = 0;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    // A command that stops cleanly (consume, rebuild) gets the first signal; otherwise, or on a
    // second signal, the process ends now.
    if (!graceful || ++interrupts > 1) process.exit(ExitCode.INTERRUPTED);
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
  handlesInterrupt: () => {
    graceful = true;
  },
  interactive: process.stderr.isTTY === true,
});
