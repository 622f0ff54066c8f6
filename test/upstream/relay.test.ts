import { createServer } from 'node:http';
import type { Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { request } from 'undici';
import { afterEach, expect, it, vi } from 'vitest';
import { relayStream } from '../../src/chat/relay.js';
import { Aborter } from '../../src/upstream/client.js';
import { UpstreamBody } from '../../src/upstream/body.js';
import { SseTap } from '../../src/upstream/sse.js';
import type { StreamSummary } from '../../src/upstream/sse.js';

const events =
  'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_r","model":"m","usage":{"input_tokens":12,"output_tokens":1}}}\n\n' +
  'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"hi"}}\n\n' +
  'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":7}}\n\n' +
  'event: message_stop\ndata: {"type":"message_stop"}\n\n';

let server: Server | undefined;
afterEach(async () => {
  vi.restoreAllMocks();
  await new Promise((resolve) => server?.close(resolve));
  server = undefined;
});

/** Bytes the client's socket had handed to the kernel when the tap read a chunk, and whether it was corked. */
interface Held {
  sent: number;
  corked: number;
}

/**
 * An HTTP server relaying `first` to each client, then (a turn of the event loop later)
 * `second` and the end, as when upstream's bytes come in two reads; `read` gets what the
 * socket held each time the tap read a chunk, `ended` what the relay settled.
 */
async function relayServer(first: string, second: string, read: (held: Held) => void, ended: (summary: StreamSummary, failed: boolean) => void): Promise<string> {
  server = createServer((_req, res: ServerResponse) => {
    const socket = res.socket!;
    const push = SseTap.prototype.push;
    vi.spyOn(SseTap.prototype, 'push').mockImplementation(function (this: SseTap, chunk: Uint8Array) {
      read({ sent: socket.bytesWritten - socket.writableLength, corked: socket.writableCorked });
      push.call(this, chunk);
    });
    const body = new UpstreamBody({ pause() {}, resume() {}, abort() {} });
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    void relayStream(body, new Aborter(), { onChunk() {}, onBroken() {}, onEnd: ended }).pipeTo(res);
    body.push(Buffer.from(first));
    setImmediate(() => {
      body.push(Buffer.from(second));
      body.finish();
    });
  });
  await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server!.address() as AddressInfo).port}`;
}

it('passes each chunk\'s whole events on before the tap reads it, and settles the end with every event read', async () => {
  // Split inside an event, so the tap must carry its first half over to the second chunk,
  // and the relay holds that half back until the event is whole.
  const cut = events.indexOf('"usage":{"output_tokens":7}');
  const whole = events.lastIndexOf('\n\n', cut) + 2;
  const held: Held[] = [];
  let settled: { summary: StreamSummary; failed: boolean } | undefined;
  const url = await relayServer(events.slice(0, cut), events.slice(cut), (h) => held.push(h), (summary, failed) => (settled = { summary, failed }));
  const res = await request(url);
  expect(await res.body.text()).toBe(events);
  await expect.poll(() => settled).toBeDefined();
  // Node corks a response's socket at a tick's first write and sends what it holds on the
  // next tick (or at end()): by the time the tap read each chunk, that chunk's whole events
  // (after the headers and the chunks before it) had been sent; the first chunk's unfinished
  // event went with the second.
  expect(held).toEqual([
    { sent: expect.any(Number), corked: 0 },
    { sent: expect.any(Number), corked: 0 },
  ]);
  expect(held[0]!.sent).toBeGreaterThan(whole);
  expect(held[1]!.sent - held[0]!.sent).toBeGreaterThanOrEqual(events.length - whole);
  expect(held[1]!.sent).toBeGreaterThan(events.length);
  expect(settled!.failed).toBe(false);
  expect(settled!.summary).toMatchObject({
    usage: { inputTokens: 12, outputTokens: 7, cacheCreationInputTokens: 0, cacheReadInputTokens: 0 },
    messageId: 'msg_r',
    stopReason: 'end_turn',
    complete: true,
    malformed: false,
    events: 4,
  });
});
