/**
 * An upstream response body, fed by undici's dispatch handler (client.ts) without a Node.js
 * stream in between: each chunk is handed to the one reader as it arrives. Without the
 * promise and the Readable per answer that undici's `request()` makes, the gateway served 6%
 * more non-streaming and 2% more streaming requests (docs/benchmarks.md, session 10).
 *
 * Events: `end` (the whole body arrived and was read), `error` (upstream's connection or
 * undici failed, or the request was aborted with a reason), then always `close`, once. A
 * body destroyed by its reader (`destroy()`) emits only `close`. No event comes twice, so
 * listeners use `on` (`once` wraps and removes each listener: about a microsecond a stream).
 *
 * Bytes that arrive before `read()` is called, or while the reader is paused, are kept;
 * past HIGH_WATER_MARK bytes upstream's socket is paused until they are read.
 */
import { EventEmitter } from 'node:events';

/** Bytes kept unread before upstream's socket is paused (Node's default for byte streams). */
export const HIGH_WATER_MARK = 64 * 1024;

/** What the body tells its source (the dispatch handler in client.ts). */
export interface BodySource {
  /** Stop reading from the socket until `resume`. */
  pause(): void;
  resume(): void;
  /** Cancel the response (the socket is closed). */
  abort(reason: Error): void;
}

/** A chunk for the reader; returning false pauses delivery until `resume()`. */
export type BodyReader = (chunk: Buffer) => boolean | void;

export class UpstreamBody extends EventEmitter {
  /** Set once nothing more will be read: ended, failed or destroyed (only `close` may follow). */
  destroyed = false;
  private readonly queue: Buffer[] = [];
  private queued = 0;
  private reader: BodyReader | null = null;
  private paused = false;
  /** A delivery of the queue is scheduled. */
  private flushing = false;
  /** Upstream sent the whole body (`end` follows once the queue is read). */
  private complete = false;
  private sourcePaused = false;

  constructor(private readonly source: BodySource) {
    super();
  }

  /** Bytes arrived and not yet handed to the reader. */
  get readableLength(): number {
    return this.queued;
  }

  /**
   * Hands every chunk to `reader`: those already here on the next tick, later ones as they
   * arrive. One reader per body.
   */
  read(reader: BodyReader): void {
    if (this.reader) throw new Error('an upstream body has one reader');
    this.reader = reader;
    this.scheduleFlush();
  }

  /** Delivers again after the reader returned false. */
  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    this.scheduleFlush();
  }

  /** Cancels the response: upstream's socket is closed, unread bytes dropped, `close` emitted. */
  destroy(): void {
    if (this.destroyed) return;
    this.close();
    this.source.abort(new BodyDestroyed());
  }

  /** The chunks as an async iterator (the WebSocket door, tests); leaving early destroys the body. */
  async *[Symbol.asyncIterator](): AsyncGenerator<Buffer> {
    const ready: Buffer[] = [];
    let ended = false;
    let closed = false;
    let failure: unknown = null;
    let wake: (() => void) | null = null;
    const signal = () => {
      const w = wake;
      wake = null;
      w?.();
    };
    this.once('end', () => {
      ended = true;
      signal();
    });
    this.once('error', (err: unknown) => {
      failure = err;
      signal();
    });
    this.once('close', () => {
      closed = true;
      signal();
    });
    // One chunk at a time: delivery pauses until the consumer has taken it.
    this.read((chunk) => {
      ready.push(chunk);
      signal();
      return false;
    });
    try {
      for (;;) {
        const chunk = ready.shift();
        if (chunk) {
          this.resume();
          yield chunk;
          continue;
        }
        if (failure) throw failure;
        if (ended) return;
        if (closed) throw prematureClose();
        await new Promise<void>((resolve) => (wake = resolve));
      }
    } finally {
      if (!ended) this.destroy();
    }
  }

  // The source's side (client.ts).

  /** A chunk from upstream (its socket is paused through the source once too much is unread). */
  push(chunk: Buffer): void {
    if (this.destroyed || this.complete) return;
    if (this.reader && !this.paused && this.queued === 0 && !this.flushing) {
      if (this.reader(chunk) === false) this.paused = true;
      return;
    }
    this.queue.push(chunk);
    this.queued += chunk.length;
    if (this.queued >= HIGH_WATER_MARK && !this.sourcePaused) {
      this.sourcePaused = true;
      this.source.pause();
    }
  }

  /** Upstream sent the whole body. */
  finish(): void {
    if (this.destroyed) return;
    this.complete = true;
    if (this.queued === 0 && this.reader && !this.flushing) this.end();
  }

  /** The response failed (connection error, timeout, abort with a reason). */
  fail(err: unknown): void {
    if (this.destroyed) return;
    this.destroyed = true;
    if (this.listenerCount('error') > 0) this.emit('error', err);
    this.close();
  }

  private scheduleFlush(): void {
    if (this.flushing || this.destroyed) return;
    this.flushing = true;
    process.nextTick(() => this.flush());
  }

  /** Delivers the queue while the reader takes it, then resumes upstream or ends. */
  private flush(): void {
    this.flushing = false;
    const reader = this.reader;
    if (this.destroyed || !reader) return;
    while (!this.paused && this.queue.length > 0) {
      const chunk = this.queue.shift()!;
      this.queued -= chunk.length;
      if (reader(chunk) === false) this.paused = true;
      if (this.destroyed) return;
    }
    if (this.queue.length > 0) return;
    if (this.complete) this.end();
    else if (this.sourcePaused) {
      this.sourcePaused = false;
      this.source.resume();
    }
  }

  /** Destroyed first, so that a reader releasing the body on `end` does not cancel it. */
  private end(): void {
    this.destroyed = true;
    this.emit('end');
    this.close();
  }

  private close(): void {
    this.destroyed = true;
    this.queue.length = 0;
    this.queued = 0;
    this.emit('close');
  }
}

/** The reason given to undici when a reader destroys its body. */
export class BodyDestroyed extends Error {
  constructor() {
    super('upstream body destroyed by its reader');
    this.name = 'BodyDestroyed';
  }
}

function prematureClose(): Error {
  return Object.assign(new Error('upstream body closed before its end'), { code: 'ERR_STREAM_PREMATURE_CLOSE' });
}
