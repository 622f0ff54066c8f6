/**
 * One interval sweep over this instance's connections (ws's `isAlive` recipe, refined):
 * ping each connection every WS_HEARTBEAT_MS; terminate one whose ping stays unanswered
 * (no pong and no frame) for WS_HEARTBEAT_TIMEOUT_MS; close with 1000 one that sent no
 * frame for WS_IDLE_TIMEOUT_MS and runs no chat. A silent client is therefore cut within
 * heartbeat + timeout + one tick (a tick is half the shorter of the two).
 */
import type { Connection } from './connection.js';
import { CloseCode } from './protocol.js';

export interface HeartbeatOptions {
  heartbeatMs: number;
  timeoutMs: number;
  /** 0 disables idle cleanup. */
  idleMs: number;
  connections: () => Iterable<Connection>;
  now?: () => number;
}

export function startHeartbeat(options: HeartbeatOptions): () => void {
  const now = options.now ?? Date.now;
  const tick = Math.max(5, Math.floor(Math.min(options.heartbeatMs, options.timeoutMs) / 2));
  const timer = setInterval(() => {
    const t = now();
    for (const conn of options.connections()) {
      if (conn.closeCause !== null) continue;
      if (conn.pingSentAt !== 0) {
        if (t - conn.pingSentAt > options.timeoutMs) conn.terminate('heartbeat');
        continue;
      }
      if (options.idleMs > 0 && conn.running.size === 0 && t - conn.lastFrameAt > options.idleMs) {
        conn.close(CloseCode.normal, 'idle', 'idle');
        continue;
      }
      if (t - conn.lastPingAt >= options.heartbeatMs) {
        conn.pingSentAt = t;
        conn.lastPingAt = t;
        try {
          conn.ws.ping();
        } catch {
          conn.terminate('error');
        }
      }
    }
  }, tick);
  timer.unref();
  return () => clearInterval(timer);
}
