/**
 * Where a CLI command reads its environment and writes its output. The real process by
 * default; tests run commands in-process with their own environment and buffers.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import type { Environment } from '../config/index.js';

export interface CliIo {
  env: Environment;
  stdout: (text: string) => void;
  stderr: (text: string) => void;
}

const storage = new AsyncLocalStorage<CliIo>();

const processIo: CliIo = {
  get env() {
    return process.env;
  },
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
};

export function cliIo(): CliIo {
  return storage.getStore() ?? processIo;
}

export function withCliIo<T>(io: CliIo, fn: () => Promise<T>): Promise<T> {
  return storage.run(io, fn);
}
