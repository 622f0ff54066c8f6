/**
 * The gateway under test for bench/ws/run.ts and bench/ws/chats.ts, in its own process so
 * that its memory and CPU are measured alone. Extra settings come as JSON in
 * BENCH_GATEWAY_ENV (e.g. the simulator as upstream). IPC: ready `{url, tokens}`;
 * `{cmd:'memory'}` → process.memoryUsage() after a GC; `{cmd:'usage'}` → the usage_records
 * rows counted by outcome; `{cmd:'stop'}` closes gracefully and exits.
 */
import { answerParent } from '../commands.js';
import { startBenchGateway } from '../gateway.js';

const { app, url, close } = await startBenchGateway('ws', {
  RATE_LIMIT_IP_UPGRADE_PER_MIN: '0',
  RATE_LIMIT_AUTH_FAILURES_PER_MIN: '0',
  WS_MAX_CONNECTIONS_PER_USER: '100000',
  ...(JSON.parse(process.env.BENCH_GATEWAY_ENV ?? '{}') as Record<string, string>),
});
const engine = app.services.engine;
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

async function usage(): Promise<Record<string, number>> {
  const rows = await engine.database.db
    .selectFrom('usage_records')
    .select(['outcome', (eb) => eb.fn.countAll<number>().as('n')])
    .groupBy('outcome')
    .execute();
  return Object.fromEntries(rows.map((r) => [r.outcome, Number(r.n)]));
}

answerParent(close, {
  memory: () => ({ memory: memory(), connections: app.realtime.localCount() }),
  usage: async () => ({ byOutcome: await usage() }),
});
process.send!({ url: `${url.replace('http', 'ws')}/v1/ws`, tokens });
