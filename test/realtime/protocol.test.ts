/** Frames and connection health: malformed input, oversize, heartbeat, broadcast, admin endpoints, metrics. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { User } from '../../src/auth/users.js';
import { TestClient, accessToken, makeUser, startApp } from './helpers.js';
import type { WsTestApp } from './helpers.js';

async function connect(t: WsTestApp, user: User, options: { autoPong?: boolean } = {}): Promise<TestClient> {
  const { token } = await accessToken(t.app, user);
  const c = await TestClient.open(t.url, { headers: { authorization: `Bearer ${token}` }, ...options });
  await c.next('welcome');
  return c;
}

describe('WebSocket protocol', () => {
  let t: WsTestApp;
  let user: User;
  let admin: User;
  beforeAll(async () => {
    t = await startApp({ WS_MAX_MESSAGE_BYTES: '4096', WS_HEARTBEAT_MS: '150ms', WS_HEARTBEAT_TIMEOUT_MS: '150ms' });
    user = await makeUser(t.app, ['member']);
    admin = await makeUser(t.app, ['admin']);
  });
  afterAll(() => t.close());

  it('answers every malformed frame with an error naming the problem and stays open', async () => {
    const c = await connect(t, user);
    const cases: Array<[unknown, RegExp]> = [
      ['{not json', /invalid JSON/],
      ['[1,2]', /must be a JSON object/],
      [{ id: 'x' }, /type: Field required/],
      [{ type: 'nope' }, /unknown type "nope"; expected one of chat, chat.cancel, chat.resume, auth.refresh, ping/],
      [{ type: 'chat', id: 'a' }, /chat: request: Field required/],
      [{ type: 'chat', id: 'bad id!', request: {} }, /chat: id: expected 1 to 128/],
      [{ type: 'chat.resume', id: 'a', after_seq: 'x' }, /chat.resume: after_seq/],
      [{ type: 'chat.cancel', id: 'a', extra: 1 }, /unknown field\(s\) extra/],
    ];
    for (const [frame, message] of cases) {
      c.send(frame);
      const error = await c.next('error');
      expect(error.error).toMatchObject({ type: 'invalid_request_error' });
      expect((error.error as { message: string }).message).toMatch(message);
    }
    c.ws.send(Buffer.from([1, 2, 3]), { binary: true });
    expect(((await c.next('error')).error as { message: string }).message).toMatch(/binary/);
    c.send({ type: 'ping' });
    expect(await c.next('pong')).toEqual({ type: 'pong' });
    c.close();
  });

  it('closes with 1008 after repeated abuse', async () => {
    const c = await connect(t, user);
    for (let i = 0; i < 25; i++) c.send('garbage');
    expect((await c.closed).code).toBe(1008);
  });

  it('closes a frame over WS_MAX_MESSAGE_BYTES with 1009', async () => {
    const c = await connect(t, user);
    c.send({ type: 'ping', pad: 'x'.repeat(5000) });
    expect((await c.closed).code).toBe(1009);
  });

  it('terminates a client that stops answering pings, and keeps one that answers', async () => {
    const silent = await connect(t, user, { autoPong: false });
    const alive = await connect(t, user);
    const closed = await silent.closed;
    expect(closed.code).toBe(1006); // cut without a close frame
    alive.send({ type: 'ping' });
    expect(await alive.next('pong')).toEqual({ type: 'pong' });
    const metrics = await (await fetch(`${t.http}/metrics`)).text();
    expect(metrics).toMatch(/portcullis_ws_closed_total\{cause="heartbeat"\} [1-9]/);
    expect(metrics).toMatch(/portcullis_ws_ping_rtt_seconds_count [1-9]/);
    expect(metrics).toMatch(/portcullis_ws_connections [1-9]/);
    alive.close();
  });

  it('broadcasts to one user, to a filter, and to everyone', async () => {
    const a1 = await connect(t, user);
    const a2 = await connect(t, user);
    const b = await connect(t, admin);
    await t.app.realtime.fanout.toUser(user.id, 'news', { n: 1 });
    for (const c of [a1, a2]) expect(await c.next('broadcast')).toEqual({ type: 'broadcast', channel: 'news', data: { n: 1 } });
    await t.app.realtime.fanout.toFilter({ role: 'admin' }, 'ops', { n: 2 });
    expect(await b.next('broadcast')).toMatchObject({ channel: 'ops' });
    await t.app.realtime.fanout.toAll('all', { n: 3 });
    for (const c of [a1, a2, b]) expect(await c.next('broadcast')).toMatchObject({ channel: 'all' });
    // Nothing else arrived: the user-targeted and role-targeted frames reached only their targets.
    expect(b.frames.filter((f) => f.type === 'broadcast')).toEqual([]);
    expect([...a1.frames, ...a2.frames].filter((f) => f.type === 'broadcast')).toEqual([]);
    for (const c of [a1, a2, b]) c.close();
  });

  it('admin endpoints list, filter, close and broadcast, behind capabilities', async () => {
    const c = await connect(t, user);
    const welcomeless = await connect(t, admin);
    const adminToken = (await accessToken(t.app, admin)).token;
    const userToken = (await accessToken(t.app, user)).token;
    const auth = (token: string) => ({ authorization: `Bearer ${token}` });

    const forbidden = await fetch(`${t.http}/admin/connections`, { headers: auth(userToken) });
    expect(forbidden.status).toBe(403);
    const list = (await (await fetch(`${t.http}/admin/connections?user_id=${user.id}`, { headers: auth(adminToken) })).json()) as {
      data: Array<{ id: string; user_id: string; roles: string[]; ip: string; bytes_in: number; connected_at: number }>;
    };
    expect(list.data.length).toBeGreaterThanOrEqual(1);
    expect(list.data.every((d) => d.user_id === user.id && d.ip === '127.0.0.1')).toBe(true);
    const byRole = (await (await fetch(`${t.http}/admin/connections?role=admin&connected_before=${Date.now() + 1000}`, { headers: auth(adminToken) })).json()) as { data: Array<{ user_id: string }> };
    expect(byRole.data.map((d) => d.user_id)).toContain(admin.id);
    expect(byRole.data.map((d) => d.user_id)).not.toContain(user.id);
    const bad = await fetch(`${t.http}/admin/connections?connected_before=soon`, { headers: auth(adminToken) });
    expect(bad.status).toBe(400);

    const sent = await fetch(`${t.http}/admin/broadcast`, {
      method: 'POST',
      headers: { ...auth(adminToken), 'content-type': 'application/json' },
      body: JSON.stringify({ channel: 'maintenance', data: { at: 'soon' }, user_id: user.id }),
    });
    expect(sent.status).toBe(202);
    expect(await c.next('broadcast')).toEqual({ type: 'broadcast', channel: 'maintenance', data: { at: 'soon' } });

    const mine = list.data.find((d) => d.user_id === user.id)!;
    const kicked = await fetch(`${t.http}/admin/connections/${mine.id}`, { method: 'DELETE', headers: auth(adminToken) });
    expect(kicked.status).toBe(204);
    const missing = await fetch(`${t.http}/admin/connections/conn_nope`, { method: 'DELETE', headers: auth(adminToken) });
    expect(missing.status).toBe(404);
    expect((await c.closed).code).toBe(1008);
    welcomeless.close();
  });
});
