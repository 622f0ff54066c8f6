import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildSimulator } from '../../src/simulator/index.js';
import type { Simulator } from '../../src/simulator/index.js';
import { BodyDestroyed, HIGH_WATER_MARK, UpstreamBody } from '../../src/upstream/body.js';
import type { BodySource } from '../../src/upstream/body.js';
import { Aborter, UpstreamClient } from '../../src/upstream/client.js';
import { messageBody } from './helpers.js';

/** What the body asked of its source, in order. */
class Source implements BodySource {
  readonly calls: string[] = [];
  reason: Error | undefined;
  pause(): void {
    this.calls.push('pause');
  }
  resume(): void {
    this.calls.push('resume');
  }
  abort(reason: Error): void {
    this.calls.push('abort');
    this.reason = reason;
  }
}

/** The body's events, in order, with each chunk's text. */
function watch(body: UpstreamBody): string[] {
  const seen: string[] = [];
  body.on('end', () => seen.push('end'));
  body.on('error', (err: Error) => seen.push(`error:${err.message}`));
  body.on('close', () => seen.push('close'));
  return seen;
}

const tick = () => new Promise((resolve) => setImmediate(resolve));

/** Every chunk of `body`, concatenated (rejects as its iterator throws). */
async function readAll(body: UpstreamBody): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of body) chunks.push(chunk);
  return Buffer.concat(chunks);
}

describe('UpstreamBody', () => {
  it('keeps chunks that arrive before its reader, then delivers them in order and ends', async () => {
    const body = new UpstreamBody(new Source());
    const seen = watch(body);
    body.push(Buffer.from('a'));
    body.push(Buffer.from('b'));
    body.finish();
    expect(body.readableLength).toBe(2);
    expect(seen).toEqual([]);
    body.read((chunk) => void seen.push(chunk.toString()));
    body.push(Buffer.from('ignored after the end'));
    expect(seen).toEqual([]); // delivered on the next tick, so listeners added now see `end`
    await tick();
    expect(seen).toEqual(['a', 'b', 'end', 'close']);
    expect(body.destroyed).toBe(true);
  });

  it('pauses delivery when its reader returns false, pauses the source past the high-water mark, and resumes both', async () => {
    const source = new Source();
    const body = new UpstreamBody(source);
    const seen = watch(body);
    const got: number[] = [];
    body.read((chunk) => {
      got.push(chunk.length);
      return false;
    });
    await tick();
    const half = Buffer.alloc(HIGH_WATER_MARK / 2);
    body.push(Buffer.alloc(1)); // delivered at once, then the reader pauses
    body.push(half);
    body.push(half); // two halves unread: the source is paused
    expect(got).toEqual([1]);
    expect(source.calls).toEqual(['pause']);
    body.resume();
    await tick();
    expect(got).toEqual([1, half.length]); // one chunk per resume: the reader paused again
    expect(source.calls).toEqual(['pause']);
    body.resume();
    await tick();
    expect(got).toEqual([1, half.length, half.length]);
    expect(source.calls).toEqual(['pause', 'resume']); // the queue is empty: the socket may flow
    body.finish();
    expect(seen).toEqual(['end', 'close']);
  });

  it('destroyed by its reader: drops what is unread, emits only close, and cancels the source', async () => {
    const source = new Source();
    const body = new UpstreamBody(source);
    const seen = watch(body);
    body.push(Buffer.from('unread'));
    body.destroy();
    body.destroy();
    expect(seen).toEqual(['close']);
    expect(source.calls).toEqual(['abort']);
    expect(source.reason).toBeInstanceOf(BodyDestroyed);
    expect(body.readableLength).toBe(0);
    body.fail(new Error('too late'));
    expect(seen).toEqual(['close']);
  });

  it('emits no event twice, whatever its source and reader do after it ended or failed (listeners use on)', async () => {
    const ended = new UpstreamBody(new Source());
    const endedSeen = watch(ended);
    ended.read(() => true);
    ended.finish();
    await tick();
    ended.finish();
    ended.fail(new Error('late'));
    ended.destroy();
    expect(endedSeen).toEqual(['end', 'close']);

    const failed = new UpstreamBody(new Source());
    const failedSeen = watch(failed);
    failed.read(() => true);
    failed.fail(new Error('reset'));
    failed.fail(new Error('again'));
    failed.finish();
    failed.destroy();
    await tick();
    expect(failedSeen).toEqual(['error:reset', 'close']);
  });

  it('ended and released on `end` (as the pipeline does): the release does not cancel the source', () => {
    const source = new Source();
    const body = new UpstreamBody(source);
    body.on('end', () => body.destroy());
    const seen = watch(body);
    body.read(() => true);
    body.finish();
    return tick().then(() => {
      expect(seen).toEqual(['end', 'close']);
      expect(source.calls).toEqual([]);
    });
  });

  it('failed by the source: error then close; its reader gets the error', async () => {
    const body = new UpstreamBody(new Source());
    const seen = watch(body);
    const all = readAll(body);
    body.push(Buffer.from('part'));
    body.fail(new Error('socket hang up'));
    await expect(all).rejects.toThrow('socket hang up');
    expect(seen).toEqual(['error:socket hang up', 'close']);
  });

  it('fails without an error listener without throwing', () => {
    const body = new UpstreamBody(new Source());
    let closed = false;
    body.once('close', () => (closed = true));
    expect(() => body.fail(new Error('nobody listens'))).not.toThrow();
    expect(closed).toBe(true);
  });

  it('as an async iterator: yields every chunk, throws the failure, and destroys the body when left early', async () => {
    const body = new UpstreamBody(new Source());
    const reading = (async () => {
      const got: string[] = [];
      for await (const chunk of body) got.push(chunk.toString());
      return got;
    })();
    body.push(Buffer.from('x'));
    await tick();
    body.push(Buffer.from('y'));
    body.push(Buffer.from('z'));
    body.finish();
    expect(await reading).toEqual(['x', 'y', 'z']);

    const failing = new UpstreamBody(new Source());
    const failed = (async () => {
      for await (const _chunk of failing);
    })();
    failing.push(Buffer.from('x'));
    failing.fail(new Error('broken'));
    await expect(failed).rejects.toThrow('broken');

    const cut = new UpstreamBody(new Source());
    const cutRead = readAll(cut);
    cut.push(Buffer.from('x'));
    await tick();
    cut.destroy(); // closed before its end, by someone else than this reader
    await expect(cutRead).rejects.toMatchObject({ code: 'ERR_STREAM_PREMATURE_CLOSE' });

    const source = new Source();
    const left = new UpstreamBody(source);
    left.push(Buffer.from('first'));
    left.push(Buffer.from('second'));
    for await (const chunk of left) {
      expect(chunk.toString()).toBe('first');
      break;
    }
    expect(left.destroyed).toBe(true);
    expect(source.calls).toEqual(['abort']);
  });
});

