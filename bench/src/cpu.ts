/**
 * CPU accounting for the benchmark's details table: this Node process (process.cpuUsage) and every
 * local `postgres` process (utime + stime, plus the CPU of exited backends the postmaster reaped,
 * from /proc; Linux only, NaN elsewhere). Taken outside the
 * timed sections.
 */
import { readdirSync, readFileSync } from 'node:fs';

const TICKS_PER_SECOND = 100; // USER_HZ on Linux

export interface CpuSnapshot {
  readonly nodeMs: number;
  readonly pgMs: number;
}

function postgresCpuMs(): number {
  try {
    let ticks = 0;
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      let stat: string;
      try {
        stat = readFileSync(`/proc/${entry}/stat`, 'latin1');
      } catch {
        continue; // the process ended meanwhile
      }
      const open = stat.indexOf('(');
      const close = stat.lastIndexOf(')');
      if (stat.slice(open + 1, close) !== 'postgres') continue;
      const fields = stat.slice(close + 2).split(' ');
      // Fields after the command: state is [0], utime [11], stime [12], cutime [13], cstime [14].
      // cutime/cstime of the postmaster keep the CPU of backends that have exited meanwhile.
      ticks += Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14]);
    }
    return (ticks * 1000) / TICKS_PER_SECOND;
  } catch {
    return Number.NaN;
  }
}

export function cpuSnapshot(): CpuSnapshot {
  const u = process.cpuUsage();
  return { nodeMs: (u.user + u.system) / 1000, pgMs: postgresCpuMs() };
}

export function cpuSince(before: CpuSnapshot): CpuSnapshot {
  const after = cpuSnapshot();
  return { nodeMs: after.nodeMs - before.nodeMs, pgMs: after.pgMs - before.pgMs };
}
