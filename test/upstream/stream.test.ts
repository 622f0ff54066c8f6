import { request } from 'undici';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { buildSimulator } from '../../src/simulator/index.js';
import type { SimulatedUsage, Simulator } from '../../src/simulator/index.js';
import { UpstreamClient } from '../../src/upstream/client.js';
import { callUpstream } from '../../src/upstream/resilient.js';
import type { UpstreamOutcome } from '../../src/upstream/resilient.js';
import { SseTap, sseErrorEvent } from '../../src/upstream/sse.js';
import { ListKeys, callOptions, messageBody } from './helpers.js';

const KEY = { id: 'key_s', name: 'stream', secret: 'sk-sim-stream' };
let sim: Simulator;
let baseUrl: string;
let client: UpstreamClient;

beforeAll(async () => {
  sim = await buildSimulator({ keys: [KEY.secret] });
  baseUrl = await sim.listen();
  client = new UpstreamClient({ baseUrl });
});
afterAll(async () => {
  await client.close();
  await sim.close();
});
beforeEach(() => sim.reset());

const camel = (u: SimulatedUsage) => ({
  inputTokens: u.input_tokens,
  outputTokens: u.output_tokens,
  cacheCreationInputTokens: u.cache_creation_input_tokens,
  cacheReadInputTokens: u.cache_read_input_tokens,
});

function stream(outcome: UpstreamOutcome) {
  if (outcome.kind !== 'stream') throw new Error(`expected a stream outcome, got ${outcome.kind}`);
  return outcome;
}

/** Reads a tapped stream the way the HTTP route will: chunks out as they come, errors caught. */
async function drain(tap: SseTap, source: AsyncIterable<Uint8Array>): Promise<{ bytes: Buffer; error: unknown }> {
  const chunks: Uint8Array[] = [];
  try {
    for await (const chunk of tap.pipe(source)) chunks.push(chunk);
    return { bytes: Buffer.concat(chunks), error: null };
  } catch (error) {
    return { bytes: Buffer.concat(chunks), error };
  }
}

const normalise = (text: string) => text.replace(/msg_\w+/g, 'msg_X');

