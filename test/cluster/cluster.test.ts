/**
 * Three gateway processes on one PostgreSQL and one Redis behave as one: broadcasts, kicks,
 * the connection cap, the admin list, cancel and resume across instances, a SIGKILLed
 * instance during 30 streams, and a Redis outage. Runs only with TEST_DATABASE_URL and
 * TEST_REDIS_URL (or fails under PORTCULLIS_REQUIRE_SERVICES=1).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { User } from '../../src/auth/users.js';
import { TEST_DATABASE_URL, TEST_REDIS_URL } from '../helpers/env.js';
import { TestClient, chatRequest } from '../realtime/helpers.js';
import type { Frame } from '../realtime/helpers.js';
import { startCluster } from './helpers.js';
import type { Cluster } from './helpers.js';

const REQUIRE = process.env.PORTCULLIS_REQUIRE_SERVICES === '1';
const enabled = Boolean(TEST_DATABASE_URL && TEST_REDIS_URL);

if (!enabled && REQUIRE) {
  describe('cluster', () => it('needs TEST_DATABASE_URL and TEST_REDIS_URL', () => expect.fail('services not configured')));
}

async function token(c: Cluster, user: User): Promise<{ token: string; sessionId: string }> {
  const s = await c.admin.services.sessions.start(user.id, { ip: '127.0.0.1', userAgent: 'cluster-test', issuer: 'https://idp.test' });
  return { token: s.accessToken, sessionId: s.session.id };
}

const open = (url: string, bearer: string) => TestClient.open(url, { headers: { authorization: `Bearer ${bearer}` }, protocols: ['portcullis.v1'] });

/** Frames of a chat until its terminal frame. */
async function collect(c: TestClient, id: string, timeoutMs = 15_000): Promise<{ events: Frame[]; end: Frame }> {
  const events: Frame[] = [];
  for (;;) {
    const f = await c.next((x) => x.id === id && ['chat.event', 'chat.done', 'chat.error'].includes(x.type), timeoutMs);
    if (f.type !== 'chat.event') return { events, end: f };
    events.push(f);
  }
}

let counter = 0;
const newUser = (c: Cluster, roles = ['member']) => c.admin.services.users.create({ issuer: 'https://idp.test', subject: `cl${++counter}-${Date.now()}.crypto`, roles });

