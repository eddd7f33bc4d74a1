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

function ticksOf(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14]);
  } catch {
    return 0;
  }
}

/** Busy CPU of the whole machine and of the processes this benchmark runs or talks to. */
export interface MachineSnapshot {
  readonly at: number;
  /** Busy CPU of all cores (ms), from /proc/stat. */
  readonly busyMs: number;
  /** This process, the given child processes, and every postgres process (ms). */
  readonly oursMs: number;
}

export function machineSnapshot(childPids: readonly number[]): MachineSnapshot {
  let busyMs = Number.NaN;
  try {
    const cpu = readFileSync('/proc/stat', 'latin1').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
    const [user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] = cpu;
    void idle;
    void iowait;
    busyMs = ((user + nice + system + irq + softirq + steal) * 1000) / TICKS_PER_SECOND;
  } catch {
    // not Linux
  }
  const own = cpuSnapshot();
  const children = (childPids.reduce((n, pid) => n + ticksOf(pid), 0) * 1000) / TICKS_PER_SECOND;
  return { at: Date.now(), busyMs, oursMs: own.nodeMs + own.pgMs + children };
}

/** Cores kept busy by other processes (other test runs, builds) between two snapshots. */
export function foreignCores(before: MachineSnapshot, after: MachineSnapshot): number {
  const wall = after.at - before.at;
  if (wall <= 0) return Number.NaN;
  return Math.max(0, after.busyMs - before.busyMs - (after.oursMs - before.oursMs)) / wall;
}
