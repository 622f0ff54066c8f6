/**
 * One open WebSocket: its metadata, its authentication (replaced by auth.refresh), the chat
 * streams it receives, and the guarded ways to send and close.
 */
import type { WebSocket } from 'ws';
import type { AuthContext } from '../auth/authenticate.js';
import type { ConnectionMeta } from '../engine/connections/index.js';
import type { TerminationCause } from './metrics.js';
import type { ServerFrame } from './protocol.js';
import { CloseCode } from './protocol.js';

export interface ConnectionLimits {
  maxBufferedBytes: number;
  /** Malformed frames tolerated per minute before closing with 1008. */
  maxAbusePerMinute: number;
}

/** The longest delay a Node.js timer takes (about 24.8 days). */
const MAX_TIMER_MS = 2 ** 31 - 1;
/** How long a closing socket may take to answer the close frame before it is cut. */
const CLOSE_GRACE_MS = 2_000;

export class Connection {
  /** Chat id → stop receiving that chat's stream. */
  readonly streams = new Map<string, () => void>();
  /** Chats started on this connection and still running. */
  readonly running = new Set<string>();
  /** Epoch ms when the pending ping was sent; 0 when none is pending. */
  pingSentAt = 0;
  /** Last ping sent (ms); the sweep pings again after WS_HEARTBEAT_MS. */
  lastPingAt: number;
  /** Last data frame received (pongs excluded), for idle cleanup. */
  lastFrameAt: number;
  closeCause: TerminationCause | null = null;
  private abuseWindowStart = 0;
  private abuseCount = 0;
  private expiryTimers: NodeJS.Timeout[] = [];

  constructor(
    readonly ws: WebSocket,
    readonly meta: ConnectionMeta,
    public auth: AuthContext,
    private readonly limits: ConnectionLimits,
    private readonly onSent: (bytes: number) => void,
  ) {
    this.lastPingAt = meta.connectedAt;
    this.lastFrameAt = meta.connectedAt;
  }

  get open(): boolean {
    return this.ws.readyState === this.ws.OPEN && this.closeCause === null;
  }

  /**
   * Sends a frame unless the connection is closing. A client whose unsent bytes exceed
   * WS_MAX_BUFFERED_BYTES is closed with 4008 instead: the server never grows without bound.
   */
  send(frame: ServerFrame | Record<string, unknown>): boolean {
    if (!this.open) return false;
    if (this.ws.bufferedAmount > this.limits.maxBufferedBytes) {
      this.close(CloseCode.slowConsumer, 'slow consumer: reconnect', 'slow_consumer');
      return false;
    }
    const text = JSON.stringify(frame);
    this.meta.bytesOut += Buffer.byteLength(text);
    this.onSent(1);
    this.ws.send(text);
    return true;
  }

  /** Closes with a code; a peer that does not answer within a grace period is cut. */
  close(code: number, reason: string, cause: TerminationCause): void {
    if (this.closeCause !== null) return;
    this.closeCause = cause;
    this.clearExpiry();
    if (this.ws.readyState === this.ws.CLOSED) return;
    try {
      this.ws.close(code, reason.slice(0, 120));
    } catch {
      this.ws.terminate();
      return;
    }
    setTimeout(() => this.ws.terminate(), CLOSE_GRACE_MS).unref();
  }

  /** Cuts the TCP connection without a close frame. */
  terminate(cause: TerminationCause): void {
    if (this.closeCause === null) this.closeCause = cause;
    this.clearExpiry();
    this.ws.terminate();
  }

  /**
   * Counts a malformed frame; true when the client passed the allowance for this minute
   * (the caller then closes with 1008).
   */
  recordAbuse(now: number): boolean {
    if (now - this.abuseWindowStart >= 60_000) {
      this.abuseWindowStart = now;
      this.abuseCount = 0;
    }
    this.abuseCount += 1;
    return this.abuseCount > this.limits.maxAbusePerMinute;
  }

  /**
   * Arms the expiry of the current credential: `auth.expiring` shortly before (a third of
   * the time left, at most a minute), then close 4001 at `expiresAt`. Replaces older timers.
   */
  scheduleExpiry(now: number): void {
    this.clearExpiry();
    const expiresAt = this.auth.expiresAt;
    if (expiresAt === null) return;
    const left = expiresAt - now;
    if (left > MAX_TIMER_MS) {
      // Node fires a longer timer at once: a personal token's far expiry is armed in steps.
      this.expiryTimers = [setTimeout(() => this.scheduleExpiry(now + MAX_TIMER_MS), MAX_TIMER_MS)];
    } else {
      const warnIn = left - Math.min(60_000, Math.floor(left / 3));
      const reason = this.auth.credential === 'personal_token' ? 'personal token expired' : 'session expired: sign in again';
      this.expiryTimers = [
        setTimeout(() => this.send({ type: 'auth.expiring', expires_at: expiresAt }), Math.max(0, warnIn)),
        setTimeout(() => this.close(CloseCode.unauthenticated, reason, 'expired'), Math.max(0, left)),
      ];
    }
    for (const t of this.expiryTimers) t.unref();
  }

  clearExpiry(): void {
    for (const t of this.expiryTimers) clearTimeout(t);
    this.expiryTimers = [];
  }
}
