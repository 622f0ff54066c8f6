import Anthropic from '@anthropic-ai/sdk';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { buildSimulator } from '../../src/simulator/index.js';
import type { Simulator } from '../../src/simulator/index.js';

const KEY = 'sk-sim-test-key';
let sim: Simulator;
let baseURL: string;
let client: Anthropic;

beforeAll(async () => {
  sim = await buildSimulator({ keys: [KEY, 'sk-sim-other'] });
  baseURL = await sim.listen();
  client = new Anthropic({ apiKey: KEY, baseURL, maxRetries: 0 });
});
afterAll(async () => sim.close());
beforeEach(() => sim.reset());

const user = (text: string) => [{ role: 'user' as const, content: text }];

/** Parses raw SSE text into [event, data] pairs, checking each event has both lines. */
function parseSse(text: string): { event: string; data: Record<string, unknown> }[] {
  return text
    .split('\n\n')
    .filter((chunk) => chunk.length > 0)
    .map((chunk) => {
      const lines = chunk.split('\n');
      expect(lines[0]).toMatch(/^event: [a-z_]+$/);
      expect(lines[1]).toMatch(/^data: /);
      return { event: lines[0]!.slice(7), data: JSON.parse(lines[1]!.slice(6)) as Record<string, unknown> };
    });
}

