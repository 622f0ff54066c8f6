/** Connection health: a client that cannot keep up is closed with 4008; idle connections are closed with 1000. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestClient, accessToken, makeUser, startApp } from './helpers.js';
import type { WsTestApp } from './helpers.js';

describe('WebSocket connection health', () => {
  let t: WsTestApp;
  beforeAll(async () => {
    t = await startApp({ WS_MAX_BUFFERED_BYTES: '65536', WS_IDLE_TIMEOUT_MS: '300ms', WS_HEARTBEAT_MS: '100ms', WS_HEARTBEAT_TIMEOUT_MS: '5s' });
  });
  afterAll(() => t.close());

  it('closes a slow consumer (4008) instead of buffering without bound', async () => {
    const user = await makeUser(t.app);
    const { token } = await accessToken(t.app, user);
    const c = await TestClient.open(t.url, { headers: { authorization: `Bearer ${token}` } });
    await c.next('welcome');
    const socket = (c.ws as unknown as { _socket: { pause(): void; resume(): void } })._socket;
    socket.pause();
    const big = 'x'.repeat(256 * 1024);
    for (let i = 0; i < 200 && t.app.realtime.localCount() > 0; i++) {
      await t.app.realtime.fanout.toUser(user.id, 'flood', big);
      await new Promise((r) => setImmediate(r));
    }
    // The closing socket does not answer (it is paused): it is cut after the close grace.
    for (let i = 0; i < 200 && t.app.realtime.localCount() > 0; i++) await new Promise((r) => setTimeout(r, 25));
    const metrics = await (await fetch(`${t.http}/metrics`)).text();
    expect(metrics).toMatch(/portcullis_ws_closed_total\{cause="slow_consumer"\} 1/);
    socket.resume();
    await c.closed;
  });

  it('closes a connection that sends nothing (pongs do not count) with 1000 after WS_IDLE_TIMEOUT_MS', async () => {
    const user = await makeUser(t.app);
    const { token } = await accessToken(t.app, user);
    const c = await TestClient.open(t.url, { headers: { authorization: `Bearer ${token}` } });
    await c.next('welcome');
    expect(await c.closed).toEqual({ code: 1000, reason: 'idle' });
  });
});