describe('SSE through callUpstream and the tap', () => {
  it('yields the simulator bytes unchanged and collects the usage the simulator recorded', async () => {
    const fault = { cacheReadTokens: 7, cacheCreationTokens: 3, deltas: 6 };
    const body = messageBody({ stream: true });
    const keys = new ListKeys([KEY]);
    const outcome = stream(await callUpstream(callOptions({ client, keys, body, fault })));
    expect(outcome.status).toBe(200);
    expect(outcome.headers['content-type']).toMatch(/^text\/event-stream/);
    const tap = new SseTap();
    const { bytes, error } = await drain(tap, outcome.body);
    expect(error).toBeNull();
    const served = sim.requests.at(-1)!;
    expect(served.outcome).toBe('complete');

    // The same request straight to the simulator: identical bytes but for the message id.
    const direct = await request(`${baseUrl}/v1/messages`, {
      method: 'POST',
      headers: { 'x-api-key': KEY.secret, 'anthropic-version': '2023-06-01', 'content-type': 'application/json', 'x-sim-fault': JSON.stringify(fault) },
      body,
    });
    expect(normalise(bytes.toString())).toBe(normalise(await direct.body.text()));

    const summary = tap.summary();
    expect(summary.usage).toEqual(camel(served.usage!));
    expect(summary.usage.cacheReadInputTokens).toBe(7);
    expect(summary).toMatchObject({ stopReason: 'end_turn', complete: true, error: null, malformed: false, model: 'claude-haiku-4-5' });
    expect(keys.released).toBe(1);
  });

  it('a mid-stream reset reaches the caller as an error after the bytes before it, ready for a clean event: error', async () => {
    const keys = new ListKeys([KEY]);
    const opts = callOptions({ client, keys, body: messageBody({ stream: true }), fault: { resetAfterDeltas: 2, deltas: 6 } });
    const outcome = stream(await callUpstream(opts));
    const tap = new SseTap();
    const { bytes, error } = await drain(tap, outcome.body);
    expect(error).toBeInstanceOf(Error);
    expect(bytes.toString()).toContain('event: message_start');
    const summary = tap.summary();
    expect(summary.complete).toBe(false);
    expect(summary.usage).toEqual(camel(sim.requests.at(-1)!.usage!));
    const event = sseErrorEvent('api_error', 'Upstream connection lost');
    expect(event).toBe('event: error\ndata: {"type":"error","error":{"type":"api_error","message":"Upstream connection lost"}}\n\n');
    await expect.poll(() => keys.released).toBe(1);
    expect(opts.circuits.snapshot(KEY.id)).toMatchObject({ consecutiveFailures: 1, lastFailure: expect.stringMatching(/^midstream_/) });
  });

  it('an upstream event: error mid-stream is passed through and reported', async () => {
    const outcome = stream(await callUpstream(callOptions({ client, keys: new ListKeys([KEY]), body: messageBody({ stream: true }), fault: { errorAfterDeltas: 1 } })));
    const tap = new SseTap();
    const { bytes, error } = await drain(tap, outcome.body);
    expect(error).toBeNull();
    expect(bytes.toString()).toContain('event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}');
    expect(tap.summary()).toMatchObject({ complete: false, error: { type: 'overloaded_error', message: 'Overloaded' } });
  });

  it('the client going away cancels the upstream stream (the simulator sees it aborted)', async () => {
    const controller = new AbortController();
    const keys = new ListKeys([KEY]);
    const opts = callOptions({ client, keys, signal: controller.signal, body: messageBody({ stream: true }), fault: { text: 'word '.repeat(400), deltas: 200, deltaDelayMs: 20 } });
    const outcome = stream(await callUpstream(opts));
    const tap = new SseTap();
    const reading = drain(tap, outcome.body);
    await expect.poll(() => tap.summary().events, { timeout: 3000 }).toBeGreaterThan(2);
    controller.abort();
    const { error } = await reading;
    expect(error).toBeTruthy();
    await expect.poll(() => sim.requests.at(-1)?.outcome, { timeout: 3000 }).toBe('aborted');
    expect(keys.released).toBe(1);
    expect(opts.circuits.snapshot(KEY.id).consecutiveFailures).toBe(0);
  });

  it('an abort before the answer rejects the call with the abort reason and releases the key', async () => {
    const controller = new AbortController();
    const keys = new ListKeys([KEY]);
    const pending = callUpstream(callOptions({ client, keys, signal: controller.signal, fault: { latencyMs: 3000 } }));
    await expect.poll(() => keys.leased).toBe(1);
    controller.abort();
    await expect(pending).rejects.toMatchObject({ name: 'AbortError' });
    expect(keys.released).toBe(1);
  });
});

