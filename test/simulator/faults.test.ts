import Anthropic, {
  AnthropicError,
  APIConnectionError,
  APIError,
  AuthenticationError,
  BadRequestError,
  InternalServerError,
  NotFoundError,
  OverloadedError,
  PermissionDeniedError,
  RateLimitError,
} from '@anthropic-ai/sdk';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { buildSimulator } from '../../src/simulator/index.js';
import type { SimulatedFault, Simulator } from '../../src/simulator/index.js';

const KEY = 'sk-sim-faults';
const MODEL = 'claude-haiku-4-5';
let sim: Simulator;
let baseURL: string;
let client: Anthropic;

beforeAll(async () => {
  sim = await buildSimulator({ keys: [KEY, 'sk-sim-flaky'] });
  baseURL = await sim.listen();
  client = new Anthropic({ apiKey: KEY, baseURL, maxRetries: 0 });
});
afterAll(async () => sim.close());
beforeEach(() => sim.reset());

const withFault = (fault: SimulatedFault) => ({ headers: { 'x-sim-fault': JSON.stringify(fault) } });
const ask = (text = 'hello', fault?: SimulatedFault, c = client) =>
  c.messages.create({ model: MODEL, max_tokens: 50, messages: [{ role: 'user', content: text }] }, fault ? withFault(fault) : undefined);

async function caught(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  throw new Error('expected a failure');
}