describe('simulator: messages', () => {
  it('answers a non-streaming create with the echo, usage and headers', async () => {
    const { data, response } = await client.messages
      .create({ model: 'claude-haiku-4-5', max_tokens: 100, messages: user('hello there world') })
      .withResponse();
    expect(data.type).toBe('message');
    expect(data.role).toBe('assistant');
    expect(data.id).toMatch(/^msg_/);
    expect(data.content).toEqual([{ type: 'text', text: 'Echo: hello there world' }]);
    expect(data.stop_reason).toBe('end_turn');
    expect(data.stop_sequence).toBeNull();
    // input = 4 + ceil(17 / 4) + 2 × 1 = 11; output = 4 tokens ("Echo:", " hello", " there", " world").
    expect(data.usage).toMatchObject({ input_tokens: 11, output_tokens: 4, cache_creation_input_tokens: 0, cache_read_input_tokens: 0 });
    expect(response.headers.get('request-id')).toMatch(/^req_/);
    for (const kind of ['requests', 'tokens', 'input-tokens', 'output-tokens']) {
      expect(response.headers.get(`anthropic-ratelimit-${kind}-limit`)).toMatch(/^\d+$/);
      expect(response.headers.get(`anthropic-ratelimit-${kind}-remaining`)).toMatch(/^\d+$/);
      expect(response.headers.get(`anthropic-ratelimit-${kind}-reset`)).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    }
    expect(sim.requests).toHaveLength(1);
    expect(sim.requests[0]).toMatchObject({ key: KEY, model: 'claude-haiku-4-5', stream: false, status: 200, outcome: 'complete', usage: data.usage });
  });

  it('streams with messages.stream(): finalMessage matches and raw events come in order', async () => {
    const stream = client.messages.stream({ model: 'claude-haiku-4-5', max_tokens: 100, messages: user('one two three four five six') });
    const events: string[] = [];
    stream.on('streamEvent', (e) => events.push(e.type));
    const final = await stream.finalMessage();
    expect(final.content).toEqual([{ type: 'text', text: 'Echo: one two three four five six' }]);
    expect(final.usage.output_tokens).toBe(7);
    const deltas = events.filter((e) => e === 'content_block_delta').length;
    expect(deltas).toBe(5);
    expect(events).toEqual(['message_start', 'content_block_start', ...Array(deltas).fill('content_block_delta'), 'content_block_stop', 'message_delta', 'message_stop']);
    expect(sim.requests[0]).toMatchObject({ stream: true, outcome: 'complete', usage: final.usage });
  });

  it('writes exact SSE framing: event lines, ping after the first block start, cumulative usage', async () => {
    const res = await fetch(`${baseURL}/v1/messages?beta=true`, {
      method: 'POST',
      headers: { 'x-api-key': KEY, 'anthropic-version': '2023-06-01', 'anthropic-beta': 'a,b', 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'claude-opus-4-5', max_tokens: 50, stream: true, messages: user('a b c'), some_future_field: { x: 1 } }),
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    expect(res.headers.get('request-id')).toMatch(/^req_/);
    const events = parseSse(await res.text());
    expect(events.map((e) => e.event)).toEqual([
      'message_start', 'content_block_start', 'ping',
      'content_block_delta', 'content_block_delta', 'content_block_delta', 'content_block_delta',
      'content_block_stop', 'message_delta', 'message_stop',
    ]);
    for (const e of events) expect(e.data.type).toBe(e.event);
    const start = events[0]!.data.message as { usage: Record<string, number>; content: unknown[] };
    expect(start.content).toEqual([]);
    expect(start.usage).toEqual({ input_tokens: 8, cache_creation_input_tokens: 0, cache_read_input_tokens: 0, output_tokens: 1 });
    const delta = events[8]!.data as { usage: Record<string, number>; delta: Record<string, unknown> };
    expect(delta.delta).toEqual({ stop_reason: 'end_turn', stop_sequence: null });
    expect(delta.usage).toEqual({ input_tokens: 8, cache_creation_input_tokens: 0, cache_read_input_tokens: 0, output_tokens: 4 });
    const text = events.filter((e) => e.event === 'content_block_delta').map((e) => (e.data.delta as { text: string }).text).join('');
    expect(text).toBe('Echo: a b c');
  });

  it('accepts Authorization: Bearer (authToken) as well as x-api-key', async () => {
    const bearer = new Anthropic({ authToken: 'sk-sim-other', baseURL, maxRetries: 0 });
    const msg = await bearer.messages.create({ model: 'claude-haiku-4-5', max_tokens: 10, messages: user('hi') });
    expect(msg.content[0]).toEqual({ type: 'text', text: 'Echo: hi' });
    expect(sim.requests[0]!.key).toBe('sk-sim-other');
  });

  it('honours max_tokens and stop_sequences', async () => {
    const cut = await client.messages.create({ model: 'claude-haiku-4-5', max_tokens: 3, messages: user('alpha beta gamma delta') });
    expect(cut.stop_reason).toBe('max_tokens');
    expect(cut.content).toEqual([{ type: 'text', text: 'Echo: alpha beta' }]);
    expect(cut.usage.output_tokens).toBe(3);
    const stopped = await client.messages.create({ model: 'claude-haiku-4-5', max_tokens: 100, stop_sequences: ['gamma'], messages: user('alpha beta gamma delta') });
    expect(stopped.stop_reason).toBe('stop_sequence');
    expect(stopped.stop_sequence).toBe('gamma');
    expect(stopped.content).toEqual([{ type: 'text', text: 'Echo: alpha beta ' }]);
  });

  it('emits a thinking block with thinking and signature deltas before the text', async () => {
    const stream = client.messages.stream({
      model: 'claude-haiku-4-5', max_tokens: 200, thinking: { type: 'enabled', budget_tokens: 100 }, messages: user('think'),
    });
    const deltaTypes: string[] = [];
    stream.on('streamEvent', (e) => {
      if (e.type === 'content_block_delta') deltaTypes.push(e.delta.type);
    });
    const final = await stream.finalMessage();
    expect(final.content.map((b) => b.type)).toEqual(['thinking', 'text']);
    const thinking = final.content[0] as { thinking: string; signature: string };
    expect(thinking.thinking.length).toBeGreaterThan(0);
    expect(thinking.signature.length).toBeGreaterThan(0);
    expect(deltaTypes.indexOf('signature_delta')).toBe(deltaTypes.lastIndexOf('thinking_delta') + 1);
    expect(deltaTypes.at(-1)).toBe('text_delta');
  });

  it('scripts a tool_use reply with input_json_delta, the first one empty', async () => {
    const res = await fetch(`${baseURL}/v1/messages`, {
      method: 'POST',
      headers: { 'x-api-key': KEY, 'anthropic-version': '2023-06-01', 'content-type': 'application/json' },
      body: JSON.stringify({
        model: 'claude-haiku-4-5', max_tokens: 200, stream: true,
        tools: [{ name: 'lookup', input_schema: { type: 'object' } }],
        messages: user('find it <<sim:{"toolUse":{"input":{"q":"weather in Paris"}},"text":"Let me look."}>>'),
      }),
    });
    const events = parseSse(await res.text());
    const starts = events.filter((e) => e.event === 'content_block_start').map((e) => e.data.content_block as Record<string, unknown>);
    expect(starts[1]).toMatchObject({ type: 'tool_use', name: 'lookup', input: {} });
    const json = events
      .filter((e) => e.event === 'content_block_delta' && e.data.index === 1)
      .map((e) => (e.data.delta as { type: string; partial_json: string }));
    expect(json[0]).toEqual({ type: 'input_json_delta', partial_json: '' });
    expect(JSON.parse(json.map((d) => d.partial_json).join(''))).toEqual({ q: 'weather in Paris' });
    const delta = events.find((e) => e.event === 'message_delta')!.data.delta as { stop_reason: string };
    expect(delta.stop_reason).toBe('tool_use');
  });

  it('counts tokens with the same formula as usage', async () => {
    const counted = await client.messages.countTokens({ model: 'claude-haiku-4-5', messages: user('hello there world') });
    expect(counted).toEqual({ input_tokens: 11 });
  });

  it('paginates models with limit, after_id and before_id', async () => {
    const first = await client.models.list({ limit: 2 });
    expect(first.data).toHaveLength(2);
    expect(first.has_more).toBe(true);
    const all: string[] = [];
    for await (const model of client.models.list({ limit: 2 })) all.push(model.id);
    expect(all.length).toBeGreaterThanOrEqual(3);
    expect(all.slice(0, 2)).toEqual(first.data.map((m) => m.id));
    expect(new Set(all).size).toBe(all.length);
    const before = await client.models.list({ limit: 1, before_id: all[2]! });
    expect(before.data.map((m) => m.id)).toEqual([all[1]]);
    const one = await client.models.retrieve('claude-sonnet-4-5');
    expect(one).toMatchObject({ type: 'model', display_name: 'Claude Sonnet 4.5', line: 'sonnet', lifecycle: 'active' });
    expect(one.id).toMatch(/^claude-sonnet-4-5-\d{8}$/);
    // Every field the SDK's ModelInfo declares as always present (possibly null).
    const declared: (keyof Anthropic.ModelInfo)[] = ['id', 'capabilities', 'created_at', 'deprecated_at', 'display_name', 'lifecycle', 'line', 'max_input_tokens', 'max_tokens', 'retires_at', 'type'];
    expect(Object.keys(one).sort()).toEqual([...declared].sort());
  });
});
