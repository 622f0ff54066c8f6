/**
 * Must show 4: every request through the gateway settles exactly one usage record whose
 * tokens are exactly what upstream (the simulator) reported to the client: complete streams,
 * streams cancelled by the client, streams that failed mid-stream, and JSON answers. Also the
 * per-request log line: what it carries, and that it carries no prompt text and no secret.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SimulatedRequest } from '../../src/simulator/index.js';
import type { Gateway } from './helpers.js';
import { messageBody, startGateway, until, usageRows } from './helpers.js';

describe('usage accounting through the gateway', () => {
  let gw: Gateway;
  beforeAll(async () => {
    gw = await startGateway({ env: { UPSTREAM_MAX_RETRIES: '0' } });
  });
  afterAll(async () => {
    await gw?.close();
  });

  const post = (body: Record<string, unknown>, options: { fault?: Record<string, unknown>; requestId: string; signal?: AbortSignal }) =>
    fetch(`${gw.url}/v1/messages`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${gw.token}`,
        'anthropic-version': '2023-06-01',
        'content-type': 'application/json',
        'x-request-id': options.requestId,
        ...(options.fault ? { 'x-sim-fault': JSON.stringify(options.fault) } : {}),
      },
      body: JSON.stringify(body),
      ...(options.signal ? { signal: options.signal } : {}),
    });

  const rid = () => `req_test_${randomBytes(6).toString('hex')}`;

  /** The single usage record of a request, once settled, and the simulator's entry for it. */
  async function settled(requestId: string, simIndex: number): Promise<{ row: Awaited<ReturnType<typeof usageRows>>[number]; sim: SimulatedRequest }> {
    await until(async () => (await usageRows(gw, requestId)).length > 0 && gw.sim.requests.length > simIndex);
    const rows = await usageRows(gw, requestId);
    expect(rows).toHaveLength(1);
    return { row: rows[0]!, sim: gw.sim.requests[simIndex]! };
  }

  function expectSameUsage(row: { input_tokens: unknown; output_tokens: unknown; cache_creation_input_tokens: unknown; cache_read_input_tokens: unknown }, sim: SimulatedRequest): void {
    expect(sim.usage).not.toBeNull();
    expect({
      input_tokens: Number(row.input_tokens),
      output_tokens: Number(row.output_tokens),
      cache_creation_input_tokens: Number(row.cache_creation_input_tokens),
      cache_read_input_tokens: Number(row.cache_read_input_tokens),
    }).toEqual(sim.usage);
  }

  it('records a JSON answer with upstream usage, cache tokens included', async () => {
    const id = rid();
    const at = gw.sim.requests.length;
    const res = await post(messageBody('count my tokens please'), { requestId: id, fault: { cacheReadTokens: 7, cacheCreationTokens: 3 } });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { usage: Record<string, number> };
    const { row, sim } = await settled(id, at);
    expectSameUsage(row, sim);
    expect(body.usage).toMatchObject(sim.usage!);
    expect(row).toMatchObject({ outcome: 'complete', status: 200, user_id: gw.user.id, model: 'claude-sonnet-4-6' });
    expect(Number(row.cache_read_input_tokens)).toBe(7);
    expect(row.personal_token_id).toMatch(/^pat_/);
  });

  it('records a completed stream with the final cumulative usage', async () => {
    const id = rid();
    const at = gw.sim.requests.length;
    const res = await post(messageBody('stream all of it', { stream: true }), { requestId: id, fault: { deltas: 4, cacheReadTokens: 5 } });
    expect((await res.text()).includes('message_stop')).toBe(true);
    const { row, sim } = await settled(id, at);
    expect(sim.outcome).toBe('complete');
    expectSameUsage(row, sim);
    expect(row).toMatchObject({ outcome: 'complete', stream: 1 });
    expect(Number(row.output_tokens)).toBeGreaterThan(1);
  });

  it('records a stream the client cancelled with what upstream had reported, and aborts upstream', async () => {
    const id = rid();
    const at = gw.sim.requests.length;
    const controller = new AbortController();
    const words = Array.from({ length: 30 }, (_, i) => `w${i}`).join(' ');
    const res = await post(messageBody(words, { stream: true }), { requestId: id, signal: controller.signal, fault: { deltas: 30, deltaDelayMs: 40 } });
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    let seen = '';
    for (let i = 0; i < 200 && (seen.match(/event: content_block_delta/g) ?? []).length < 3; i++) {
      const { value, done } = await reader.read();
      if (done) break;
      seen += decoder.decode(value, { stream: true });
    }
    expect((seen.match(/event: content_block_delta/g) ?? []).length).toBeGreaterThanOrEqual(3);
    controller.abort();
    const { row, sim } = await settled(id, at);
    expect(sim.outcome).toBe('aborted');
    expectSameUsage(row, sim);
    expect(row).toMatchObject({ outcome: 'cancelled', stream: 1 });
  });

  it('logs a client that left before any answer as a disconnect, not as a server error', async () => {
    const id = rid();
    const at = gw.sim.requests.length;
    const controller = new AbortController();
    const res = post(messageBody('never mind'), { requestId: id, fault: { latencyMs: 400 }, signal: controller.signal });
    setTimeout(() => controller.abort(), 100);
    await expect(res).rejects.toThrow();
    await until(async () => (await usageRows(gw, id)).length > 0);
    expect((await usageRows(gw, id))[0]).toMatchObject({ outcome: 'cancelled', status: 499 });
    await until(() => gw.logs.some((l) => l.request_id === id && l.msg === 'the client disconnected before the answer'));
    expect(gw.logs.filter((l) => l.request_id === id && (l.level === 'error' || l.level === 'fatal'))).toEqual([]);
    await until(() => gw.sim.requests.length > at); // the simulator notes it once its latency is over
  });

  it('records streams that failed mid-stream (connection reset, upstream event: error)', async () => {
    for (const fault of [{ deltas: 6, resetAfterDeltas: 3 }, { deltas: 6, errorAfterDeltas: 2 }]) {
      const id = rid();
      const at = gw.sim.requests.length;
      const res = await post(messageBody('one two three four five six seven', { stream: true }), { requestId: id, fault });
      const text = await res.text();
      expect(text).toContain('event: error');
      const { row, sim } = await settled(id, at);
      expect(sim.outcome).toBe('resetAfterDeltas' in fault ? 'reset' : 'error');
      expectSameUsage(row, sim);
      expect(row).toMatchObject({ outcome: 'failed_midstream', stream: 1 });
      expect(row.error_type).toBe('resetAfterDeltas' in fault ? 'api_error' : 'overloaded_error');
    }
  });

  it('records a request naming the longest model a request may name (256 characters), refused upstream', async () => {
    const id = rid();
    const at = gw.sim.requests.length;
    const model = `claude-${'x'.repeat(249)}`;
    const res = await post(messageBody('a long name', { model }), { requestId: id });
    expect(res.status).toBe(404);
    const { row } = await settled(id, at);
    expect(row).toMatchObject({ model, status: 404, outcome: 'error', error_type: 'not_found_error' });
  });

  it('keeps exactly one record per request', async () => {
    const rows = await usageRows(gw);
    const ids = rows.map((r) => r.request_id);
    expect(new Set(ids).size).toBe(ids.length);
    expect(rows.length).toBe(gw.sim.requests.filter((r) => r.path === '/v1/messages').length);
  });

  it('logs one line per request with user, key, model, status, tokens, latency, ttfb, retries and request id; no prompt, no secret', async () => {
    const id = rid();
    const prompt = `PRIVATE-PROMPT-${randomBytes(8).toString('hex')}`;
    const res = await post(messageBody(prompt, { stream: true }), { requestId: id });
    const text = await res.text();
    expect(text).toContain(prompt); // the echo reached the client…
    await until(() => gw.logs.some((l) => l.request_id === id && l.msg === 'chat request settled'));
    const lines = gw.logs.filter((l) => l.request_id === id && l.msg === 'chat request settled');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({
      user: gw.user.subject,
      key: 'key-1',
      model: 'claude-sonnet-4-6',
      status: 200,
      outcome: 'complete',
      retries: 0,
      input_tokens: expect.any(Number),
      output_tokens: expect.any(Number),
      latency_ms: expect.any(Number),
      ttfb_ms: expect.any(Number),
    });
    const all = gw.rawLogs.join('');
    expect(all).not.toContain(prompt); // …but never the log
    expect(all).not.toContain('PRIVATE-PROMPT');
    for (const secret of [...gw.secrets, gw.token]) expect(all).not.toContain(secret);
  });
});
