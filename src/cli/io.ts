/**
 * Where a CLI command reads its environment and writes its output. The real process by
 * default; tests run commands in-process with their own environment and buffers.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import type { Environment } from '../config/index.js';
import { GatewayError } from '../errors/index.js';

export interface CliIo {
  env: Environment;
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  /** Where secrets are read from (`keys add`, `keys rotate`); process.stdin when absent. */
  stdin?: NodeJS.ReadableStream & { isTTY?: boolean };
}

const storage = new AsyncLocalStorage<CliIo>();

const processIo: CliIo = {
  get env() {
    return process.env;
  },
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
  stdin: process.stdin,
};

export function cliIo(): CliIo {
  return storage.getStore() ?? processIo;
}

export function withCliIo<T>(io: CliIo, fn: () => Promise<T>): Promise<T> {
  return storage.run(io, fn);
}

/**
 * The first line of the CLI's standard input (without its line ending), at most `maxBytes`.
 * Used for secrets, which must never come from argv (visible in `ps` and shell history).
 */
export async function readFirstLine(maxBytes = 8192): Promise<string> {
  const io = cliIo();
  const stdin = io.stdin ?? process.stdin;
  if (stdin.isTTY) io.stderr('paste the API key and press Enter (input is echoed; prefer a pipe or --from-env): ');
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of stdin) {
    const buf = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk;
    const newline = buf.indexOf(10);
    chunks.push(newline === -1 ? buf : buf.subarray(0, newline));
    size += buf.length;
    if (newline !== -1) break;
    if (size > maxBytes) break;
  }
  const line = Buffer.concat(chunks);
  for (const c of chunks) c.fill(0);
  try {
    if (line.length > maxBytes) throw new GatewayError('invalid_request', `standard input: the first line is longer than ${maxBytes} bytes`);
    return line.toString('utf8').replace(/\r$/, '');
  } finally {
    line.fill(0);
  }
}
