/** A connection's expiry timers: a credential that expires in more than 24.8 days (the longest a Node.js timer waits) is not closed at once. */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { WebSocket } from 'ws';
import type { AuthContext } from '../../src/auth/authenticate.js';
import type { ConnectionMeta } from '../../src/engine/connections/index.js';
import { Connection } from '../../src/realtime/connection.js';

const DAY = 86_400_000;

/** A socket that records what the connection does with it. */
function fakeSocket() {
  const calls = { sent: [] as string[], closed: [] as Array<[number, string]> };
  const ws = { OPEN: 1, CLOSED: 3, readyState: 1, bufferedAmount: 0, send: (t: string) => calls.sent.push(t), close: (code: number, reason: string) => calls.closed.push([code, reason]), terminate: () => {} };
  return { ws: ws as unknown as WebSocket, calls };
}

function connection(ws: WebSocket, expiresAt: number) {
  const meta = { id: 'conn_1', userId: 'u1', connectedAt: Date.now() } as ConnectionMeta;
  const auth = { credential: 'personal_token', expiresAt } as AuthContext;
  return new Connection(ws, meta, auth, { maxBufferedBytes: 1 << 20, maxAbusePerMinute: 10 }, () => {});
}

describe('Connection.scheduleExpiry', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('waits out an expiry 30 days away in steps, warns a minute before and closes with 4001 at it', () => {
    const { ws, calls } = fakeSocket();
    const now = Date.now();
    const conn = connection(ws, now + 30 * DAY);
    conn.scheduleExpiry(now);
    vi.advanceTimersByTime(29 * DAY);
    expect(calls.closed).toEqual([]);
    expect(calls.sent).toEqual([]);
    vi.advanceTimersByTime(DAY - 60_000);
    expect(calls.sent.map((t) => JSON.parse(t) as unknown)).toEqual([{ type: 'auth.expiring', expires_at: now + 30 * DAY }]);
    expect(calls.closed).toEqual([]);
    vi.advanceTimersByTime(60_000);
    expect(calls.closed).toEqual([[4001, 'personal token expired']]);
  });
});
