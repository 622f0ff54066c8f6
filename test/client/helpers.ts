/**
 * A gateway on 127.0.0.1:0 talking to a real simulator with a real key, users with access
 * tokens, and the client built with `ws`.
 */
import { WebSocket } from 'ws';
import type { FastifyInstance } from 'fastify';
import { buildSimulator } from '../../src/simulator/index.js';
import type { Simulator } from '../../src/simulator/index.js';
import { PortcullisClient } from '../../src/client/index.js';
import type { ClientOptions, WebSocketConstructor } from '../../src/client/index.js';
import { accessToken, makeUser, startApp } from '../realtime/helpers.js';
import type { WsTestApp } from '../realtime/helpers.js';

export const SIM_KEY = 'sk-ant-client-test';

export interface Gateway extends WsTestApp {
  simulator: Simulator;
}

export async function startGateway(env: Record<string, string> = {}): Promise<Gateway> {
  const simulator = await buildSimulator({ keys: [SIM_KEY] });
  const base = await simulator.listen({ port: 0, host: '127.0.0.1' });
  const app = await startApp({ ANTHROPIC_BASE_URL: base, DEMO_MODE: 'off', ANTHROPIC_API_KEY: SIM_KEY, UPSTREAM_MAX_RETRIES: '0', ...env });
  return {
    ...app,
    simulator,
    async close() {
      await app.close();
      await simulator.close();
    },
  };
}

/** A client for a fresh user (roles given), with `ws` and short backoff. */
export async function clientFor(
  app: FastifyInstance,
  url: string,
  options: Partial<ClientOptions> & { roles?: string[] } = {},
): Promise<{ client: PortcullisClient; userId: string; token: string; refreshToken: string }> {
  const { roles, ...rest } = options;
  const user = await makeUser(app, roles ?? ['member']);
  const issued = await app.services.sessions.start(user.id, { ip: '127.0.0.1', userAgent: 'test', issuer: 'https://idp.test' });
  const client = new PortcullisClient({
    url,
    token: issued.accessToken,
    WebSocket: WebSocket as unknown as WebSocketConstructor,
    backoff: { initialMs: 20, maxMs: 200 },
    connectivity: null,
    ...rest,
  });
  return { client, userId: user.id, token: issued.accessToken, refreshToken: issued.refreshToken };
}

export { accessToken, makeUser };

/** A Messages request whose echo reply arrives in `deltas` text deltas, `delayMs` apart. */
export function slowRequest(text: string, deltas: number, delayMs: number): Record<string, unknown> {
  const words = Array.from({ length: deltas * 2 }, (_, i) => `w${i}`).join(' ');
  return {
    model: 'claude-sonnet-4-5',
    max_tokens: 4096,
    messages: [{ role: 'user', content: `${text} ${words} <<sim:{"deltas":${deltas},"deltaDelayMs":${delayMs}}>>` }],
  };
}

/** The simulator's reply to slowRequest: `Echo: ` and the prompt without its directive. */
export function expectedEcho(request: Record<string, unknown>): string {
  const content = (request.messages as Array<{ content: string }>)[0]!.content;
  return `Echo: ${content.replace(/<<sim:\{.*?\}>>/s, '').trim()}`;
}

/** Resolves when `predicate` holds, polling every 10 ms; fails after `timeoutMs`. */
export async function until(predicate: () => boolean | Promise<boolean>, timeoutMs = 5_000, what = 'condition'): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
