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

export function relayStream(body: UpstreamBody, signal: CancelSignal, hooks: RelayHooks): StreamRelay {
  const tap = new SseTap();
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
        yield chunk;
      }
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
        const flowing = res.write(chunk);
        process.nextTick(tapChunk, chunk);
        if (flowing) return true;
        res.once('drain', () => body.resume());
        return false;
      });
      body.on('end', () => {
        if (!res.destroyed) res.end();
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
