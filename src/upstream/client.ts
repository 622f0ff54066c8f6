/**
 * The HTTP client to Anthropic (or the simulator): one undici Pool per base URL with
 * keep-alive. `send` is a single attempt, no retries, no header policy: it sends exactly what
 * it is given (see headers.ts for what that should be, resilient.ts for retries). It uses
 * undici's dispatch handler API rather than `request()`: the body reaches its reader through
 * an UpstreamBody (body.ts) instead of a Readable stream and a promise per response.
 */
import { EventEmitter } from 'node:events';
import type { IncomingHttpHeaders } from 'node:http';
import { Pool } from 'undici';
import type { Dispatcher } from 'undici';
import { UpstreamBody } from './body.js';
import type { BodySource } from './body.js';

export { UpstreamBody };

export interface UpstreamClientOptions {
  /** Anthropic's API origin, or the simulator's http://127.0.0.1:PORT; a path prefix is kept. */
  baseUrl: string;
  /** TCP+TLS connect timeout per attempt (10 s). */
  connectTimeoutMs?: number;
  /** Time to response headers per attempt (60 s; the call's deadline usually fires first). */
  headersTimeoutMs?: number;
  /** Longest silence between body chunks (UPSTREAM_TIMEOUT_MS, 600 s). */
  bodyTimeoutMs?: number;
  /** Sockets open to upstream at most (128); each running stream holds one. UPSTREAM_CONNECTIONS. */
  connections?: number;
  /** Idle keep-alive per socket (30 s). */
  keepAliveTimeoutMs?: number;
}

export interface UpstreamRequest {
  method: string;
  /** Path including the query string, e.g. `/v1/messages?beta=true`. */
  path: string;
  /** Final headers (credentials included). */
  headers: Record<string, string>;
  body: Buffer | undefined;
  /**
   * Aborting destroys the request, or the response body once it flows. An AbortSignal, or
   * an Aborter (an EventEmitter, much cheaper to create: one per attempt).
   */
  signal?: AbortSignal | Aborter;
  /**
   * Which answers are read as they arrive: for those, `send` resolves at the headers with a
   * `body` to read; every other answer is read whole first and resolves with its `bytes`.
   * Every answer is read as it arrives when absent.
   */
  streamIf?: (status: number, headers: IncomingHttpHeaders) => boolean;
}

/**
 * What the chat pipeline and the upstream code need of a cancellation signal. An AbortSignal
 * is one (the WebSocket door uses those); so is an Aborter.
 */
export interface CancelSignal {
  readonly aborted: boolean;
  readonly reason: unknown;
  addEventListener(type: 'abort', listener: () => void, options?: { once?: boolean }): void;
  removeEventListener(type: 'abort', listener: () => void): void;
  throwIfAborted(): void;
}

/**
 * A cancellation signal and its controller in one object: an EventEmitter with `aborted` and
 * `reason` that emits 'abort', which undici also accepts as a request's signal. Creating an
 * AbortController costs several microseconds (EventTarget); this costs a fraction of one,
 * and the HTTP door and every upstream attempt make one per request.
 */
export class Aborter extends EventEmitter implements CancelSignal {
  aborted = false;
  reason: unknown = undefined;

  abort(reason: unknown): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = reason;
    this.emit('abort');
  }

  addEventListener(type: 'abort', listener: () => void, options?: { once?: boolean }): void {
    if (options?.once) this.once(type, listener);
    else this.on(type, listener);
  }

  removeEventListener(type: 'abort', listener: () => void): void {
    this.off(type, listener);
  }

  throwIfAborted(): void {
    if (this.aborted) throw this.reason;
  }
}

/** An answer: read as it arrives (`body`), or whole (`bytes`), as the request's `streamIf` chose. */
export type UpstreamResponse =
  | { status: number; headers: IncomingHttpHeaders; body: UpstreamBody; bytes?: undefined }
  | { status: number; headers: IncomingHttpHeaders; bytes: Buffer; body?: undefined };

/**
 * One request's dispatch handler (undici's handler API): resolves `send` with the status and
 * headers, then feeds the body; or, for an answer read whole, resolves with its bytes at the
 * end. Until `send` resolves, the client's signal cancels the request (`send` rejects with
 * the signal's reason); after, it fails the body with that reason (as `request()` did).
 */
