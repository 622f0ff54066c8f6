/**
 * The IPC side of a benchmark child process: answers its parent's `{ cmd }` messages.
 * `cpu` → `{ cpuMicros }` (this process's CPU time so far, µs, every thread); `stop` runs
 * `stop` and exits; any command in `extra` sends back what its function returns (awaited).
 */
export function answerParent(stop: () => Promise<unknown>, extra: Record<string, () => unknown> = {}): void {
  process.on('message', (message: { cmd: string }) => {
    if (message.cmd === 'cpu') {
      const u = process.cpuUsage();
      process.send!({ cpuMicros: u.user + u.system });
    } else if (message.cmd === 'stop') {
      void stop().finally(() => process.exit(0));
    } else if (Object.hasOwn(extra, message.cmd)) {
      void Promise.resolve(extra[message.cmd]!()).then((answer) => process.send!(answer));
    }
  });
}
