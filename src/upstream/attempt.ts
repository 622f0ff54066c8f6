/**
 * One attempt against upstream with one key, and the verdict on its answer. No retries here:
 * `callUpstream` (resilient.ts) decides what to do with each verdict.
 *
 * Classification (REFERENCE.md, SDK retry rules):
 * - retryable: connection errors, timeouts, a body cut short or unparsable, 408, 409, 429,
 *   500, 502, 503, 504, 529 and anything else ≥ 500; `x-should-retry: true|false` from
 *   upstream overrides the status rule, as it does for the SDKs;
 * - key rejected: 401 (the key is invalid), 402 (its billing) and 403 (its permissions). The
 *   client's own credentials never reach upstream, so these are about OUR key;
 * - passthrough: every other status (400, 404, 413, …): the client's request is at fault and
 *   gets upstream's answer unmodified (status, body bytes, allowed headers);
 * - commit: a 2xx. An event stream commits on its headers; any other body is read whole first
 *   (see the commit rule in retry.ts).
 */
import type { IncomingHttpHeaders } from 'node:http';
import { Aborter } from './client.js';
import type { CancelSignal, UpstreamBody, UpstreamClient, UpstreamResponse } from './client.js';
import { headerValue } from './headers.js';

export const RETRYABLE_STATUSES: ReadonlySet<number> = new Set([408, 409, 429, 500, 502, 503, 504, 529]);
export const KEY_REJECTED_STATUSES: ReadonlySet<number> = new Set([401, 402, 403]);

/** The attempt was cut by the call's first-byte deadline. */
export class DeadlineExceeded extends Error {
  constructor() {
    super('upstream deadline exceeded');
    this.name = 'DeadlineExceeded';
  }
}

export type AttemptVerdict =
  | { kind: 'stream'; status: number; headers: IncomingHttpHeaders; body: UpstreamBody; detach: () => void }
  | { kind: 'buffered'; status: number; headers: IncomingHttpHeaders; bytes: Buffer; json: unknown }
  | { kind: 'passthrough'; status: number; headers: IncomingHttpHeaders; bytes: Buffer }
  | { kind: 'key_rejected'; status: number; reason: string }
  | { kind: 'retry'; status: number | null; reason: string; hintHeaders: IncomingHttpHeaders | null; rateLimited: boolean };

export interface AttemptInput {
  client: UpstreamClient;
  method: string;
  path: string;
  headers: Record<string, string>;
  body: Buffer | undefined;
  /** The client's signal: aborting it cancels the attempt (and a committed stream). */
  signal: CancelSignal | undefined;
  /** Milliseconds left before the first-byte deadline. */
  remainingMs: number;
}

/** The answers an attempt commits to on their headers: a 2xx event stream. */
function isCommittedStream(status: number, headers: IncomingHttpHeaders): boolean {
  return status >= 200 && status < 300 && (headerValue(headers['content-type']) ?? '').toLowerCase().startsWith('text/event-stream');
}

function isJson(headers: IncomingHttpHeaders): boolean {
  return (headerValue(headers['content-type']) ?? '').toLowerCase().includes('json');
}

function errorName(err: unknown): string {
  const e = err as { code?: unknown; name?: unknown };
  if (typeof e?.code === 'string') return e.code.toLowerCase();
  return typeof e?.name === 'string' ? e.name : 'connection_error';
}

/**
 * Runs one attempt. Resolves to a verdict; rejects only with the client's abort reason (client
 * gone) or `DeadlineExceeded`. A `stream` verdict's body keeps following the client's signal
 * until it closes; call `detach()` if you stop caring earlier. (A `then` on the send, not an
 * async function: one promise per attempt instead of two.)
 */
export function runAttempt(input: AttemptInput): Promise<AttemptVerdict> {
  const controller = new Aborter();
  const onClientAbort = () => controller.abort(input.signal?.reason);
  input.signal?.addEventListener('abort', onClientAbort, { once: true });
  const detach = () => input.signal?.removeEventListener('abort', onClientAbort);
  if (input.signal?.aborted) onClientAbort();
  let deadlineHit = false;
  const timer = setTimeout(() => {
    deadlineHit = true;
    controller.abort(new DeadlineExceeded());
  }, Math.max(0, input.remainingMs));
  timer.unref?.();
  /** Ends the attempt's hold on the client's signal and the deadline, unless a stream committed. */
  const done = () => {
    clearTimeout(timer);
    detach();
  };

  // Any other answer is read whole before send resolves (a failure while reading rejects).
  let sent: Promise<UpstreamResponse>;
  try {
    sent = input.client.send({ method: input.method, path: input.path, headers: input.headers, body: input.body, signal: controller, streamIf: isCommittedStream });
  } catch (err) {
    sent = Promise.reject(err); // a failure like any other (a retry verdict), never a throw
  }
  return sent.then(
    (response): AttemptVerdict => {
      const { status, headers, body, bytes } = response;
      if (body) {
        clearTimeout(timer);
        body.on('close', detach);
        return { kind: 'stream', status, headers, body, detach };
      }
      done();
      return verdictOf(status, headers, bytes);
    },
    (err: unknown): AttemptVerdict => {
      done();
      if (input.signal?.aborted) throw input.signal.reason;
      if (deadlineHit) throw new DeadlineExceeded();
      return { kind: 'retry', status: null, reason: errorName(err), hintHeaders: null, rateLimited: false };
    },
  );
}

/** The verdict on an answer read whole. */
function verdictOf(status: number, headers: IncomingHttpHeaders, bytes: Buffer): AttemptVerdict {
  if (status >= 200 && status < 300) {
    let json: unknown = undefined;
    if (isJson(headers)) {
      try {
        json = JSON.parse(bytes.toString('utf8'));
      } catch {
        return { kind: 'retry', status, reason: 'malformed_body', hintHeaders: null, rateLimited: false };
      }
    }
    return { kind: 'buffered', status, headers, bytes, json };
  }
  if (KEY_REJECTED_STATUSES.has(status)) return { kind: 'key_rejected', status, reason: `status_${status}` };
  const should = headerValue(headers['x-should-retry'])?.trim().toLowerCase();
  const retryable = should === 'true' ? true : should === 'false' ? false : RETRYABLE_STATUSES.has(status) || status >= 500;
  if (retryable) return { kind: 'retry', status, reason: `status_${status}`, hintHeaders: headers, rateLimited: status === 429 };
  return { kind: 'passthrough', status, headers, bytes };
}
