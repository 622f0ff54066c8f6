/**
 * The gateway under test for bench/ws/run.ts, in its own process so its memory is measured
 * alone. Started with fork(); answers `{cmd:'memory'}` with process.memoryUsage() after a GC.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildApp } from '../../src/app.js';
import { loadConfig } from '../../src/config/index.js';
import { createEngine } from '../../src/engine/index.js';

const dir = mkdtempSync(join(tmpdir(), 'portcullis-bench-ws-'));
const config = loadConfig({
  PORT: '0',
  HOST: '127.0.0.1',
  LOG_LEVEL: 'silent',
  NODE_ENV: 'test',
  DATA_DIR: dir,
  DATABASE_URL: `sqlite:${join(dir, 'bench.db')}`,
  RATE_LIMIT_IP_UPGRADE_PER_MIN: '0',
  RATE_LIMIT_AUTH_FAILURES_PER_MIN: '0',
  WS_MAX_CONNECTIONS_PER_USER: '100000',
});
const engine = await createEngine(config);
const app = await buildApp(config, engine);
await app.listen({ port: 0, host: '127.0.0.1' });
const address = app.server.address();
if (!address || typeof address === 'string') throw new Error('no address');
const user = await app.services.users.create({ issuer: 'https://idp.bench', subject: 'bench.crypto', roles: ['member'] });
const tokens: string[] = [];
for (let i = 0; i < 20; i++) {
  tokens.push((await app.services.sessions.start(user.id, { ip: '127.0.0.1', userAgent: 'bench', issuer: 'https://idp.bench' })).accessToken);
}

function memory() {
  (globalThis as { gc?: () => void }).gc?.();
  (globalThis as { gc?: () => void }).gc?.();
  return process.memoryUsage();
}

process.on('message', (message: { cmd: string }) => {
  if (message.cmd === 'memory') process.send!({ memory: memory(), connections: app.realtime.localCount() });
  if (message.cmd === 'stop') {
    void app.close().then(() => engine.close()).then(() => {
      rmSync(dir, { recursive: true, force: true });
      process.exit(0);
    });
  }
});
process.send!({ url: `ws://127.0.0.1:${address.port}/v1/ws`, tokens });
