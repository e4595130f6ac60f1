import { readdirSync, readFileSync } from "node:fs";

/**
 * CPU that other processes have used, read from /proc (Linux), so a bench can charge a pairing
 * for the work its servers (nats-server, Postgres) do outside the bench process. Where /proc is
 * missing these read 0, and the figures then cover the bench process only.
 */

const MS_PER_CLOCK_TICK = 10; // Linux reports utime and stime in USER_HZ ticks, 100 per second

/** User plus system CPU of one process so far, in ms; 0 if it cannot be read. */
export function processCpuMs(pid: number): number {
  return readStat(pid)?.cpuMs ?? 0;
}

/** Every live process descended from `ancestor` (not itself). */
export function descendantPids(ancestor = process.pid): number[] {
  const children = new Map<number, number[]>();
  for (const stat of listPids().flatMap((pid) => readStat(pid) ?? [])) children.set(stat.ppid, [...(children.get(stat.ppid) ?? []), stat.pid]);
  const found: number[] = [];
  const queue = [...(children.get(ancestor) ?? [])];
  for (let pid = queue.pop(); pid !== undefined; pid = queue.pop()) {
    found.push(pid);
    queue.push(...(children.get(pid) ?? []));
  }
  return found;
}

/** User plus system CPU so far of every live process descended from `ancestor` (not itself), in ms. */
export function descendantsCpuMs(ancestor = process.pid): number {
  return descendantPids(ancestor).reduce((total, pid) => total + processCpuMs(pid), 0);
}

function listPids(): number[] {
  try {
    return readdirSync("/proc").filter((name) => /^\d+$/.test(name)).map(Number);
  } catch {
    return [];
  }
}

function readStat(pid: number): { pid: number; ppid: number; cpuMs: number } | undefined {
  try {
    // The fields after the parenthesised command name, from the third (state) on: ppid is the 4th, utime and stime the 14th and 15th.
    const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ").at(-1)!.split(" ");
    return { pid, ppid: Number(fields[1]), cpuMs: (Number(fields[11]) + Number(fields[12])) * MS_PER_CLOCK_TICK };
  } catch {
    return undefined;
  }
}
