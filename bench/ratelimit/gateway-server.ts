/**
 * The gateways under test for bench/ratelimit/gateway.ts, together in one process (so both
 * draw the same ticket in this machine's process lottery, see docs/benchmarks.md). Settings
 * common to both come from the environment the parent forks it with (ANTHROPIC_BASE_URL,
 * REDIS_URL…); BENCH_GATEWAYS is a JSON object naming each gateway with the settings only it
 * has (`{"on": {"RATE_LIMIT_RPM": "…"}, "off": {…}}`), and REDIS_KEY_PREFIX gets the name
 * appended. Each gateway gets BENCH_USERS users with a personal token each; the process then
 * sends `{ name: { url, tokens } }`, answers `{ cmd: 'cpu' }` with its CPU time so far (µs,
 * every thread) and stops on `{ cmd: 'stop' }`.
 */
import { answerParent } from '../commands.js';
import { startBenchGateway } from '../gateway.js';

const env = Object.fromEntries(Object.entries(process.env).filter((e): e is [string, string] => e[1] !== undefined));
const configs = JSON.parse(process.env.BENCH_GATEWAYS ?? '{"gateway": {}}') as Record<string, Record<string, string>>;
const started: Record<string, { url: string; tokens: string[] }> = {};
const closes: Array<() => Promise<void>> = [];
for (const [name, settings] of Object.entries(configs)) {
  const prefix = env.REDIS_KEY_PREFIX ? { REDIS_KEY_PREFIX: `${env.REDIS_KEY_PREFIX}${name}:` } : {};
  const { app, url, close } = await startBenchGateway(`rl-${name}`, { ...env, ...settings, ...prefix, LOG_LEVEL: 'silent', NODE_ENV: 'test', PORT: '0', DEMO_MODE: 'off' });
  closes.push(close);
  const tokens: string[] = [];
  for (let i = 0; i < Number(process.env.BENCH_USERS ?? 50); i++) {
    const user = await app.services.users.create({ issuer: 'https://idp.bench', subject: `bench${i}.crypto` });
    tokens.push((await app.services.personalTokens.create(user.id, { name: 'bench' })).token);
  }
  started[name] = { url, tokens };
}

answerParent(() => Promise.all(closes.map((c) => c())));
process.send!(started);
