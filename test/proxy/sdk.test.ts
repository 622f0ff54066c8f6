/**
 * Must show 1: the official @anthropic-ai/sdk, pointed at the gateway with a personal token
 * (as apiKey and as authToken), runs every call, and errors arrive as the SDK's typed errors.
 * Upstream is the simulator with real keys in the vault (not demo mode).
 */
import Anthropic from '@anthropic-ai/sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Gateway } from './helpers.js';
import { startGateway } from './helpers.js';

describe('the official SDK through the gateway', () => {
  let gw: Gateway;
  beforeAll(async () => {
    gw = await startGateway({ env: { RATE_LIMIT_TIERS: '{"tight":{"rpm":1}}', UPSTREAM_MAX_RETRIES: '0' } });
  });
  afterAll(async () => {
    await gw?.close();
  });

  const clients = (): [string, Anthropic][] => [
    ['apiKey', new Anthropic({ apiKey: gw.token, baseURL: gw.url, maxRetries: 0 })],
    ['authToken', new Anthropic({ apiKey: null, authToken: gw.token, baseURL: gw.url, maxRetries: 0 })],
  ];

  it('runs messages.create, both streaming styles, countTokens and models.list with a personal token as apiKey and as authToken', async () => {
    for (const [how, client] of clients()) {
      const before = gw.sim.requests.length;
      const msg = await client.messages.create({ model: 'claude-sonnet-4-6', max_tokens: 100, messages: [{ role: 'user', content: `hello ${how}` }] });
      expect(msg.content).toEqual([{ type: 'text', text: `Echo: hello ${how}`, citations: null }].map(({ type, text }) => expect.objectContaining({ type, text })));
      expect(msg.usage.output_tokens).toBe(3);

      const stream = client.messages.stream({ model: 'claude-sonnet-4-6', max_tokens: 100, messages: [{ role: 'user', content: 'stream me please' }] });
      const texts: string[] = [];
      stream.on('text', (t) => texts.push(t));
      const final = await stream.finalMessage();
      expect(texts.join('')).toBe('Echo: stream me please');
      expect(texts.length).toBeGreaterThan(1);
      expect(final.stop_reason).toBe('end_turn');

      const events: string[] = [];
      const iter = await client.messages.create({ model: 'claude-sonnet-4-6', max_tokens: 100, stream: true, messages: [{ role: 'user', content: 'iterate' }] });
      for await (const ev of iter) events.push(ev.type);
      expect(events[0]).toBe('message_start');
      expect(events.at(-1)).toBe('message_stop');
      expect(events).toContain('content_block_delta');

      const count = await client.messages.countTokens({ model: 'claude-sonnet-4-6', messages: [{ role: 'user', content: 'count these' }] });
      expect(count.input_tokens).toBe(4 + Math.ceil('count these'.length / 4) + 2);

      const models = [];
      for await (const m of client.models.list()) models.push(m.id);
      expect(models).toContain('claude-sonnet-4-5-20250929');
      expect(models.every((m) => m.startsWith('claude-'))).toBe(true);

      // Upstream saw our vault key, never the personal token.
      const seen = gw.sim.requests.slice(before);
      expect(seen).toHaveLength(5);
      for (const r of seen) expect(r.key).toBe(gw.secrets[0]);
    }
  });

  it('gives RateLimitError with retry-after when a user is over their requests per minute', async () => {
    const user = await gw.app.services.users.create({ issuer: 'https://idp.test', subject: `tight-${Date.now()}.crypto` });
    await gw.app.services.users.setLimits(user.id, { rateTier: 'tight' });
    const { token } = await gw.app.services.personalTokens.create(user.id, { name: 'tight' });
    const client = new Anthropic({ apiKey: token, baseURL: gw.url, maxRetries: 0 });
    const body = { model: 'claude-sonnet-4-6', max_tokens: 10, messages: [{ role: 'user' as const, content: 'one' }] };
    await client.messages.create(body);
    const err = await client.messages.create(body).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Anthropic.RateLimitError);
    const rate = err as InstanceType<typeof Anthropic.RateLimitError>;
    expect(rate.status).toBe(429);
    expect(Number(rate.headers?.get('retry-after'))).toBeGreaterThan(0);
    expect(rate.error).toMatchObject({ type: 'error', error: { type: 'rate_limit_error' } });
  });

  it('gives OverloadedError when upstream answers 529 on every key', async () => {
    const client = new Anthropic({ apiKey: gw.token, baseURL: gw.url, maxRetries: 0 });
    gw.sim.setKeyFaults(gw.secrets[0]!, { status: 529, times: 1, id: 'sdk-overloaded' });
    try {
      const err = await client.messages.create({ model: 'claude-sonnet-4-6', max_tokens: 10, messages: [{ role: 'user', content: 'x' }] }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(Anthropic.OverloadedError);
      expect((err as { status: number }).status).toBe(529);
      expect((err as { error: unknown }).error).toMatchObject({ error: { type: 'overloaded_error' } });
      expect(Number((err as { headers: Headers }).headers.get('retry-after'))).toBeGreaterThan(0);
    } finally {
      gw.sim.setKeyFaults(gw.secrets[0]!, undefined);
    }
  });

  it("pages through the model list with the SDK to the end when a page holds none of the caller's models", async () => {
    const { token } = await gw.app.services.personalTokens.create(gw.user.id, { name: 'haiku paging', models: ['claude-haiku-*', 'claude-3-5-haiku-*'] });
    const client = new Anthropic({ apiKey: token, baseURL: gw.url, maxRetries: 0 });
    const listed: string[] = [];
    for await (const m of client.models.list({ limit: 1 })) listed.push(m.id);
    // The first three models of the list are no haiku: without paging on, the SDK stopped at the first (empty) page.
    expect(listed).toEqual(['claude-haiku-4-5-20251001', 'claude-3-5-haiku-20241022']);
  });

  it('words a body it refuses as Anthropic (the simulator) words the same body', async () => {
    const post = (url: string, key: string, body: Record<string, unknown>) =>
      fetch(`${url}/v1/messages`, { method: 'POST', headers: { 'x-api-key': key, 'anthropic-version': '2023-06-01', 'content-type': 'application/json' }, body: JSON.stringify(body) });
    const messages = [{ role: 'user', content: 'x' }];
    const bodies = [
      { model: 'claude-sonnet-4-6', messages },
      { model: 'claude-sonnet-4-6', max_tokens: '5', messages },
      { model: 'claude-sonnet-4-6', max_tokens: 0, messages },
      { model: 'claude-sonnet-4-6', max_tokens: 1.5, messages },
      { model: 'claude-sonnet-4-6', max_tokens: 5, messages: [] },
      { model: 'claude-sonnet-4-6', max_tokens: 5, messages, stream: 'yes' },
    ];
    for (const body of bodies) {
      const mine = await post(gw.url, gw.token, body);
      const theirs = await post(gw.simUrl, gw.secrets[0]!, body);
      expect([mine.status, theirs.status]).toEqual([400, 400]);
      const [a, b] = [(await mine.json()) as { error: { message: string } }, (await theirs.json()) as { error: { message: string } }];
      expect([JSON.stringify(body), a.error.message]).toEqual([JSON.stringify(body), b.error.message]);
    }
  });

  it('gives AuthenticationError for a bad token, BadRequestError with upstream body unchanged, PermissionDeniedError for a model not allowed', async () => {
    const bad = new Anthropic({ apiKey: 'pcl_pat_not-a-real-token', baseURL: gw.url, maxRetries: 0 });
    const auth = await bad.messages.create({ model: 'claude-sonnet-4-6', max_tokens: 10, messages: [{ role: 'user', content: 'x' }] }).catch((e: unknown) => e);
    expect(auth).toBeInstanceOf(Anthropic.AuthenticationError);

    const client = new Anthropic({ apiKey: gw.token, baseURL: gw.url, maxRetries: 0 });
    // The gateway's own check (max_tokens missing) and one only upstream makes (an unknown field under 2026-10-21).
    const mine = await client.messages.create({ model: 'claude-sonnet-4-6', messages: [{ role: 'user', content: 'x' }] } as never).catch((e: unknown) => e);
    expect(mine).toBeInstanceOf(Anthropic.BadRequestError);
    expect((mine as { error: { error: { message: string } } }).error.error.message).toBe('max_tokens: Field required');

    const before = gw.sim.requests.length;
    const res = await fetch(`${gw.url}/v1/messages`, {
      method: 'POST',
      headers: { 'x-api-key': gw.token, 'anthropic-version': '2026-10-21', 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'claude-sonnet-4-6', max_tokens: 10, temperature: 0.5, messages: [{ role: 'user', content: 'x' }] }),
    });
    const upstreamBody = await res.text();
    expect(res.status).toBe(400);
    expect(gw.sim.requests.length).toBe(before + 1);
    // Byte for byte what the simulator answered (its request id included).
    const direct = await fetch(`${simUrlOf(gw)}/v1/messages`, {
      method: 'POST',
      headers: { 'x-api-key': gw.secrets[0]!, 'anthropic-version': '2026-10-21', 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'claude-sonnet-4-6', max_tokens: 10, temperature: 0.5, messages: [{ role: 'user', content: 'x' }] }),
    });
    const directBody = (await direct.json()) as { request_id: string };
    expect(upstreamBody).toBe(JSON.stringify({ ...directBody, request_id: gw.sim.requests[before]!.requestId }));
    expect(JSON.parse(upstreamBody).error.message).toBe('temperature: Extra inputs are not permitted');

    const sdk2026 = new Anthropic({ apiKey: gw.token, baseURL: gw.url, maxRetries: 0, defaultHeaders: { 'anthropic-version': '2026-10-21' } });
    const viaSdk = await sdk2026.messages.create({ model: 'claude-sonnet-4-6', max_tokens: 10, temperature: 0.5, messages: [{ role: 'user', content: 'x' }] } as never).catch((e: unknown) => e);
    expect(viaSdk).toBeInstanceOf(Anthropic.BadRequestError);
    expect((viaSdk as { error: unknown }).error).toMatchObject({ type: 'error', error: { type: 'invalid_request_error', message: 'temperature: Extra inputs are not permitted' } });

    const { token: haikuOnly } = await gw.app.services.personalTokens.create(gw.user.id, { name: 'haiku only', models: ['claude-haiku-*'] });
    const narrow = new Anthropic({ apiKey: haikuOnly, baseURL: gw.url, maxRetries: 0 });
    const denied = await narrow.messages.create({ model: 'claude-opus-4-1', max_tokens: 10, messages: [{ role: 'user', content: 'x' }] }).catch((e: unknown) => e);
    expect(denied).toBeInstanceOf(Anthropic.PermissionDeniedError);
    expect((denied as { error: unknown }).error).toMatchObject({ error: { type: 'permission_error' } });
    // The gateway's own error carries its id where the SDK reads an answer's id, as Anthropic's do.
    const deniedId = (denied as { requestID: string | null }).requestID;
    expect(deniedId).toMatch(/^req_/);
    expect((denied as { error: { request_id: string } }).error.request_id).toBe(deniedId);
    const ok = await narrow.messages.create({ model: 'claude-haiku-4-5', max_tokens: 10, messages: [{ role: 'user', content: 'x' }] });
    expect(ok.model).toBe('claude-haiku-4-5');
  });
});

function simUrlOf(gw: Gateway): string {
  return gw.app.services.config.anthropicBaseUrl.replace(/\/$/, '');
}
