/**
 * Rate limits at the HTTP door, end to end: the official SDK, token reservations and their
 * reconciliation, per-IP sign-in and failed-authentication limits, the concurrent-stream
 * cap and per-user overrides. The limiter's clock is driven by the test (see helpers.ts).
 */
import { randomBytes } from 'node:crypto';
import Anthropic, { RateLimitError } from '@anthropic-ai/sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { MEDIA_BLOCK_TOKENS, estimateInputTokens } from '../../src/chat/request.js';
import { buildSimulator } from '../../src/simulator/index.js';
import type { Simulator } from '../../src/simulator/index.js';
import { MODEL, SIM_KEY, messagesBody, postMessages, startGateway, userWithToken } from './helpers.js';
import type { TestGateway } from './helpers.js';

let sim: Simulator;
let simUrl: string;
const gateways: TestGateway[] = [];

beforeAll(async () => {
  sim = await buildSimulator({ keys: [SIM_KEY] });
  simUrl = await sim.listen();
});
afterAll(async () => {
  await Promise.all(gateways.map((g) => g.close()));
  await sim.close();
});

async function gateway(env: Record<string, string>): Promise<TestGateway> {
  const g = await startGateway({ simulatorUrl: simUrl, env });
  gateways.push(g);
  return g;
}

