import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { GatewayError, renderError } from '../../src/errors/index.js';
import { buildSimulator } from '../../src/simulator/index.js';
import type { Simulator } from '../../src/simulator/index.js';
import { UpstreamClient } from '../../src/upstream/client.js';
import { callUpstream, resilienceHeaders } from '../../src/upstream/resilient.js';
import type { UpstreamOutcome } from '../../src/upstream/resilient.js';
import { FakeClock, ListKeys, callOptions, circuitsFor } from './helpers.js';
import type { TestKey } from './helpers.js';

const A: TestKey = { id: 'key_a', name: 'alpha', secret: 'sk-sim-alpha' };
const B: TestKey = { id: 'key_b', name: 'bravo', secret: 'sk-sim-bravo' };
const REVOKED: TestKey = { id: 'key_revoked', name: 'revoked', secret: 'sk-sim-revoked' };

let sim: Simulator;
let client: UpstreamClient;

beforeAll(async () => {
  sim = await buildSimulator({ keys: [A.secret, B.secret] });
  client = new UpstreamClient({ baseUrl: await sim.listen() });
});
afterAll(async () => {
  await client.close();
  await sim.close();
});
beforeEach(() => sim.reset());

async function rejection(promise: Promise<unknown>): Promise<GatewayError> {
  try {
    await promise;
  } catch (err) {
    if (err instanceof GatewayError) return err;
    throw err;
  }
  throw new Error('expected a GatewayError');
}

function buffered(outcome: UpstreamOutcome) {
  if (outcome.kind !== 'buffered') throw new Error(`expected a buffered outcome, got ${outcome.kind}`);
  return outcome;
}