describe('SseTap', () => {
  const text =
    'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1","model":"m","usage":{"input_tokens":377,"cache_creation_input_tokens":4,"cache_read_input_tokens":5,"output_tokens":1}}}\n\n' +
    'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"héllo ✓"}}\n\n' +
    'event: some_future_event\ndata: {"type":"some_future_event"}\n\n' +
    'event: message_delta\ndata: {"type": "message_delta", "delta": {"stop_reason": "max_tokens"}, "usage": {"output_tokens": 65, "input_tokens": 380}}\n\n' +
    'event: message_stop\ndata: {"type":"message_stop"}\n\n';

  it('parses the same however the bytes are split, even inside a UTF-8 character', () => {
    const bytes = Buffer.from(text);
    for (const size of [1, 3, 7, bytes.length]) {
      const tap = new SseTap();
      for (let i = 0; i < bytes.length; i += size) tap.push(bytes.subarray(i, i + size));
      expect(tap.summary()).toEqual({
        usage: { inputTokens: 380, outputTokens: 65, cacheCreationInputTokens: 4, cacheReadInputTokens: 5 },
        messageId: 'msg_1',
        model: 'm',
        stopReason: 'max_tokens',
        error: null,
        complete: true,
        malformed: false,
        events: 5,
      });
    }
  });

  it('reads the whole SSE framing: CRLF and CR line ends, comments, a BOM, multi-line data, fields without a space, events without data', () => {
    const framed =
      '\uFEFF: a comment\r\n' +
      'event:message_start\r\ndata: {"type":"message_start","message":{"id":"msg_2","model":"m2",\r\ndata: "usage":{"input_tokens":7,"output_tokens":1}}}\r\n\r\n' +
      'event: ping\rid: 3\rretry: 100\r\r' +
      'event: content_block_delta\ndata: {"type":"content_block_delta","delta":{"text":"ü"}}\n\n' +
      'event: nothing_but_a_name\n\n' +
      ': keep-alive\n\n' +
      'data: {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 9}}\r\n\r\n' +
      'event: message_stop\r\ndata: {"type":"message_stop"}\r\n\r\n';
    const bytes = Buffer.from(framed);
    for (const size of [1, 2, 5, bytes.length]) {
      const tap = new SseTap();
      for (let i = 0; i < bytes.length; i += size) tap.push(bytes.subarray(i, i + size));
      expect(tap.summary(), `split every ${size} bytes`).toEqual({
        usage: { inputTokens: 7, outputTokens: 9, cacheCreationInputTokens: 0, cacheReadInputTokens: 0 },
        messageId: 'msg_2',
        model: 'm2',
        stopReason: 'end_turn',
        error: null,
        complete: true,
        malformed: false,
        events: 4,
      });
    }
  });

  it('reads other framings with LF line ends too, event by event, and line ends that change mid-stream', () => {
    // Events not in the `event: NAME\ndata: JSON\n\n` form Anthropic sends take the full parser, one at a time.
    const framed =
      '\uFEFF: a comment\n' +
      'event:message_start\ndata: {"type":"message_start","message":{"id":"msg_3","model":"m3",\ndata: "usage":{"input_tokens":7,"output_tokens":1}}}\n\n' +
      'event: ping\nid: 3\nretry: 100\n\n' +
      'event: content_block_delta\ndata: {"type":"content_block_delta","delta":{"text":"ü"}}\n\n' +
      'data: {"type":"content_block_delta","delta":{"text":"x"}}\nevent: content_block_delta\n\n' +
      'event: nothing_but_a_name\n\n' +
      ': keep-alive\n\n\n' +
      'event: message_delta\ndata: {"type": "message_delta", "delta": {"stop_reason": "end_turn"},\ndata: "usage": {"output_tokens": 9}}\n\n' +
      'event: message_stop\ndata: {"type":"message_stop"}\n\n';
    // The first events with LF, the rest with CRLF.
    const cut = text.indexOf('event: message_delta');
    const mixed = text.slice(0, cut) + text.slice(cut).replaceAll('\n', '\r\n');
    const cases = [
      { bytes: Buffer.from(framed), summary: { usage: { inputTokens: 7, outputTokens: 9, cacheCreationInputTokens: 0, cacheReadInputTokens: 0 }, messageId: 'msg_3', model: 'm3', stopReason: 'end_turn', events: 5 } },
      { bytes: Buffer.from(mixed), summary: { usage: { inputTokens: 380, outputTokens: 65, cacheCreationInputTokens: 4, cacheReadInputTokens: 5 }, messageId: 'msg_1', model: 'm', stopReason: 'max_tokens', events: 5 } },
    ];
    for (const { bytes, summary } of cases) {
      for (const size of [1, 2, 5, 40, bytes.length]) {
        const tap = new SseTap();
        for (let i = 0; i < bytes.length; i += size) tap.push(bytes.subarray(i, i + size));
        expect(tap.summary(), `split every ${size} bytes`).toEqual({ ...summary, error: null, complete: true, malformed: false });
      }
    }
  });

  it('reads an event larger than the bytes it keeps between chunks (64 KB), then the events after it', () => {
    const big = `event: content_block_delta\ndata: ${JSON.stringify({ type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'x'.repeat(200_000) } })}\n\n`;
    const cut = text.indexOf('event: content_block_delta');
    const bytes = Buffer.from(text.slice(0, cut) + big + text.slice(cut));
    for (const size of [4096, 70_000, bytes.length]) {
      const tap = new SseTap();
      for (let i = 0; i < bytes.length; i += size) tap.push(bytes.subarray(i, i + size));
      expect(tap.summary(), `split every ${size} bytes`).toMatchObject({ usage: { inputTokens: 380, outputTokens: 65 }, stopReason: 'max_tokens', complete: true, malformed: false, events: 6 });
    }
  });

  it('flags a content event whose data is not a whole JSON object, in either framing', () => {
    for (const framing of ['event: content_block_delta\ndata: {"type":"content_block_delta"\n\n', 'data: {"type":"content_block_delta"\nevent: ping\n\n']) {
      const tap = new SseTap();
      tap.push(Buffer.from(framing));
      expect(tap.summary(), framing).toMatchObject({ malformed: true, events: 1 });
    }
  });

  it('flags an unparsable event instead of throwing', () => {
    const tap = new SseTap();
    tap.push(Buffer.from('event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_de\n\n'));
    expect(tap.summary()).toMatchObject({ malformed: true, complete: false });
  });
});
