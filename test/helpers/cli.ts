/** Runs the real `portcullis` CLI (through tsx) in a child process. */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import net from 'node:net';
import { Readable } from 'node:stream';
import type { Environment } from '../../src/config/index.js';

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

const ENTRY = ['--import', 'tsx', 'src/main.ts'];

function childEnv(env: Environment): NodeJS.ProcessEnv {
  const base: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: process.env.HOME };
  return { ...base, ...env };
}

export function runCli(args: string[], env: Environment, timeoutMs = 20_000): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...ENTRY, ...args], { env: childEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`portcullis ${args.join(' ')} timed out`));
    }, timeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

export function spawnCli(args: string[], env: Environment): ChildProcess {
  return spawn(process.execPath, [...ENTRY, ...args], { env: childEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
}

export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise((r) => server.close(r));
  return port;
}

/** Polls `url` until it answers `status`, for at most `timeoutMs`. */
export async function waitForStatus(url: string, status: number, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = 'no answer';
  while (Date.now() < deadline) {
    try {
      const res = await fetch(url);
      if (res.status === status) return;
      last = String(res.status);
    } catch (err) {
      last = (err as Error).message;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${url} did not answer ${status} within ${timeoutMs} ms (last: ${last})`);
}

/** Runs a CLI command in this process (fast); `serve` and signal handling need spawnCli. `stdin` is its standard input (empty by default). */
export async function cli(args: string[], env: Environment, options: { stdin?: string } = {}): Promise<CliResult> {
  const { runCli: run } = await import('../../src/cli/run.js');
  let stdout = '';
  let stderr = '';
  const stdin = Readable.from(options.stdin === undefined ? [] : [Buffer.from(options.stdin, 'utf8')]);
  const code = await run(args, { env, stdout: (t) => (stdout += t), stderr: (t) => (stderr += t), stdin });
  return { code, stdout, stderr };
}