class Exchange implements Dispatcher.DispatchHandler, BodySource {
  private controller: Dispatcher.DispatchController | null = null;
  private body: UpstreamBody | null = null;
  /** The answer being read whole: its status, headers and chunks so far. */
  private whole: { status: number; headers: IncomingHttpHeaders; chunks: Buffer[] } | null = null;
  private reason: Error | null = null;
  private settled = false;

  constructor(
    private readonly signal: AbortSignal | Aborter | undefined,
    private readonly streamIf: UpstreamRequest['streamIf'],
    private readonly resolve: (response: UpstreamResponse) => void,
    private readonly reject: (err: unknown) => void,
  ) {
    if (!signal) return;
    if (signal.aborted) this.reason = abortReason(signal);
    else signal.addEventListener('abort', this.onAbort, { once: true });
  }

  private readonly onAbort = (): void => {
    this.reason = abortReason(this.signal!);
    this.controller?.abort(this.reason);
  };

  private done(): void {
    if (this.settled) return;
    this.settled = true;
    this.signal?.removeEventListener('abort', this.onAbort);
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    if (this.reason) controller.abort(this.reason);
  }

  onResponseStart(_controller: Dispatcher.DispatchController, statusCode: number, headers: IncomingHttpHeaders): void {
    // 1xx informational answers carry no body; the real one follows.
    if (statusCode < 200) return;
    if (this.streamIf && !this.streamIf(statusCode, headers)) {
      this.whole = { status: statusCode, headers, chunks: [] };
      return;
    }
    this.body = new UpstreamBody(this);
    this.resolve({ status: statusCode, headers, body: this.body });
  }

  onResponseData(_controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.body) this.body.push(chunk);
    else this.whole?.chunks.push(chunk);
  }

  onResponseEnd(): void {
    this.done();
    if (this.body) return this.body.finish();
    const whole = this.whole;
    if (!whole) return this.reject(new Error('upstream answer ended before its headers'));
    const { chunks } = whole;
    this.resolve({ status: whole.status, headers: whole.headers, bytes: chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks) });
  }

  onResponseError(_controller: Dispatcher.DispatchController, err: Error): void {
    this.done();
    if (this.body) this.body.fail(err);
    else this.reject(err);
  }

  // BodySource: what the body asks of the response.
  pause(): void {
    this.controller?.pause();
  }

  resume(): void {
    this.controller?.resume();
  }

  abort(reason: Error): void {
    this.done();
    this.controller?.abort(reason);
  }
}

function abortReason(signal: AbortSignal | Aborter): Error {
  const reason: unknown = signal.reason;
  return reason instanceof Error ? reason : Object.assign(new Error('This operation was aborted'), { name: 'AbortError', cause: reason });
}

/** A pool of keep-alive connections to one upstream origin. */
export class UpstreamClient {
  readonly baseUrl: string;
  private readonly pool: Pool;
  private readonly prefix: string;

  constructor(options: UpstreamClientOptions) {
    const url = new URL(options.baseUrl);
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new TypeError('upstream baseUrl must be http(s)');
    this.baseUrl = options.baseUrl;
    this.prefix = url.pathname.replace(/\/+$/, '');
    this.pool = new Pool(url.origin, {
      connections: options.connections ?? 128,
      connectTimeout: options.connectTimeoutMs ?? 10_000,
      headersTimeout: options.headersTimeoutMs ?? 60_000,
      bodyTimeout: options.bodyTimeoutMs ?? 600_000,
      keepAliveTimeout: options.keepAliveTimeoutMs ?? 30_000,
    });
  }

  /** One attempt. Rejects on connection errors, timeouts and abort; any HTTP status resolves. */
  send(request: UpstreamRequest): Promise<UpstreamResponse> {
    return new Promise((resolve, reject) => {
      this.pool.dispatch(
        {
          method: request.method as Dispatcher.HttpMethod,
          path: `${this.prefix}${request.path.startsWith('/') ? '' : '/'}${request.path}`,
          // undici frames the body itself (content-length from the Buffer's length).
          headers: request.headers,
          body: request.body ?? null,
        },
        new Exchange(request.signal, request.streamIf, resolve, reject),
      );
    });
  }

  /** Closes idle sockets and waits for requests in flight. */
  async close(): Promise<void> {
    await this.pool.close();
  }

  /** Cuts every socket now (shutdown timeout). */
  async destroy(): Promise<void> {
    await this.pool.destroy();
  }
}
