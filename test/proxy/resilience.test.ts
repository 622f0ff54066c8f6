/**
 * Must show 2: resilience through the gateway, with the simulator's fault injection
 * (`x-sim-fault` passes through to upstream; per-key faults with `setKeyFaults`).
 * Each test starts its own gateway so circuits and fault counters never leak between tests.
 */
import Anthropic from '@anthropic-ai/sdk';
import { afterEach, describe, expect, it } from 'vitest';
import type { Gateway, GatewayOptions } from './helpers.js';
import { messageBody, startGateway, usageRows } from './helpers.js';

describe('resilience through the gateway', () => {
  let gw: Gateway | undefined;
  afterEach(async () => {
    await gw?.close();
    gw = undefined;
  });
  const start = async (options: GatewayOptions) => (gw = await startGateway(options));

  const post = (g: Gateway, body: Record<string, unknown>, fault?: Record<string, unknown>) =>
    fetch(`${g.url}/v1/messages`, {
      method: 'POST',
      headers: {
        'x-api-key': g.token,
        'anthropic-version': '2023-06-01',
        'content-type': 'application/json',
        ...(fault ? { 'x-sim-fault': JSON.stringify(fault) } : {}),
      },
      body: JSON.stringify(body),
    });

  it('retries a 529 twice, then succeeds, and says so in x-portcullis-retries', async () => {
    const g = await start({ env: { UPSTREAM_MAX_RETRIES: '2' } });
    const res = await post(g, messageBody('flaky'), { status: 529, times: 2, id: 'twice', retryAfterMs: 10 });
    expect(res.status).toBe(200);
    expect(res.headers.get('x-portcullis-retries')).toBe('2');
    expect(((await res.json()) as { content: { text: string }[] }).content[0]!.text).toBe('Echo: flaky');
    expect(g.sim.requests.map((r) => [r.status, r.faultIds])).toEqual([
      [529, ['twice']],
      [529, ['twice']],
      [200, []],
    ]);
  });

  it('honours a 429 retry-after-ms before the next attempt', async () => {
    const g = await start({ env: { UPSTREAM_MAX_RETRIES: '1' } });
    const res = await post(g, messageBody('slow down'), { status: 429, times: 1, id: 'rl', retryAfterMs: 300 });
    expect(res.status).toBe(200);
    expect(res.headers.get('x-portcullis-retries')).toBe('1');
    const [first, second] = g.sim.requests;
    expect(first!.status).toBe(429);
    expect(second!.status).toBe(200);
    // A lower bound only: the gateway waited at least what upstream asked for.
    expect(second!.at - first!.at).toBeGreaterThanOrEqual(290);
  });

  it('falls over to the next key at once and skips a key whose circuit opened', async () => {
    const g = await start({ keys: 2, env: { CIRCUIT_FAILURE_THRESHOLD: '2', CIRCUIT_COOLDOWN_MS: '600000', UPSTREAM_MAX_RETRIES: '0' } });
    const [bad, good] = g.secrets as [string, string];
    g.sim.setKeyFaults(bad, { status: 500 });
    const retries: string[] = [];
    for (let i = 0; i < 24; i++) {
      const res = await post(g, messageBody(`n${i}`));
      expect(res.status).toBe(200);
      retries.push(res.headers.get('x-portcullis-retries')!);
      await res.arrayBuffer();
    }
    const byBad = g.sim.requests.filter((r) => r.key === bad);
    // Tried until the circuit opened (2 consecutive failures), then never again.
    expect(byBad).toHaveLength(2);
    expect(byBad.every((r) => r.status === 500)).toBe(true);
    expect(g.sim.requests.filter((r) => r.key === good)).toHaveLength(24);
    expect(retries.filter((r) => r === '1')).toHaveLength(2);
    const lastBad = g.sim.requests.lastIndexOf(byBad[1]!);
    expect(g.sim.requests.slice(lastBad + 1).every((r) => r.key === good)).toBe(true);
    const keys = await g.app.services.vault.list();
    expect(keys.find((k) => k.name === 'key-1')!.health).not.toBe('healthy');
    expect(g.logs.some((l) => l.msg === 'upstream key circuit changed' && l.to === 'open')).toBe(true);
  });

  it('falls back to the configured model when the requested one fails, visible in x-portcullis-fallback', async () => {
    const g = await start({ env: { UPSTREAM_MAX_RETRIES: '0', FALLBACK_MODELS: 'claude-opus-*=claude-sonnet-4-6' } });
    const res = await post(g, messageBody('fallback please', { model: 'claude-opus-4-6' }), { status: 529, times: 1, id: 'opus-down' });
    expect(res.status).toBe(200);
    expect(res.headers.get('x-portcullis-fallback')).toBe('claude-sonnet-4-6');
    expect(((await res.json()) as { model: string }).model).toBe('claude-sonnet-4-6');
    expect(g.sim.requests.map((r) => [r.model, r.status])).toEqual([
      ['claude-opus-4-6', 529],
      ['claude-sonnet-4-6', 200],
    ]);
    const [row] = await usageRows(g);
    expect(row).toMatchObject({ model: 'claude-sonnet-4-6', fallback: 'claude-sonnet-4-6', retries: 1 });
  });

  it.each([
    ['between two events', {}],
    ['inside an event', { resetMidEvent: true }],
  ])('turns a connection reset mid-stream (%s) into a clean event: error, and the SDK sees an error', async (_where, cut) => {
    const g = await start({});
    const fault = { deltas: 5, resetAfterDeltas: 2, ...cut };
    const res = await post(g, messageBody('one two three four five six', { stream: true }), fault);
    expect(res.status).toBe(200);
    const text = await res.text();
    const events = text.split('\n\n').filter(Boolean);
    expect(events.filter((e) => e.startsWith('event: content_block_delta'))).toHaveLength(2);
    const last = events.at(-1)!;
    expect(last.split('\n')[0]).toBe('event: error');
    const data = JSON.parse(last.split('\n')[1]!.replace(/^data: /, '')) as { type: string; error: { type: string; message: string } };
    expect(data).toMatchObject({ type: 'error', error: { type: 'api_error' } });
    expect(text.endsWith('\n\n')).toBe(true);
    expect(text).not.toContain('message_stop');

    expect(g.sim.requests.at(-1)?.outcome).toBe('reset');
    const client = new Anthropic({ apiKey: g.token, baseURL: g.url, maxRetries: 0, defaultHeaders: { 'x-sim-fault': JSON.stringify(fault) } });
    const err = await client.messages
      .stream(messageBody('one two three four five six') as unknown as Anthropic.MessageCreateParamsNonStreaming)
      .finalMessage()
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Anthropic.APIError);
    expect(String((err as Error).message)).toMatch(/mid-stream/);
  });

  it('never falls back to a model the caller may not use, on messages and on count_tokens', async () => {
    const g = await start({ env: { UPSTREAM_MAX_RETRIES: '0', FALLBACK_MODELS: 'claude-opus-*=claude-sonnet-4-6' } });
    const { token } = await g.app.services.personalTokens.create(g.user.id, { name: 'opus-only', models: ['claude-opus-*'] });
    const body = JSON.stringify(messageBody('opus only', { model: 'claude-opus-4-6' }));
    for (const path of ['/v1/messages', '/v1/messages/count_tokens']) {
      const res = await fetch(`${g.url}${path}`, {
        method: 'POST',
        headers: { 'x-api-key': token, 'anthropic-version': '2023-06-01', 'content-type': 'application/json', 'x-sim-fault': JSON.stringify({ status: 529 }) },
        body,
      });
      expect([path, res.status]).toEqual([path, 529]);
    }
    expect(g.sim.requests.map((r) => r.model)).toEqual(['claude-opus-4-6', 'claude-opus-4-6']);
  });

  it('waits past UPSTREAM_DEADLINE_MS for a non-streaming answer (sent whole once written), not for a stream\'s first byte', async () => {
    const g = await start({ env: { UPSTREAM_DEADLINE_MS: '1000', UPSTREAM_MAX_RETRIES: '0' } });
    const whole = await post(g, messageBody('take your time'), { latencyMs: 1300 });
    expect(whole.status).toBe(200);
    expect(await whole.json()).toMatchObject({ type: 'message' });
    const stream = await post(g, messageBody('take your time', { stream: true }), { latencyMs: 1300 });
    expect(stream.status).toBe(504);
    expect(await stream.json()).toMatchObject({ type: 'error', error: { type: 'timeout_error', message: 'Anthropic did not answer within 1 s.' } });
  });

  it('answers 529 overloaded_error with retry-after when every key is down, without calling upstream once circuits are open', async () => {
    const g = await start({ keys: 2, env: { CIRCUIT_FAILURE_THRESHOLD: '1', CIRCUIT_COOLDOWN_MS: '30000', UPSTREAM_MAX_RETRIES: '0' } });
    for (const s of g.secrets) g.sim.setKeyFaults(s, { status: 529 });
    const first = await post(g, messageBody('anyone?'));
    expect(first.status).toBe(529);
    expect(Number(first.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(await first.json()).toMatchObject({ type: 'error', error: { type: 'overloaded_error' } });
    expect(g.sim.requests).toHaveLength(2);

    const second = await post(g, messageBody('still?', { stream: true }));
    expect(second.status).toBe(529);
    const retryAfter = Number(second.headers.get('retry-after'));
    expect(retryAfter).toBeGreaterThan(0);
    expect(retryAfter).toBeLessThanOrEqual(30);
    expect(await second.json()).toMatchObject({ type: 'error', error: { type: 'overloaded_error', message: expect.stringMatching(/temporarily unavailable/) } });
    expect(g.sim.requests).toHaveLength(2);

    const sdk = new Anthropic({ apiKey: g.token, baseURL: g.url, maxRetries: 0 });
    const err = await sdk.messages.create(messageBody('sdk') as unknown as Anthropic.MessageCreateParamsNonStreaming).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Anthropic.OverloadedError);
  });
});