/** The HTTP status a WebSocket upgrade is refused with (101 when accepted). */
function upgradeStatus(httpUrl: string, token: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${httpUrl.replace('http', 'ws')}/v1/ws`, ['portcullis.v1'], { headers: { authorization: `Bearer ${token}` } });
    ws.on('unexpected-response', (_req, res) => {
      resolve(res.statusCode ?? 0);
      res.resume();
      ws.terminate();
    });
    ws.on('open', () => {
      resolve(101);
      ws.close();
    });
    ws.on('error', reject);
  });
}

const ask = (client: Anthropic) => client.messages.create({ model: MODEL, max_tokens: 20, messages: [{ role: 'user', content: 'hi' }] });

describe('rate limits over HTTP', () => {
  it('the official SDK gets a RateLimitError with retry-after, and after waiting that long it is admitted', async () => {
    const g = await gateway({ RATE_LIMIT_RPM: '2', RATE_LIMIT_TPM: '0' });
    const { token } = await userWithToken(g.app);
    const client = new Anthropic({ apiKey: token, baseURL: g.url, maxRetries: 0 });
    const t0 = g.clock.now;
    const first = await ask(client).withResponse();
    expect(first.response.headers.get('anthropic-ratelimit-requests-limit')).toBe('2');
    expect(first.response.headers.get('anthropic-ratelimit-requests-remaining')).toBe('1');
    g.clock.now = t0 + 10_000;
    await ask(client);
    g.clock.now = t0 + 20_000;

    const refused = await ask(client).catch((err: unknown) => err);
    expect(refused).toBeInstanceOf(RateLimitError);
    const err = refused as RateLimitError;
    expect(err.status).toBe(429);
    expect(err.error).toMatchObject({ type: 'error', error: { type: 'rate_limit_error', code: 'requests_per_minute' } });
    // The oldest request (t0) leaves the 60 s window at t0 + 60 s: 40 s from now.
    const retryAfter = Number(err.headers.get('retry-after'));
    expect(retryAfter).toBe(40);
    expect(err.headers.get('anthropic-ratelimit-requests-remaining')).toBe('0');
    expect(err.headers.get('anthropic-ratelimit-requests-reset')).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);

    g.clock.now += (retryAfter - 1) * 1000;
    await expect(ask(client)).rejects.toBeInstanceOf(RateLimitError);
    g.clock.now += 1000;
    const admitted = await ask(client).withResponse();
    expect(admitted.data.type).toBe('message');
    expect(admitted.response.headers.get('anthropic-ratelimit-requests-remaining')).toBe('0');
  });

  it('tokens per minute: reservations from max_tokens, unused tokens returned on settle, refused until the window slides', async () => {
    const g = await gateway({ RATE_LIMIT_RPM: '0', RATE_LIMIT_TPM: '1000' });
    const { token } = await userWithToken(g.app);
    const t0 = g.clock.now;

    const big = messagesBody(900);
    const r1 = await postMessages(g.url, token, big);
    expect(r1.status).toBe(200);
    const reserved1 = estimateInputTokens(Buffer.from(big)) + 900;
    expect(Number(r1.headers.get('anthropic-ratelimit-tokens-remaining'))).toBe(1000 - reserved1);
    const usage1 = ((await r1.json()) as { usage: { input_tokens: number; output_tokens: number } }).usage;
    const used1 = usage1.input_tokens + usage1.output_tokens;
    expect(used1).toBeLessThan(50);

    // Without reconciliation only 1000 - reserved1 (< 100) would be left and this would be refused.
    g.clock.now = t0 + 1_000;
    const mid = messagesBody(500);
    const r2 = await postMessages(g.url, token, mid);
    expect(r2.status).toBe(200);
    const reserved2 = estimateInputTokens(Buffer.from(mid)) + 500;
    expect(Number(r2.headers.get('anthropic-ratelimit-tokens-remaining'))).toBe(1000 - used1 - reserved2);
    const usage2 = ((await r2.json()) as { usage: { input_tokens: number; output_tokens: number } }).usage;
    const used2 = usage2.input_tokens + usage2.output_tokens;

    // Over the limit: this one needs all but one token of what r2 leaves, so it fits only
    // once r1 (used1 >= 2 tokens) has left the window.
    const fitting = (m: number) => messagesBody(m);
    const max3 = 1000 - used2 - 1 - estimateInputTokens(Buffer.from(fitting(900)));
    expect(estimateInputTokens(Buffer.from(fitting(max3))) + max3).toBe(1000 - used2 - 1);
    g.clock.now = t0 + 2_000;
    const r3 = await postMessages(g.url, token, fitting(max3));
    expect(r3.status).toBe(429);
    const body3 = (await r3.json()) as { error: { type: string; code: string; message: string } };
    expect(body3.error).toMatchObject({ type: 'rate_limit_error', code: 'tokens_per_minute' });
    expect(body3.error.message).toContain('1000 tokens per minute');
    expect(Number(r3.headers.get('anthropic-ratelimit-tokens-remaining'))).toBe(1000 - used1 - used2);
    // r1's expiry (t0 + 60 s) frees enough: 58 s from now.
    expect(r3.headers.get('retry-after')).toBe('58');
    g.clock.now = t0 + 59_999;
    expect((await postMessages(g.url, token, fitting(max3))).status).toBe(429);
    g.clock.now = t0 + 60_000;
    const r4 = await postMessages(g.url, token, fitting(max3));
    expect(r4.status).toBe(200);
  });

  it('counts a base64 image for admission as MEDIA_BLOCK_TOKENS, not by its bytes (which alone exceed the limit)', async () => {
    const g = await gateway({ RATE_LIMIT_RPM: '0', RATE_LIMIT_TPM: '10000' });
    const { token } = await userWithToken(g.app);
    const data = randomBytes(75_000).toString('base64'); // 100,000 characters: 25,000 tokens by bytes
    const image = { type: 'image', source: { type: 'base64', media_type: 'image/png', data } };
    const body = messagesBody(100, { messages: [{ role: 'user', content: [image, { type: 'text', text: 'what is this?' }] }] });
    const res = await postMessages(g.url, token, body);
    expect(res.status).toBe(200);
    const estimate = Math.ceil((Buffer.byteLength(body) - data.length) / 4) + MEDIA_BLOCK_TOKENS;
    expect(estimate).toBeLessThan(2_000);
    expect(Number(res.headers.get('anthropic-ratelimit-tokens-remaining'))).toBe(10_000 - estimate - 100);
    // A document (a PDF: 1,500 to 3,000 tokens a page) still counts by its bytes, in a tool result or not.
    const pdf = { type: 'document', source: { type: 'base64', media_type: 'application/pdf', data } };
    const withPdf = messagesBody(100, { messages: [{ role: 'user', content: [{ type: 'tool_result', tool_use_id: 't1', content: [pdf, image] }] }] });
    const parsed = JSON.parse(withPdf) as Parameters<typeof estimateInputTokens>[1];
    expect(estimateInputTokens(Buffer.from(withPdf), parsed)).toBe(Math.ceil((Buffer.byteLength(withPdf) - data.length) / 4) + MEDIA_BLOCK_TOKENS);
  });

  it('limits sign-in requests per IP: the 4th /auth/login in a minute gets a 429 in Anthropic shape', async () => {
    const g = await gateway({ RATE_LIMIT_IP_AUTH_PER_MIN: '3' });
    for (let i = 0; i < 3; i++) expect((await g.app.inject({ method: 'GET', url: '/auth/login' })).statusCode).not.toBe(429);
    const refused = await g.app.inject({ method: 'GET', url: '/auth/login' });
    expect(refused.statusCode).toBe(429);
    expect(refused.headers['retry-after']).toBe('60');
    expect(refused.json()).toMatchObject({ type: 'error', error: { type: 'rate_limit_error', code: 'ip_auth' } });
    g.clock.now += 60_000;
    expect((await g.app.inject({ method: 'GET', url: '/auth/login' })).statusCode).not.toBe(429);
  });

  it('failed authentications lock an IP out, even with a correct token, until they age out', async () => {
    const g = await gateway({ RATE_LIMIT_AUTH_FAILURES_PER_MIN: '3' });
    const { token } = await userWithToken(g.app);
    const body = messagesBody(10);
    // No credential at all is not a guess: it does not count.
    for (let i = 0; i < 5; i++) {
      const res = await fetch(`${g.url}/v1/messages`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
      expect(res.status).toBe(401);
    }
    for (let i = 0; i < 3; i++) expect((await postMessages(g.url, `pcl_pat_wrong${i}`, body)).status).toBe(401);
    const locked = await postMessages(g.url, token, body);
    expect(locked.status).toBe(429);
    expect(((await locked.json()) as { error: { code: string } }).error.code).toBe('ip_auth_failures');
    expect((await g.app.inject({ method: 'GET', url: '/auth/me', headers: { authorization: `Bearer ${token}` } })).statusCode).toBe(429);
    // The WebSocket upgrade counts and checks the same failures (one shared function).
    expect(await upgradeStatus(g.url, token)).toBe(429);
    g.clock.now += 60_000;
    expect((await postMessages(g.url, token, body)).status).toBe(200);
  });

  it('lets a locked-out IP keep using a token this instance verified within the last second, but no other', async () => {
    const g = await gateway({ RATE_LIMIT_AUTH_FAILURES_PER_MIN: '3' });
    const { token } = await userWithToken(g.app);
    const { token: other } = await userWithToken(g.app);
    const body = messagesBody(10);
    expect((await postMessages(g.url, token, body)).status).toBe(200);
    for (let i = 0; i < 3; i++) expect((await postMessages(g.url, `pcl_pat_wrong${i}`, body)).status).toBe(401);
    // The token in use is no guess: its requests skip the lockout check…
    expect((await postMessages(g.url, token, body)).status).toBe(200);
    // …a correct token not verified moments ago is refused, and so is everything once the second has passed.
    expect((await postMessages(g.url, other, body)).status).toBe(429);
    await new Promise((resolve) => setTimeout(resolve, 1_100)); // the token cache runs on real time
    expect((await postMessages(g.url, token, body)).status).toBe(429);
  });

  it('caps concurrent streams per user and frees the slot when a stream ends', async () => {
    const g = await gateway({ RATE_LIMIT_CONCURRENT: '1' });
    const { token } = await userWithToken(g.app);
    sim.setKeyFaults(SIM_KEY, { deltaDelayMs: 150, deltas: 3 });
    try {
      const stream = messagesBody(50, { stream: true });
      const open = await postMessages(g.url, token, stream);
      expect(open.status).toBe(200);
      const second = await postMessages(g.url, token, stream);
      expect(second.status).toBe(429);
      expect(((await second.json()) as { error: { code: string } }).error.code).toBe('concurrent_streams');
      expect(second.headers.get('retry-after')).toBe('1');
      // A non-streaming request takes no stream slot.
      expect((await postMessages(g.url, token, messagesBody(10))).status).toBe(200);
      expect(await open.text()).toContain('event: message_stop');
      const third = await postMessages(g.url, token, stream);
      expect(third.status).toBe(200);
      await third.text();
    } finally {
      sim.setKeyFaults(SIM_KEY, undefined);
    }
  });

  it('renews the stream slot while a long stream runs, so a second stream stays refused past the lease TTL', async () => {
    const g = await gateway({ RATE_LIMIT_CONCURRENT: '1', RATE_LIMIT_LEASE_TTL: '1s' });
    const { token } = await userWithToken(g.app);
    sim.setKeyFaults(SIM_KEY, { deltaDelayMs: 300, deltas: 4 });
    try {
      const stream = messagesBody(50, { stream: true });
      const open = await postMessages(g.url, token, stream);
      expect(open.status).toBe(200);
      g.clock.now += 900;
      await new Promise((r) => setTimeout(r, 500)); // a renewal (every TTL/3) runs at the new time
      g.clock.now += 900; // past the first TTL: only a renewed lease still holds the slot
      const second = await postMessages(g.url, token, stream);
      expect(second.status).toBe(429);
      await second.text();
      expect(await open.text()).toContain('event: message_stop');
    } finally {
      sim.setKeyFaults(SIM_KEY, undefined);
    }
  });

  it('an admin overrides one user\'s limits over the admin API; other users keep the tier', async () => {
    const g = await gateway({ RATE_LIMIT_RPM: '100' });
    const admin = await userWithToken(g.app, ['admin']);
    const alice = await userWithToken(g.app);
    const bob = await userWithToken(g.app);
    const patch = await g.app.inject({
      method: 'PATCH',
      url: `/admin/users/${alice.id}/rate-limits`,
      headers: { authorization: `Bearer ${admin.token}` },
      payload: { rpm: 1, tpm: 0 },
    });
    expect(patch.statusCode).toBe(200);
    expect(patch.json()).toMatchObject({ user_id: alice.id, rate_tier: 'default', overrides: { rpm: 1, tpm: 0 }, effective: { rpm: 1, tpm: 0 } });
    const forbidden = await g.app.inject({ method: 'PATCH', url: `/admin/users/${bob.id}/rate-limits`, headers: { authorization: `Bearer ${alice.token}` }, payload: { rpm: 1000 } });
    expect(forbidden.statusCode).toBe(403);
    expect((await g.app.inject({ method: 'PATCH', url: `/admin/users/${bob.id}/rate-limits`, headers: { authorization: `Bearer ${admin.token}` }, payload: { rpm: -1 } })).statusCode).toBe(400);

    const body = messagesBody(10);
    const first = await postMessages(g.url, alice.token, body);
    expect(first.headers.get('anthropic-ratelimit-requests-limit')).toBe('1');
    expect((await postMessages(g.url, alice.token, body)).status).toBe(429);
    const other = await postMessages(g.url, bob.token, body);
    expect(other.status).toBe(200);
    expect(other.headers.get('anthropic-ratelimit-requests-limit')).toBe('100');

    const cleared = await g.app.inject({ method: 'PATCH', url: `/admin/users/${alice.id}/rate-limits`, headers: { authorization: `Bearer ${admin.token}` }, payload: { rpm: null } });
    expect(cleared.json()).toMatchObject({ overrides: { tpm: 0 }, effective: { rpm: 100 } });
    const shown = await g.app.inject({ method: 'GET', url: `/admin/users/${alice.id}/rate-limits`, headers: { authorization: `Bearer ${admin.token}` } });
    expect(shown.json().overrides).toEqual({ tpm: 0 });
  });
});
