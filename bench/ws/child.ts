/**
 * A benchmark process started with fork() (tsx, --expose-gc) that talks over IPC: its first
 * message is its ready report; each `ask(cmd)` gets the next reply; `stop()` waits for exit.
 */
import { fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { buildShipped } from '../shipped.js';

export interface BenchChild<Ready> {
  process: ChildProcess;
  ready: Ready;
  ask<T = unknown>(cmd: string, extra?: Record<string, unknown>): Promise<T>;
  /** Sends `{cmd:'stop'}` and resolves when the process has exited. */
  stop(): Promise<void>;
}

/** Forks `file` (relative to bench/ws) with extra environment variables. */
export async function startChild<Ready>(file: string, env: Record<string, string> = {}): Promise<BenchChild<Ready>> {
  buildShipped(); // the gateway child loads the compiled build (see shipped.ts)
  const child = fork(fileURLToPath(new URL(file, import.meta.url)), [], {
    execArgv: ['--import', 'tsx', '--expose-gc'],
    stdio: 'inherit',
    env: { ...process.env, ...env },
  });
  const replies: Array<(message: unknown) => void> = [];
  child.on('message', (m) => replies.shift()?.(m));
  const next = () => new Promise<unknown>((resolve) => replies.push(resolve));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const ready = (await Promise.race([next(), exited.then(() => Promise.reject(new Error(`${file} exited before it was ready`)))])) as Ready;
  return {
    process: child,
    ready,
    async ask<T>(cmd: string, extra: Record<string, unknown> = {}) {
      const reply = next();
      child.send({ cmd, ...extra });
      return (await reply) as T;
    },
    async stop() {
      child.send({ cmd: 'stop' });
      await exited;
    },
  };
}