describe.skipIf(!enabled)('cluster of 3 instances [postgres+redis]', () => {
  let c: Cluster;
  let adminToken: string;
  const clients: TestClient[] = [];
  const track = (t: TestClient) => (clients.push(t), t);
  const api = (i: number, path: string, init: RequestInit = {}) =>
    fetch(`${c.instances[i]!.http}${path}`, { ...init, headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json', ...init.headers } });

  beforeAll(async () => {
    c = await startCluster({ databaseUrl: TEST_DATABASE_URL!, redisUrl: TEST_REDIS_URL!, size: 3, env: { WS_MAX_CONNECTIONS_PER_USER: '3' } });
    adminToken = (await token(c, await newUser(c, ['admin']))).token;
  }, 90_000);
  afterAll(async () => {
    for (const t of clients) t.ws.terminate();
    await c?.close();
  }, 30_000);

  it('lists every instance\'s connections, broadcasts to each device once, caps connections cluster-wide', async () => {
    const user = await newUser(c);
    const { token: t } = await token(c, user);
    const devices = [track(await open(c.instances[0]!.ws, t)), track(await open(c.instances[1]!.ws, t)), track(await open(c.instances[2]!.ws, t))];
    const welcomes = await Promise.all(devices.map((d) => d.next('welcome')));
    const listed = (await (await api(0, `/admin/connections?user_id=${user.id}`)).json()) as { data: { id: string; instance_id: string }[] };
    expect(listed.data.map((d) => d.id).sort()).toEqual(welcomes.map((w) => w.connection_id as string).sort());
    expect(new Set(listed.data.map((d) => d.instance_id)).size).toBe(3);
    // The 4th connection of the user is refused on any instance: the cap is cluster-wide.
    await expect(open(c.instances[0]!.ws, t)).rejects.toMatchObject({ status: 429 });
    const res = await api(2, '/admin/broadcast', { method: 'POST', body: JSON.stringify({ channel: 'news', data: { n: 1 }, user_id: user.id }) });
    expect(res.status).toBe(202);
    for (const d of devices) expect((await d.next('broadcast')).data).toEqual({ n: 1 });
    await new Promise((r) => setTimeout(r, 200));
    for (const d of devices) expect(d.frames.filter((f) => f.type === 'broadcast')).toHaveLength(0);
  });

  it('revoking a session on one instance closes its sockets on every instance within a second', async () => {
    const user = await newUser(c);
    const { token: t, sessionId } = await token(c, user);
    const a = track(await open(c.instances[0]!.ws, t));
    const b = track(await open(c.instances[1]!.ws, t));
    await Promise.all([a.next('welcome'), b.next('welcome')]);
    const started = Date.now();
    expect((await api(2, `/admin/sessions/${sessionId}`, { method: 'DELETE' })).status).toBe(204);
    const closes = await Promise.all([a.closed, b.closed]);
    expect(closes.map((x) => x.code)).toEqual([4001, 4001]);
    expect(Date.now() - started).toBeLessThan(1000);
  });

  it('resumes on instance B a chat instance A is still streaming (no gap, no duplicate), and cancels across instances', async () => {
    const user = await newUser(c);
    const { token: t } = await token(c, user);
    const a = track(await open(c.instances[0]!.ws, t));
    await a.next('welcome');
    a.send({ type: 'chat', id: 'r1', request: chatRequest('resume me') });
    a.send({ type: 'chat', id: 'k1', request: chatRequest('cancel me') });
    const seen: Frame[] = [];
    for (let i = 0; i < 3; i++) seen.push(await a.next((f) => f.id === 'r1' && f.type === 'chat.event'));
    await a.next((f) => f.id === 'k1' && f.type === 'chat.event');
    a.ws.terminate();
    // The chats keep running on A, unclaimed, while the client moves to B.
    await new Promise((r) => setTimeout(r, 300));
    const b = track(await open(c.instances[1]!.ws, t));
    await b.next('welcome');
    b.send({ type: 'chat.resume', id: 'r1', after_seq: seen.at(-1)!.seq });
    b.send({ type: 'chat.resume', id: 'k1', after_seq: 0 });
    b.send({ type: 'chat.cancel', id: 'k1' });
    const [rest, cancelled] = await Promise.all([collect(b, 'r1'), collect(b, 'k1')]);
    const seqs = [...seen, ...rest.events].map((f) => f.seq as number);
    expect(seqs).toEqual(seqs.map((_, i) => i));
    expect(rest.end).toMatchObject({ type: 'chat.done', outcome: 'complete' });
    expect(cancelled.end).toMatchObject({ type: 'chat.done', outcome: 'cancelled' });
    expect(rest.events.length).toBeGreaterThan(10);
  });

  it('kill -9 of an instance during 30 streams: every client reconnects to a survivor and ends clearly; one usage record per chat', async () => {
    const users = await Promise.all(Array.from({ length: 3 }, () => newUser(c)));
    const tokens = await Promise.all(users.map((u) => token(c, u)));
    const victim = c.instances[0]!;
    const conns = await Promise.all(tokens.map(async ({ token: t }) => track(await open(victim.ws, t))));
    await Promise.all(conns.map((x) => x.next('welcome')));
    const chats = conns.flatMap((conn, u) => Array.from({ length: 10 }, (_, i) => ({ conn, u, id: `k${u}-${i}`, last: -1 })));
    for (const chat of chats) chat.conn.send({ type: 'chat', id: chat.id, request: chatRequest(`stream ${chat.id}`) });
    await Promise.all(chats.map(async (chat) => (chat.last = (await chat.conn.next((f) => f.id === chat.id && f.type === 'chat.event', 10_000)).seq as number)));
    victim.child.kill('SIGKILL');
    await Promise.all(conns.map((x) => x.closed));
    // Every client reconnects to a survivor and resumes from what it saw.
    const outcomes = await Promise.all(
      tokens.map(async ({ token: t }, u) => {
        const survivor = track(await open(c.instances[1 + (u % 2)]!.ws, t));
        await survivor.next('welcome');
        const mine = chats.filter((x) => x.u === u);
        for (const chat of mine) {
          // Frames received before the kill but not yet taken still count as seen.
          const more = chat.conn.frames.filter((f) => f.id === chat.id && f.type === 'chat.event').map((f) => f.seq as number);
          chat.last = Math.max(chat.last, ...more);
          survivor.send({ type: 'chat.resume', id: chat.id, after_seq: chat.last });
        }
        return Promise.all(mine.map((chat) => collect(survivor, chat.id, 20_000)));
      }),
    );
    const ends = outcomes.flat().map((o) => o.end);
    expect(ends).toHaveLength(30);
    for (const end of ends) {
      if (end.type === 'chat.done') expect(end.outcome).toBe('complete');
      else expect((end.error as { message: string }).message).toMatch(/stopped|resumed/);
    }
    const db = c.engine.database.db;
    const rows = await db.selectFrom('usage_records').select(['user_id', 'request_id', 'outcome']).where('user_id', 'in', users.map((u) => u.id)).execute();
    expect(rows).toHaveLength(30);
    expect(new Set(rows.map((r) => r.request_id)).size).toBe(30);
  }, 40_000);

  it('Redis down: readiness 503 and new work refused with a clear error; back: full service without restart', async () => {
    const user = await newUser(c);
    const { token: t } = await token(c, user);
    const live = c.instances.slice(1);
    const held = track(await open(live[0]!.ws, t));
    await held.next('welcome');
    // Registered in the shared directory (the welcome frame may precede it).
    for (let n = 0; n < 50; n++) {
      const listed = (await (await api(1, `/admin/connections?user_id=${user.id}`)).json()) as { count: number };
      if (listed.count === 1) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    await c.redisProxy.cut();
    try {
      for (const i of live) {
        const res = await fetch(`${i.http}/readyz`);
        expect(res.status).toBe(503);
        expect(((await res.json()) as { failing: string[] }).failing).toContain('redis');
      }
      const refused = await open(live[1]!.ws, t).then(
        () => null,
        (err: { status?: number; body?: { error?: { message?: string } } }) => err,
      );
      expect(refused?.status).toBe(503);
      held.send({ type: 'chat', id: 'down', request: chatRequest('while redis is down') });
      const down = await collect(held, "down", 5_000).catch(async (err: Error) => {
        throw new Error(`${err.message} exit=${live[0]!.child.exitCode} close=${JSON.stringify(await Promise.race([held.closed, Promise.resolve(null)]))} state=${held.ws.readyState} frames=${JSON.stringify(held.frames)} log=${live[0]!.log.join('').slice(-3000)}`);
      });
      expect(down.end.type).toBe('chat.error');
      expect((down.end.error as { message: string }).message).toMatch(/unavailable/i);
    } finally {
      await c.redisProxy.restore();
    }
    for (const i of live) {
      for (let n = 0; n < 100; n++) {
        if ((await fetch(`${i.http}/readyz`)).status === 200) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      expect((await fetch(`${i.http}/readyz`)).status).toBe(200);
    }
    const fresh = track(await open(live[1]!.ws, t));
    await fresh.next('welcome');
    fresh.send({ type: 'chat', id: 'up', request: chatRequest('redis is back') });
    expect((await collect(fresh, 'up')).end).toMatchObject({ type: 'chat.done', outcome: 'complete' });
  }, 30_000);
});