describe('simulator: errors and faults', () => {
  it.each([
    [400, BadRequestError, 'invalid_request_error'],
    [401, AuthenticationError, 'authentication_error'],
    [403, PermissionDeniedError, 'permission_error'],
    [404, NotFoundError, 'not_found_error'],
    [500, InternalServerError, 'api_error'],
    [529, OverloadedError, 'overloaded_error'],
  ] as const)('status %i arrives as the SDK class for it', async (status, cls, type) => {
    const err = await caught(ask('hi', { status }));
    expect(err).toBeInstanceOf(cls);
    expect((err as APIError).status).toBe(status);
    expect((err as APIError).type).toBe(type);
    expect((err as APIError).requestID).toMatch(/^req_/);
    expect(sim.requests.at(-1)).toMatchObject({ status, outcome: 'error', usage: null });
  });

  it('529 says Overloaded and 429 carries retry-after and retry-after-ms', async () => {
    const overloaded = (await caught(ask('hi', { status: 529 }))) as APIError;
    expect(overloaded.error).toEqual({ type: 'error', error: { type: 'overloaded_error', message: 'Overloaded' }, request_id: overloaded.requestID });
    const limited = (await caught(ask('hi', { status: 429, retryAfter: 7, retryAfterMs: 6500 }))) as RateLimitError;
    expect(limited).toBeInstanceOf(RateLimitError);
    expect(limited.headers?.get('retry-after')).toBe('7');
    expect(limited.headers?.get('retry-after-ms')).toBe('6500');
    const plain = (await caught(ask('hi', { status: 429 }))) as RateLimitError;
    expect(plain.headers?.get('retry-after')).toBe('1');
  });

  it('rejects missing and unknown keys, unknown models and invalid bodies like Anthropic', async () => {
    const wrong = new Anthropic({ apiKey: 'sk-not-listed', baseURL, maxRetries: 0 });
    const auth = (await caught(ask('hi', undefined, wrong))) as APIError;
    expect(auth).toBeInstanceOf(AuthenticationError);
    expect(auth.apiMessage).toBe('invalid x-api-key');
    const model = (await caught(client.messages.create({ model: 'claude-nope', max_tokens: 5, messages: [{ role: 'user', content: 'x' }] }))) as APIError;
    expect(model).toBeInstanceOf(NotFoundError);
    expect(model.apiMessage).toBe('model: claude-nope');
    const missing = (await caught(client.post('/v1/messages', { body: { model: MODEL, messages: [{ role: 'user', content: 'x' }] } }))) as APIError;
    expect(missing).toBeInstanceOf(BadRequestError);
    expect(missing.apiMessage).toBe('max_tokens: Field required');

    const noKey = await fetch(`${baseURL}/v1/models`, { headers: { 'anthropic-version': '2023-06-01' } });
    expect(noKey.status).toBe(401);
    const noVersion = await fetch(`${baseURL}/v1/messages`, {
      method: 'POST',
      headers: { 'x-api-key': KEY, 'content-type': 'application/json' },
      body: JSON.stringify({ model: MODEL, max_tokens: 5, messages: [{ role: 'user', content: 'x' }] }),
    });
    expect(noVersion.status).toBe(400);
    expect(noVersion.headers.get('request-id')).toMatch(/^req_/);
    expect(await noVersion.json()).toMatchObject({ type: 'error', error: { type: 'invalid_request_error', message: 'anthropic-version: header is required' } });
    const badVersion = await fetch(`${baseURL}/v1/models`, { headers: { 'x-api-key': KEY, 'anthropic-version': '2099-01-01' } });
    expect(badVersion.status).toBe(400);
    expect(await badVersion.json()).toMatchObject({ error: { type: 'invalid_request_error', message: 'anthropic-version: "2099-01-01" is not a valid version' } });
  });

  it('refuses bodies over 32 MB with 413 request_too_large', async () => {
    const res = await fetch(`${baseURL}/v1/messages`, {
      method: 'POST',
      headers: { 'x-api-key': KEY, 'anthropic-version': '2023-06-01', 'content-type': 'application/json' },
      body: JSON.stringify({ model: MODEL, max_tokens: 5, messages: [{ role: 'user', content: 'x'.repeat(33 * 1024 * 1024) }] }),
    });
    expect(res.status).toBe(413);
    expect(await res.json()).toMatchObject({ error: { type: 'request_too_large' } });
  });

  it('surfaces a mid-stream event: error as an SDK error and records the start usage', async () => {
    const stream = client.messages.stream({ model: MODEL, max_tokens: 50, messages: [{ role: 'user', content: 'one two three four' }] }, withFault({ errorAfterDeltas: 2 }));
    const texts: string[] = [];
    stream.on('text', (t) => texts.push(t));
    const err = (await caught(stream.finalMessage())) as APIError;
    expect(err).toBeInstanceOf(APIError);
    expect(err.type).toBe('overloaded_error');
    expect(texts).toHaveLength(2);
    expect(sim.requests.at(-1)).toMatchObject({ stream: true, status: 200, outcome: 'error', usage: { output_tokens: 1 } });
  });

  it('surfaces a reset mid-stream as a terminated connection, and before headers as APIConnectionError', async () => {
    const stream = client.messages.stream({ model: MODEL, max_tokens: 50, messages: [{ role: 'user', content: 'one two three four' }] }, withFault({ resetAfterDeltas: 1 }));
    const texts: string[] = [];
    stream.on('text', (t) => texts.push(t));
    const err = (await caught(stream.finalMessage())) as Error & { cause?: Error };
    // After the 200 the SDK wraps fetch's body failure ("terminated") in an AnthropicError.
    expect(err).toBeInstanceOf(AnthropicError);
    expect(err).not.toBeInstanceOf(APIError);
    expect(err.message).toMatch(/terminated/);
    expect(texts).toEqual(['Echo:']);
    expect(sim.requests.at(-1)).toMatchObject({ stream: true, outcome: 'reset', usage: { output_tokens: 1 } });

    // A non-streaming request is cut before any byte of the answer.
    await expect(ask('x', { resetAfterDeltas: 0 })).rejects.toBeInstanceOf(APIConnectionError);
    expect(sim.requests.at(-1)).toMatchObject({ stream: false, outcome: 'reset', usage: null });
  });

  it('writes garbage SSE for malformedAfterDeltas, and the stream fails', async () => {
    const quiet = new Anthropic({ apiKey: KEY, baseURL, maxRetries: 0, logLevel: 'off' });
    const stream = quiet.messages.stream({ model: MODEL, max_tokens: 50, messages: [{ role: 'user', content: 'one two' }] }, withFault({ malformedAfterDeltas: 1 }));
    await expect(stream.finalMessage()).rejects.toThrow();
    expect(sim.requests.at(-1)).toMatchObject({ outcome: 'malformed' });
  });

  it('applies a times-limited fault to the first N requests carrying its id, then succeeds', async () => {
    const fault = { status: 529, times: 2, id: 'flaky-1' };
    await expect(ask('a', fault)).rejects.toBeInstanceOf(OverloadedError);
    await expect(ask('b', fault)).rejects.toBeInstanceOf(OverloadedError);
    await expect(ask('c', fault)).resolves.toMatchObject({ content: [{ type: 'text', text: 'Echo: c' }] });
    expect(sim.requests.map((r) => r.status)).toEqual([529, 529, 200]);
    expect(sim.requests.map((r) => r.faultIds)).toEqual([['flaky-1'], ['flaky-1'], []]);
  });

  it('applies key faults to one key only, until cleared', async () => {
    sim.setKeyFaults('sk-sim-flaky', { status: 500, times: 1 });
    const flaky = new Anthropic({ apiKey: 'sk-sim-flaky', baseURL, maxRetries: 0 });
    await expect(ask('x', undefined, flaky)).rejects.toBeInstanceOf(InternalServerError);
    await expect(ask('x', undefined, flaky)).resolves.toBeDefined();
    sim.setKeyFaults('sk-sim-flaky', { status: 401 });
    await expect(ask('x')).resolves.toBeDefined();
    await expect(ask('x', undefined, flaky)).rejects.toBeInstanceOf(AuthenticationError);
    sim.setKeyFaults('sk-sim-flaky', undefined);
    await expect(ask('x', undefined, flaky)).resolves.toBeDefined();
  });

  it('reads a <<sim:{…}>> directive from the last user message and strips it from the echo', async () => {
    const msg = await ask('hi <<sim:{"text":"scripted reply here","cacheReadTokens":40,"cacheCreationTokens":7}>> there');
    expect(msg.content).toEqual([{ type: 'text', text: 'scripted reply here' }]);
    expect(msg.usage).toMatchObject({ cache_read_input_tokens: 40, cache_creation_input_tokens: 7, output_tokens: 3 });
    const echoed = await ask('hi <<sim:{"deltas":1}>> there');
    expect(echoed.content).toEqual([{ type: 'text', text: 'Echo: hi  there' }]);
    const bad = (await caught(ask('<<sim:{"stauts":500}>>'))) as APIError;
    expect(bad).toBeInstanceOf(BadRequestError);
    expect(sim.requests.map((r) => r.usage?.cache_read_input_tokens ?? null)).toEqual([40, 0, null]);
  });

  it('reports cache tokens in message_start and message_delta of a stream', async () => {
    const stream = client.messages.stream({ model: MODEL, max_tokens: 50, messages: [{ role: 'user', content: 'cached' }] }, withFault({ cacheReadTokens: 100, deltas: 1 }));
    const final = await stream.finalMessage();
    expect(final.usage.cache_read_input_tokens).toBe(100);
    expect(sim.requests.at(-1)!.usage).toEqual({ input_tokens: final.usage.input_tokens, output_tokens: final.usage.output_tokens, cache_creation_input_tokens: 0, cache_read_input_tokens: 100 });
  });

  it('paces deltas with deltaDelayMs and records a client abort as aborted', async () => {
    const stream = client.messages.stream({ model: MODEL, max_tokens: 50, messages: [{ role: 'user', content: 'a b c d e f g h' }] }, withFault({ deltaDelayMs: 40, deltas: 8 }));
    const settled = stream.finalMessage().then(() => 'finished', () => 'aborted');
    await new Promise<void>((resolve) => stream.once('text', () => resolve()));
    stream.abort();
    expect(await settled).toBe('aborted');
    for (let i = 0; i < 100 && sim.requests.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
    expect(sim.requests.at(-1)).toMatchObject({ stream: true, outcome: 'aborted', usage: { output_tokens: 1 } });
  });

  it('refuses temperature under anthropic-version 2026-10-21 as upstream does, accepts it under 2023-06-01', async () => {
    const body = JSON.stringify({ model: MODEL, max_tokens: 5, temperature: 0.5, messages: [{ role: 'user', content: 'x' }] });
    const post = (version: string) =>
      fetch(`${baseURL}/v1/messages`, { method: 'POST', headers: { 'x-api-key': KEY, 'anthropic-version': version, 'content-type': 'application/json' }, body });
    const refused = await post('2026-10-21');
    expect(refused.status).toBe(400);
    expect(await refused.json()).toMatchObject({ error: { type: 'invalid_request_error', message: 'temperature: Extra inputs are not permitted' } });
    expect((await post('2023-06-01')).status).toBe(200);
  });
});
