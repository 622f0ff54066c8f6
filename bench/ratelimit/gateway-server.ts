/**
 * The gateway under test for bench/ratelimit/gateway.ts, in its own process. Settings come
 * from the environment the parent forks it with (ANTHROPIC_BASE_URL, RATE_LIMIT_*,
 * REDIS_URL…); it creates BENCH_USERS users with a personal token each, then sends
 * `{ url, tokens }` and stops on `{ cmd: 'stop' }`.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildApp } from '../../src/app.js';
import { loadConfig } from '../../src/config/index.js';
import { createEngine } from '../../src/engine/index.js';

const dir = mkdtempSync(join(tmpdir(), 'portcullis-bench-rl-'));
const env = Object.fromEntries(Object.entries(process.env).filter((e): e is [string, string] => e[1] !== undefined));
const config = loadConfig({
  ...env,
  PORT: '0',
  HOST: '127.0.0.1',
  LOG_LEVEL: 'silent',
  NODE_ENV: 'test',
  DATA_DIR: dir,
  DATABASE_URL: `sqlite:${join(dir, 'bench.db')}`,
  DEMO_MODE: 'off',
});
const engine = await createEngine(config);
const app = await buildApp(config, engine);
await app.listen({ port: 0, host: '127.0.0.1' });
const address = app.server.address();
if (!address || typeof address === 'string') throw new Error('no address');
const tokens: string[] = [];
for (let i = 0; i < Number(process.env.BENCH_USERS ?? 50); i++) {
  const user = await app.services.users.create({ issuer: 'https://idp.bench', subject: `bench${i}.crypto` });
  tokens.push((await app.services.personalTokens.create(user.id, { name: 'bench' })).token);
}

process.on('message', (message: { cmd: string }) => {
  if (message.cmd !== 'stop') return;
  void app
    .close()
    .then(() => engine.close())
    .finally(() => {
      rmSync(dir, { recursive: true, force: true });
      process.exit(0);
    });
});
process.send!({ url: `http://127.0.0.1:${address.port}`, tokens });
