/**
 * The gateway under test for bench/ratelimit/gateway.ts, in its own process. Settings come
 * from the environment the parent forks it with (ANTHROPIC_BASE_URL, RATE_LIMIT_*,
 * REDIS_URL…); it creates BENCH_USERS users with a personal token each, then sends
 * `{ url, tokens }`, answers `{ cmd: 'cpu' }` with its CPU time so far (µs, every thread) and
 * stops on `{ cmd: 'stop' }`.
 */
import { answerParent } from '../commands.js';
import { startBenchGateway } from '../gateway.js';

const env = Object.fromEntries(Object.entries(process.env).filter((e): e is [string, string] => e[1] !== undefined));
const { app, url, close } = await startBenchGateway('rl', { ...env, LOG_LEVEL: 'silent', NODE_ENV: 'test', PORT: '0', DEMO_MODE: 'off' });
const tokens: string[] = [];
for (let i = 0; i < Number(process.env.BENCH_USERS ?? 50); i++) {
  const user = await app.services.users.create({ issuer: 'https://idp.bench', subject: `bench${i}.crypto` });
  tokens.push((await app.services.personalTokens.create(user.id, { name: 'bench' })).token);
}

answerParent(close);
process.send!({ url, tokens });