describe('UpstreamClient.send (undici dispatch) against the simulator', () => {
  const KEY = 'sk-sim-body';
  let sim: Simulator;
  let baseUrl: string;
  let client: UpstreamClient;
  const headers = { 'x-api-key': KEY, 'anthropic-version': '2023-06-01', 'content-type': 'application/json' };

  beforeAll(async () => {
    sim = await buildSimulator({ keys: [KEY] });
    baseUrl = await sim.listen();
    client = new UpstreamClient({ baseUrl });
  });
  afterAll(async () => {
    await client.close();
    await sim.close();
  });

  it('delivers a long stream byte for byte to a slow reader (upstream paused and resumed)', async () => {
    // The simulator echoes the prompt: 20,000 words in 4000 deltas, about 1 MB of events.
    const body = messageBody({ stream: true, max_tokens: 30_000, messages: [{ role: 'user', content: 'word '.repeat(20_000) }] });
    const fault = JSON.stringify({ deltas: 4000 });
    const direct = await request(`${baseUrl}/v1/messages`, { method: 'POST', headers: { ...headers, 'x-sim-fault': fault }, body });
    const expected = normalise(await direct.body.text());
    expect(expected.length).toBeGreaterThan(4 * HIGH_WATER_MARK);

    const response = await client.send({ method: 'POST', path: '/v1/messages', headers: { ...headers, 'x-sim-fault': fault }, body });
    expect(response.status).toBe(200);
    expect(response.headers['content-type']).toMatch(/^text\/event-stream/);
    const reply = response.body!;
    // Read nothing for a while: the simulator's whole answer cannot fit in what is kept.
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(reply.readableLength).toBeLessThan(2 * HIGH_WATER_MARK);
    const chunks: Buffer[] = [];
    for await (const chunk of reply) {
      chunks.push(chunk);
      if (chunks.length % 20 === 0) await tick();
    }
    expect(normalise(Buffer.concat(chunks).toString())).toBe(expected);
  });

  it('streamIf: answers it refuses are read whole (bytes), the others as they arrive (body)', async () => {
    const call = { method: 'POST', path: '/v1/messages', headers, body: messageBody() };
    const direct = await request(`${baseUrl}/v1/messages`, { method: 'POST', headers, body: messageBody() });
    const expected = normalise(await direct.body.text());
    const whole = await client.send({ ...call, streamIf: () => false });
    expect(whole.body).toBeUndefined();
    expect(normalise(whole.bytes!.toString())).toBe(expected);
    const flowing = await client.send({ ...call, streamIf: (status) => status === 200 });
    expect(flowing.bytes).toBeUndefined();
    expect(normalise((await readAll(flowing.body!)).toString())).toBe(expected);

    const early = new Aborter();
    const pending = client.send({ ...call, headers: { ...headers, 'x-sim-fault': JSON.stringify({ latencyMs: 2000 }) }, signal: early, streamIf: () => false });
    early.abort(new Error('client left'));
    await expect(pending).rejects.toThrow('client left');
  });

  it("the client's signal: before the answer the send rejects with its reason; after, the body fails with it", async () => {
    const body = messageBody({ stream: true });
    const early = new Aborter();
    const pending = client.send({ method: 'POST', path: '/v1/messages', headers: { ...headers, 'x-sim-fault': JSON.stringify({ latencyMs: 2000 }) }, body, signal: early });
    early.abort(new Error('client left early'));
    await expect(pending).rejects.toThrow('client left early');

    const late = new Aborter();
    const response = await client.send({ method: 'POST', path: '/v1/messages', headers: { ...headers, 'x-sim-fault': JSON.stringify({ deltas: 50, deltaDelayMs: 20 }) }, body, signal: late });
    const seen = watch(response.body!);
    const reading = readAll(response.body!);
    late.abort(new Error('client left mid-stream'));
    await expect(reading).rejects.toThrow('client left mid-stream');
    expect(seen).toEqual(['error:client left mid-stream', 'close']);
  });
});

/** Message ids and times differ between two answers of the simulator. */
function normalise(text: string): string {
  return text.replace(/msg_\w+/g, 'msg_X').replace(/"(created_at|id)":"[^"]*"/g, '"$1":"X"');
}
