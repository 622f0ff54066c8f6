import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';

/**
 * The IPC side of a benchmark child process: answers its parent's `{ cmd }` messages.
 * `cpu` → `{ cpuMicros }` (this process's CPU time so far, µs, every thread); `stop` runs
 * `stop` and exits; any command in `extra` sends back what its function returns (awaited).
 * A parent that goes away without a `stop` (it crashed) counts as one: nothing is left running.
 */
export function answerParent(stop: () => Promise<unknown>, extra: Record<string, () => unknown> = {}): void {
  let stopping: Promise<unknown> | undefined;
  const stopOnce = () => void (stopping ??= stop().finally(() => process.exit(0)));
  process.once('disconnect', stopOnce);
  process.on('message', (message: { cmd: string }) => {
    if (message.cmd === 'cpu') {
      const u = process.cpuUsage();
      process.send!({ cpuMicros: u.user + u.system });
    } else if (message.cmd === 'stop') {
      stopOnce();
    } else if (Object.hasOwn(extra, message.cmd)) {
      void Promise.resolve(extra[message.cmd]!()).then((answer) => process.send!(answer));
    }
  });
}

/** Sends `{ cmd }` to a child answering with `answerParent`; resolves with its answer. */
export function ask<T>(child: ChildProcess, cmd: string): Promise<T> {
  return new Promise((resolve) => {
    child.once('message', (m: T) => resolve(m));
    child.send({ cmd });
  });
}

/** The parent's side of `cpu`: the child's CPU time so far (µs, every thread). */
export async function cpuOf(child: ChildProcess): Promise<number> {
  return (await ask<{ cpuMicros: number }>(child, 'cpu')).cpuMicros;
}

/** CPU time of a process's main thread so far (µs), from /proc (Linux); undefined elsewhere. */
export function mainThreadCpuOf(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/task/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // utime and stime, in clock ticks (100 per second on Linux).
    return (Number(fields[11]) + Number(fields[12])) * 10_000;
  } catch {
    return undefined;
  }
}