describe('callUpstream against the simulator', () => {
  it('retries a 529 twice with jittered backoff, then succeeds with the usage the simulator reported', async () => {
    const keys = new ListKeys([A]);
    const opts = callOptions({ client, keys, fault: { status: 529, times: 2, id: 'twice' } });
    const outcome = buffered(await callUpstream(opts));
    expect(outcome.status).toBe(200);
    expect(outcome.attempts.map((a) => a.status)).toEqual([529, 529, 200]);
    expect(outcome.retries).toBe(2);
    expect(resilienceHeaders(outcome)).toEqual({ 'x-portcullis-retries': '2' });
    expect(opts.clock.sleeps).toHaveLength(2);
    expect(opts.clock.sleeps[0]).toBeLessThan(500);
    expect(opts.clock.sleeps[1]).toBeLessThan(1000);
    expect(sim.requests.map((r) => r.status)).toEqual([529, 529, 200]);
    expect(sim.requests.every((r) => r.key === A.secret)).toBe(true);
    const usage = sim.requests.at(-1)!.usage!;
    expect(outcome.usage).toEqual({
      inputTokens: usage.input_tokens,
      outputTokens: usage.output_tokens,
      cacheCreationInputTokens: usage.cache_creation_input_tokens,
      cacheReadInputTokens: usage.cache_read_input_tokens,
    });
    expect(outcome.headers['request-id']).toBe(sim.requests.at(-1)!.requestId);
    expect(Object.keys(outcome.headers).some((h) => h.startsWith('anthropic-ratelimit-'))).toBe(false);
    expect(keys.released).toBe(keys.leased);
  });

  it('waits exactly what retry-after-ms, then retry-after, asks after a 429', async () => {
    const keys = new ListKeys([A]);
    const first = callOptions({ client, keys, fault: { status: 429, retryAfterMs: 1500, times: 1, id: 'rl-ms' } });
    buffered(await callUpstream(first));
    expect(first.clock.sleeps).toEqual([1500]);
    const second = callOptions({ client, keys, fault: { status: 429, retryAfter: 3, times: 1, id: 'rl-s' } });
    const outcome = buffered(await callUpstream(second));
    expect(second.clock.sleeps).toEqual([3000]);
    expect(outcome.attempts.map((a) => [a.status, a.error])).toEqual([[429, 'status_429'], [200, null]]);
  });

  it('a 429 on one key moves to the next key at once, without waiting', async () => {
    sim.setKeyFaults(A.secret, { status: 429, retryAfter: 20 });
    const opts = callOptions({ client, keys: new ListKeys([A, B]) });
    const outcome = buffered(await callUpstream(opts));
    expect(outcome.attempts.map((a) => `${a.keyName}:${a.status}`)).toEqual(['alpha:429', 'bravo:200']);
    expect(opts.clock.sleeps).toEqual([]);
    expect(opts.circuits.isHealthy(A.id)).toBe(false);
    expect(opts.circuits.state(A.id)).toBe('closed');
  });

  it('skips a key whose circuit opened, and falls over to the next key meanwhile', async () => {
    sim.setKeyFaults(A.secret, { status: 500 });
    const clock = new FakeClock();
    const circuits = circuitsFor(clock, 2);
    const changes: string[] = [];
    circuits.onStateChange((c) => changes.push(`${c.keyId}:${c.to}`));
    const keys = new ListKeys([A, B]);
    for (let i = 0; i < 2; i++) {
      const outcome = buffered(await callUpstream(callOptions({ client, keys, clock, circuits, maxRetries: 0 })));
      expect(outcome.attempts.map((a) => `${a.keyId}:${a.status}`)).toEqual(['key_a:500', 'key_b:200']);
      expect(outcome.keyId).toBe(B.id);
    }
    expect(changes).toEqual(['key_a:open']);
    const third = buffered(await callUpstream(callOptions({ client, keys, clock, circuits, maxRetries: 0 })));
    expect(third.attempts.map((a) => a.keyId)).toEqual(['key_b']);
    expect(sim.requests.filter((r) => r.key === A.secret)).toHaveLength(2);
    clock.t += 30_000;
    sim.setKeyFaults(A.secret, undefined);
    const probe = buffered(await callUpstream(callOptions({ client, keys, clock, circuits, maxRetries: 0 })));
    expect(probe.attempts.map((a) => a.keyId)).toEqual(['key_a']);
    expect(changes).toEqual(['key_a:open', 'key_a:half_open', 'key_a:closed']);
    expect(keys.released).toBe(keys.leased);
  });

  it('falls back to the configured model when every key failed for the requested one', async () => {
    const keys = new ListKeys([A, B]);
    const opts = callOptions({
      client,
      keys,
      model: 'claude-opus-4-6',
      maxRetries: 0,
      fallbacks: 'claude-opus-*=claude-sonnet-4-5,claude-sonnet-*=claude-haiku-4-5',
      fault: { status: 503, times: 2, id: 'opus-down' },
    });
    const outcome = buffered(await callUpstream(opts));
    expect(outcome.attempts.map((a) => `${a.keyId}:${a.model}:${a.status}`)).toEqual([
      'key_a:claude-opus-4-6:503',
      'key_b:claude-opus-4-6:503',
      'key_a:claude-sonnet-4-5:200',
    ]);
    expect(outcome.fallback).toBe('claude-sonnet-4-5');
    expect(resilienceHeaders(outcome)).toEqual({ 'x-portcullis-retries': '2', 'x-portcullis-fallback': 'claude-sonnet-4-5' });
    expect((outcome.json as { model: string }).model).toBe('claude-sonnet-4-5');
    expect(sim.requests.map((r) => r.model)).toEqual(['claude-opus-4-6', 'claude-opus-4-6', 'claude-sonnet-4-5']);
  });

  it('every key down: overloaded_error with retry-after; then with every circuit open, no upstream call at all', async () => {
    sim.setKeyFaults(A.secret, { status: 529 });
    sim.setKeyFaults(B.secret, { status: 529 });
    const clock = new FakeClock();
    const circuits = circuitsFor(clock, 2);
    const keys = new ListKeys([A, B]);
    const err = await rejection(callUpstream(callOptions({ client, keys, clock, circuits, maxRetries: 1 })));
    expect(err.code).toBe('overloaded');
    expect(err.reason).toBe('upstream_exhausted');
    const rendered = renderError(err);
    expect(rendered.status).toBe(529);
    expect(rendered.body.error.type).toBe('overloaded_error');
    expect(Number(rendered.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    expect(sim.requests).toHaveLength(4);
    expect(circuits.state(A.id)).toBe('open');
    expect(circuits.state(B.id)).toBe('open');

    const again = await rejection(callUpstream(callOptions({ client, keys, clock, circuits, maxRetries: 1 })));
    expect(again).toMatchObject({ code: 'overloaded', reason: 'all_keys_unhealthy', retryAfterSeconds: 30 });
    expect(sim.requests).toHaveLength(4);
    expect(keys.released).toBe(keys.leased);
  });

  it('no key configured: unavailable, no_upstream_key', async () => {
    const err = await rejection(callUpstream(callOptions({ client, keys: new ListKeys([]) })));
    expect(err).toMatchObject({ code: 'unavailable', status: 503, reason: 'no_upstream_key' });
    expect(sim.requests).toHaveLength(0);
  });

  it('passes an upstream 400 through unmodified, without retrying', async () => {
    const keys = new ListKeys([A, B]);
    const outcome = await callUpstream(callOptions({ client, keys, body: Buffer.from(JSON.stringify({ model: 'claude-haiku-4-5', messages: [] })) }));
    if (outcome.kind !== 'passthrough') throw new Error(`expected passthrough, got ${outcome.kind}`);
    const served = sim.requests.at(-1)!;
    expect(sim.requests).toHaveLength(1);
    expect(outcome.status).toBe(400);
    const body = JSON.parse(outcome.bytes.toString()) as { error: { type: string; message: string }; request_id: string };
    expect(body.request_id).toBe(served.requestId);
    expect(outcome.bytes.toString()).toBe(JSON.stringify({ type: 'error', error: { type: 'invalid_request_error', message: body.error.message }, request_id: served.requestId }));
    expect(outcome.headers).toMatchObject({ 'content-type': expect.stringContaining('application/json'), 'request-id': served.requestId });
    expect(outcome.attempts).toHaveLength(1);
  });

  it("an upstream 401 means OUR key is bad: next key; with none left, a gateway error, never Anthropic's auth error", async () => {
    const clock = new FakeClock();
    const circuits = circuitsFor(clock);
    const outcome = buffered(await callUpstream(callOptions({ client, clock, circuits, keys: new ListKeys([REVOKED, B]) })));
    expect(outcome.attempts.map((a) => `${a.keyId}:${a.status}`)).toEqual(['key_revoked:401', 'key_b:200']);
    expect(circuits.state(REVOKED.id)).toBe('open');

    const err = await rejection(callUpstream(callOptions({ client, keys: new ListKeys([REVOKED]) })));
    expect(err).toMatchObject({ code: 'unavailable', reason: 'upstream_key_rejected' });
    expect(renderError(err).body.error.type).toBe('api_error');
    // Permanent until an operator acts: the SDKs, which retry any 5xx, are told not to.
    expect(renderError(err).headers['x-should-retry']).toBe('false');
  });

  it('every key rate limited by upstream: a 429 rate_limit_error with upstream\'s retry-after, not overloaded', async () => {
    const err = await rejection(callUpstream(callOptions({ client, maxRetries: 0, keys: new ListKeys([A, B]), fault: { status: 429, retryAfter: 7 } })));
    expect(err).toMatchObject({ code: 'rate_limited', status: 429, reason: 'upstream_rate_limited', retryAfterSeconds: 7 });
    expect(renderError(err)).toMatchObject({ status: 429, body: { error: { type: 'rate_limit_error' } }, headers: { 'retry-after': '7' } });
  });

  it('an upstream 403 tries the next key but leaves the keys healthy (it may concern this request alone)', async () => {
    const clock = new FakeClock();
    const circuits = circuitsFor(clock, 1);
    const err = await rejection(callUpstream(callOptions({ client, clock, circuits, keys: new ListKeys([A, B]), fault: { status: 403 } })));
    expect(err).toMatchObject({ code: 'unavailable', reason: 'upstream_key_rejected' });
    expect([circuits.state(A.id), circuits.state(B.id)]).toEqual(['closed', 'closed']);
  });

  it('sends the lease key, not the client credentials, and keeps anthropic-beta', async () => {
    await callUpstream(callOptions({ client, keys: new ListKeys([A]), headers: { 'x-api-key': 'sk-client-own', 'anthropic-beta': 'a-2025,b-2026' } }));
    expect(sim.requests.at(-1)).toMatchObject({ key: A.secret, status: 200 });
  });

  it('retries a non-streaming body cut short (reset, truncated JSON) before committing', async () => {
    const keys = new ListKeys([A]);
    const reset = buffered(await callUpstream(callOptions({ client, keys, fault: { resetAfterDeltas: 0, times: 1, id: 'cut' } })));
    expect(reset.attempts.map((a) => a.error)).toEqual([expect.any(String), null]);
    const truncated = buffered(await callUpstream(callOptions({ client, keys, fault: { malformedAfterDeltas: 0, times: 1, id: 'half' } })));
    expect(truncated.attempts.map((a) => a.error)).toEqual(['malformed_body', null]);
    expect(truncated.json).toMatchObject({ type: 'message' });
  });

  it('gives up at the deadline with 504 timeout_error and cancels the attempt', async () => {
    const keys = new ListKeys([A]);
    const err = await rejection(callUpstream(callOptions({ client, keys, deadlineMs: 200, fault: { latencyMs: 5000 } })));
    expect(err).toMatchObject({ code: 'upstream_timeout', status: 504, reason: 'upstream_deadline' });
    expect(keys.released).toBe(1);
  });

  it('lets an answer that comes whole (a non-streaming message) take longer than the deadline, up to wholeAnswerMs', async () => {
    const keys = new ListKeys([A]);
    const slow = buffered(await callUpstream(callOptions({ client, keys, deadlineMs: 200, wholeAnswerMs: 5000, fault: { latencyMs: 400 } })));
    expect(slow.json).toMatchObject({ type: 'message' });
    const err = await rejection(callUpstream(callOptions({ client, keys, deadlineMs: 200, wholeAnswerMs: 300, fault: { latencyMs: 5000 } })));
    expect(err).toMatchObject({ code: 'upstream_timeout', status: 504, reason: 'upstream_deadline', message: 'Anthropic did not answer within 300 ms.' });
    // A whole answer's attempt that failed past the deadline: no other key is tried (and blamed) after it.
    const clock = new FakeClock();
    const circuits = circuitsFor(clock, 1);
    const late = callOptions({ client, clock, circuits, maxRetries: 0, keys: new ListKeys([A, B]), deadlineMs: 200, wholeAnswerMs: 5000, fault: { status: 529 } });
    late.onAttempt = () => void (clock.t += 400); // each attempt takes 400 ms on the call's clock
    const exhausted = await rejection(callUpstream(late));
    expect(exhausted).toMatchObject({ code: 'overloaded', reason: 'upstream_exhausted' });
    expect(circuits.state(B.id)).toBe('closed');
  });

});
