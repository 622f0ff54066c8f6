/**
 * The default log destination (`logDestination` in src/app.ts): pino's asynchronous
 * sonic-boom in Buffer mode. Every line arrives whole and in order, bursts included, and the
 * lines still queued when the process exits are written before it ends.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { logDestination } from '../../src/app.js';

const dir = mkdtempSync(join(tmpdir(), 'portcullis-log-destination-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const linesOf = (path: string) =>
  readFileSync(path, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as { n: number; user: string });

describe('logDestination', () => {
  it('writes every line whole and in order, bursts written while a write is in flight included', async () => {
    const path = join(dir, 'burst.log');
    const destination = logDestination(path);
    const log = pino({ base: null }, destination);
    for (let turn = 0; turn < 20; turn++) {
      for (let i = 0; i < 50; i++) log.info({ n: turn * 50 + i, user: 'ünïcødé.crypto ✓' }, 'chat request settled');
      await new Promise((resolve) => setImmediate(resolve));
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
    destination.flushSync();
    const lines = linesOf(path);
    expect(lines.map((l) => l.n)).toEqual(Array.from({ length: 1000 }, (_, i) => i));
    expect(new Set(lines.map((l) => l.user))).toEqual(new Set(['ünïcødé.crypto ✓']));
  });

  it('writes the lines still queued when the process exits', async () => {
    const path = join(dir, 'exit.log');
    const script = `
      import { openSync } from 'node:fs';
      import pino from 'pino';
      import { logDestination } from './src/app.ts';
      // A file descriptor, as standard output is (a path would be opened asynchronously).
      const log = pino({ base: null }, logDestination(openSync(${JSON.stringify(path)}, 'w')));
      for (let n = 0; n < 2000; n++) log.info({ n, user: 'exit.crypto' }, 'queued');
      process.exit(0);
    `;
    const code = await new Promise<number | null>((resolve, reject) => {
      const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { stdio: ['ignore', 'ignore', 'inherit'] });
      child.once('error', reject);
      child.once('exit', resolve);
    });
    expect(code).toBe(0);
    expect(linesOf(path).map((l) => l.n)).toEqual(Array.from({ length: 2000 }, (_, i) => i));
  });
});
