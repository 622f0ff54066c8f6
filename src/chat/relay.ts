/**
 * A committed upstream stream relayed to its client: the bytes passed on as they arrive, read
 * alongside by the SSE tap (upstream/sse.ts), and ended once, however the stream ends
 * (upstream's end, upstream's failure, the client leaving). Read it one way: `pipeTo` (the
 * HTTP door: written to the response with backpressure, no iterator layers) or `chunks` (the
 * WebSocket door: an async iterator).
 */
import type { Writable } from 'node:stream';
import type { CancelSignal, UpstreamBody } from '../upstream/client.js';
import { SseTap, sseErrorEvent } from '../upstream/sse.js';
import type { StreamSummary } from '../upstream/sse.js';

export interface StreamRelay {
  /** The SSE bytes as an iterator; the same one on every call. */
  chunks(): AsyncIterable<Uint8Array>;
  /** Writes the SSE bytes to `res` with backpressure; resolves when the stream has ended. */
  pipeTo(res: Writable): Promise<void>;
  /** True when upstream's first bytes have already arrived (buffered, not yet read). */
  ready(): boolean;
}

export interface RelayHooks {
  /** Before each chunk is passed on. */
  onChunk(): void;
  /** Upstream's body failed while the client was still there; the relay then ends with a clean SSE error event. */
  onBroken(err: unknown): void;
  /** Once, however the stream ended: what the tap read, and whether upstream's body failed. */
  onEnd(summary: StreamSummary, failed: boolean): void;
}

const LF = 0x0a;
const CR = 0x0d;

/**
 * Passes on whole SSE events only: what `push` returns ends where an event ends (a blank
 * line), and the first bytes of an event not yet whole wait for the rest. So when upstream
 * breaks inside an event, the clean `event: error` the relay ends with is not glued to half
 * an event (a client's parser would read one broken event and miss the error). Anthropic
 * writes whole events, so in practice nothing waits; and no SSE client can act on part of an
 * event before its blank line anyway. Streams with CR line ends are passed on as they come.
 */
class WholeEvents {
  private held: Buffer | undefined;

  /** The bytes of `chunk` (after what was held) that end at an event's end; undefined when none do yet. */
  push(chunk: Uint8Array): Uint8Array | undefined {
    const n = chunk.length;
    // The usual case: nothing held and the chunk ends an event.
    if (this.held === undefined && n >= 2 && chunk[n - 1] === LF && chunk[n - 2] === LF) return chunk;
    const buf = this.held === undefined ? Buffer.from(chunk.buffer, chunk.byteOffset, n) : Buffer.concat([this.held, chunk]);
    this.held = undefined;
    if (buf.indexOf(CR) !== -1) return buf;
    const blank = buf.lastIndexOf('\n\n');
    const end = blank === -1 ? 0 : blank + 2;
    if (end === buf.length) return buf;
    this.held = Buffer.from(buf.subarray(end)); // a copy: it outlives this chunk
    return end > 0 ? buf.subarray(0, end) : undefined;
  }

  /** What waits when the stream ends cleanly (an unfinished last event, passed on as it is). */
  rest(): Buffer | undefined {
    const held = this.held;
    this.held = undefined;
    return held;
  }
}

export function relayStream(body: UpstreamBody, signal: CancelSignal, hooks: RelayHooks): StreamRelay {
  const tap = new SseTap();
  const whole = new WholeEvents();
  let failed = false;
  let finished = false;
  /** Called when upstream's body fails; returns the clean SSE error event to end with, if any. */
  const broken = (err: unknown): Buffer | undefined => {
    if (signal.aborted) return undefined;
    failed = true;
    hooks.onBroken(err);
    return Buffer.from(sseErrorEvent('api_error', 'The upstream connection failed mid-stream; the reply is incomplete.'));
  };
  const finish = (): void => {
    if (finished) return;
    finished = true;
    hooks.onEnd(tap.summary(), failed);
  };
  const tapChunk = (chunk: Uint8Array): void => tap.push(chunk);
  const relay = async function* (): AsyncGenerator<Uint8Array> {
    try {
      for await (const chunk of body as AsyncIterable<Uint8Array>) {
        hooks.onChunk();
        tap.push(chunk);
        const events = whole.push(chunk);
        if (events) yield events;
      }
      const rest = whole.rest();
      if (rest) yield rest;
    } catch (err) {
      const tail = broken(err);
      if (tail) yield tail;
    } finally {
      finish();
    }
  };
  /**
   * The HTTP door. Node holds a response's writes until the next tick (it corks the socket at
   * the first write of a tick), so the tap reads each chunk, and the stream's end is settled,
   * on the tick after the write that queued them: the bytes leave first and the client never
   * waits for the tap. Both run in the order they were queued, so the end is settled with
   * every chunk read.
   */
  const pipeTo = (res: Writable): Promise<void> =>
    new Promise((resolve) => {
      let ended = false;
      const done = () => {
        if (ended) return;
        ended = true;
        process.nextTick(finish);
        resolve();
      };
      body.read((chunk) => {
        hooks.onChunk();
        const events = whole.push(chunk);
        const flowing = events === undefined || res.write(events);
        // Queued after the write, so after Node's uncork of the socket: the bytes leave first.
        process.nextTick(tapChunk, chunk);
        if (flowing) return true;
        res.once('drain', () => body.resume());
        return false;
      });
      body.on('end', () => {
        if (!res.destroyed) res.end(whole.rest());
        done();
      });
      body.on('error', (err: unknown) => {
        const tail = broken(err);
        if (!res.destroyed) res.end(tail);
        done();
      });
      res.once('close', () => {
        if (ended) return;
        body.destroy();
        done();
      });
      // A body destroyed without 'end' or 'error' (cancelled upstream) still finishes.
      body.on('close', () => {
        if (ended) return;
        if (!res.destroyed) res.end();
        done();
      });
      if (res.destroyed) {
        body.destroy();
        done();
      }
    });
  let relayed: AsyncGenerator<Uint8Array> | undefined; // made when first asked for (the WebSocket door)
  return {
    chunks: () => (relayed ??= relay()),
    pipeTo,
    ready: () => body.readableLength > 0,
  };
}
