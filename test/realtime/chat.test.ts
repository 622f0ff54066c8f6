/**
 * Chats over WebSocket through the real chat pipeline, with the simulator as the upstream
 * (a real key, real HTTP/SSE): streaming with seq, usage rows matching what the simulator
 * reported, two at once, duplicate ids, refusals, upstream errors, cancel, resume after a
 * killed socket, the resume window, graceful shutdown.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { User } from '../../src/auth/users.js';
import { CLAIM_TOPIC, RELEASE_TOPIC } from '../../src/realtime/chats.js';
import type { SimulatedRequest } from '../../src/simulator/index.js';
import type { Frame } from './helpers.js';
import { TestClient, UPSTREAM_KEY, accessToken, chatRequest, makeUser, startChatApp } from './helpers.js';
import type { ChatTestApp, WsTestApp } from './helpers.js';

async function connect(t: WsTestApp, user: User): Promise<TestClient> {
  const { token } = await accessToken(t.app, user);
  const c = await TestClient.open(t.url, { headers: { authorization: `Bearer ${token}` } });
  await c.next('welcome');
  return c;
}

/** Collects a chat's frames until its chat.done / chat.error. */
async function collect(c: TestClient, id: string, timeoutMs = 10_000): Promise<{ events: Frame[]; end: Frame }> {
  const events: Frame[] = [];
  for (;;) {
    const f = await c.next((x) => x.id === id && (x.type === 'chat.event' || x.type === 'chat.done' || x.type === 'chat.error'), timeoutMs);
    if (f.type === 'chat.event') events.push(f);
    else return { events, end: f };
  }
}

/** A new user whose connection started chat `id`, got its first event, then dropped: the chat runs on, unclaimed. */
async function droppedMidChat(t: ChatTestApp, id: string): Promise<User> {
  const user = await makeUser(t.app);
  const c = await connect(t, user);
  c.send({ type: 'chat', id, request: chatRequest() });
  await c.next((f) => f.type === 'chat.event');
  c.ws.terminate();
  return user;
}

function expectSeqInOrder(events: Frame[], from = 0): void {
  expect(events.map((e) => e.seq)).toEqual(events.map((_, i) => from + i));
}

function eventTypes(events: Frame[]): string[] {
  return events.map((e) => (e.event as { type: string }).type);
}

/** The simulator's answers to chats (not count_tokens or models), oldest first. */
function served(t: ChatTestApp): SimulatedRequest[] {
  return t.sim.requests.filter((r) => r.path === '/v1/messages');
}

async function until<T>(read: () => Promise<T>, ok: (value: T) => boolean, tries = 150): Promise<T> {
  let value = await read();
  for (let i = 0; i < tries && !ok(value); i++) {
    await new Promise((r) => setTimeout(r, 20));
    value = await read();
  }
  return value;
}

describe('WebSocket chats on the real pipeline', () => {
  describe('on one instance', () => {
    let t: ChatTestApp;
    beforeAll(async () => {
      t = await startChatApp({ sim: { deltas: 12, deltaDelayMs: 15 } });
    });
    afterAll(() => t.close());

    it('streams a chat end to end with seq in order, then chat.done; the usage row matches what the simulator reported', async () => {
      const user = await makeUser(t.app);
      const c = await connect(t, user);
      c.send({ type: 'chat', id: 'one', request: chatRequest() });
      const { events, end } = await collect(c, 'one');
      expectSeqInOrder(events);
      const types = eventTypes(events);
      expect(types[0]).toBe('message_start');
      expect(types.at(-1)).toBe('message_stop');
      expect(types.filter((x) => x === 'content_block_delta')).toHaveLength(12);
      expect(end).toMatchObject({ type: 'chat.done', outcome: 'complete', stop_reason: 'end_turn' });
      const upstream = served(t).at(-1)!;
      expect(upstream).toMatchObject({ key: UPSTREAM_KEY, stream: true, status: 200, outcome: 'complete' });
      expect(end.usage).toEqual(upstream.usage);
      const rows = await t.usageRows(user.id);
      expect(rows).toHaveLength(1);
      expect(rows[0]).toMatchObject({
        outcome: 'complete',
        stream: 1,
        status: 200,
        model: 'claude-sonnet-4-5',
        input_tokens: upstream.usage!.input_tokens,
        output_tokens: upstream.usage!.output_tokens,
      });
      expect(rows[0]!.key_id).not.toBeNull();
      c.close();
    });

    it('runs two chats at once on one connection and refuses a duplicate id; both are recorded', async () => {
      const user = await makeUser(t.app);
      const c = await connect(t, user);
      c.send({ type: 'chat', id: 'a', request: chatRequest('first') });
      c.send({ type: 'chat', id: 'b', request: chatRequest('second') });
      c.send({ type: 'chat', id: 'a', request: chatRequest('again') });
      const dup = await c.next((f) => f.type === 'chat.error' && f.id === 'a');
      expect((dup.error as { message: string }).message).toMatch(/already in use/);
      const [a, b] = await Promise.all([collect(c, 'a'), collect(c, 'b')]);
      expectSeqInOrder(a.events);
      expectSeqInOrder(b.events);
      expect([a.end.type, b.end.type]).toEqual(['chat.done', 'chat.done']);
      const rows = await t.usageRows(user.id);
      expect(rows.map((r) => r.outcome)).toEqual(['complete', 'complete']);
      c.close();
    });

    it('answers an upstream refusal before the stream with chat.error carrying upstream type and message, recorded as an error', async () => {
      const user = await makeUser(t.app);
      const c = await connect(t, user);
      const fault = JSON.stringify({ status: 400, message: 'messages: too many images' });
      c.send({ type: 'chat', id: 'bad', request: chatRequest(`<<sim:${fault}>>`) });
      const { events, end } = await collect(c, 'bad');
      expect(events).toEqual([]);
      expect(end).toMatchObject({ type: 'chat.error', error: { type: 'invalid_request_error', message: 'messages: too many images' } });
      expect(await t.usageRows(user.id)).toMatchObject([{ outcome: 'error', status: 400, error_type: 'invalid_request_error' }]);
      c.close();
    });

    it('ends a stream that fails upstream mid-way with chat.error and the usage so far; the connection stays usable', async () => {
      const user = await makeUser(t.app);
      const c = await connect(t, user);
      const fault = JSON.stringify({ errorAfterDeltas: 3 });
      c.send({ type: 'chat', id: 'broken', request: chatRequest(`<<sim:${fault}>>`) });
      const { events, end } = await collect(c, 'broken');
      expectSeqInOrder(events);
      expect(eventTypes(events).at(-1)).toBe('error');
      expect(end).toMatchObject({ type: 'chat.error', error: { type: 'overloaded_error' } });
      expect((end.usage as { input_tokens: number }).input_tokens).toBe(served(t).at(-1)!.usage!.input_tokens);
      expect(await t.usageRows(user.id)).toMatchObject([{ outcome: 'failed_midstream', error_type: 'overloaded_error' }]);
      c.send({ type: 'ping' });
      expect(await c.next('pong')).toEqual({ type: 'pong' });
      c.close();
    });

    it('ends a stream whose upstream connection breaks inside an event with that event left out and a clean error event', async () => {
      const user = await makeUser(t.app);
      const c = await connect(t, user);
      const fault = JSON.stringify({ resetAfterDeltas: 3, resetMidEvent: true });
      c.send({ type: 'chat', id: 'cut', request: chatRequest(`<<sim:${fault}>>`) });
      const { events, end } = await collect(c, 'cut');
      expectSeqInOrder(events);
      expect(eventTypes(events).filter((type) => type === 'content_block_delta')).toHaveLength(3);
      expect(events.at(-1)!.event).toEqual({ type: 'error', error: { type: 'api_error', message: 'The upstream connection failed mid-stream; the reply is incomplete.' } });
      expect(end).toMatchObject({ type: 'chat.error', error: { type: 'api_error' } });
      expect(served(t).at(-1)!.outcome).toBe('reset');
      c.close();
    });

    it('cancels a chat whose credential is still being checked (the cancel finds it; nothing reaches upstream)', async () => {
      const user = await makeUser(t.app);
      const c = await connect(t, user);
      const { authenticate } = t.app.services;
      const recheck = authenticate.recheck;
      authenticate.recheck = async (auth) => {
        await new Promise((r) => setTimeout(r, 150));
        return recheck(auth);
      };
      try {
        const servedBefore = served(t).length;
        c.send({ type: 'chat', id: 'checking', request: chatRequest() });
        c.send({ type: 'chat.cancel', id: 'checking' });
        const { events, end } = await collect(c, 'checking');
        expect(events).toEqual([]);
        expect(end).toMatchObject({ type: 'chat.done', outcome: 'cancelled' });
        expect(served(t).length).toBe(servedBefore);
      } finally {
        authenticate.recheck = recheck;
      }
      c.close();
    });

    it('cancels a chat from another connection of the same user; usage is settled as cancelled', async () => {
      const user = await makeUser(t.app);
      const c = await connect(t, user);
      const other = await connect(t, user);
      const servedBefore = served(t).length;
      c.send({ type: 'chat', id: 'long', request: chatRequest('long', { messages: [{ role: 'user', content: `<<sim:{"deltas":200,"deltaDelayMs":20}>> ${'word '.repeat(300)}` }] }) });
      await c.next((f) => f.type === 'chat.event' && f.id === 'long');
      other.send({ type: 'chat.cancel', id: 'long' });
      const { end } = await collect(c, 'long');
      expect(end).toMatchObject({ type: 'chat.done', outcome: 'cancelled', stop_reason: null });
      const rows = await t.usageRows(user.id);
      expect(rows).toMatchObject([{ outcome: 'cancelled', status: 200 }]);
      // The simulator logs a request when its response ends, i.e. once it saw the abort.
      const upstream = (await until(async () => served(t), (r) => r.length > servedBefore)).at(-1)!;
      expect(upstream.outcome).toBe('aborted');
      expect(rows[0]!.input_tokens).toBe(upstream.usage!.input_tokens);
      other.send({ type: 'chat.cancel', id: 'never-started' });
      expect(await other.next('chat.error')).toMatchObject({ id: 'never-started', error: { type: 'not_found_error' } });
      c.close();
      other.close();
    });

    it('cancels a chat still waiting for upstream headers: chat.done cancelled, usage row cancelled', async () => {
      const user = await makeUser(t.app);
      const c = await connect(t, user);
      c.send({ type: 'chat', id: 'waiting', request: chatRequest('<<sim:{"latencyMs":3000}>>') });
      for (let i = 0; i < 100 && (await t.app.inject({ method: 'GET', url: '/metrics' })).body.match(/portcullis_ws_chats_running 1/) === null; i++) {
        await new Promise((r) => setTimeout(r, 10));
      }
      c.send({ type: 'chat.cancel', id: 'waiting' });
      const { events, end } = await collect(c, 'waiting');
      expect(events).toEqual([]);
      expect(end).toMatchObject({ type: 'chat.done', outcome: 'cancelled', stop_reason: null });
      expect(await t.usageRows(user.id)).toMatchObject([{ outcome: 'cancelled', input_tokens: 0, output_tokens: 0 }]);
      c.close();
    });

    it('resumes on a new connection after the socket was destroyed mid-stream, with no gap and no duplicate', async () => {
      const user = await makeUser(t.app);
      const c = await connect(t, user);
      c.send({ type: 'chat', id: 'resumable', request: chatRequest() });
      const seen: Frame[] = [];
      for (let i = 0; i < 4; i++) seen.push(await c.next((f) => f.type === 'chat.event' && f.id === 'resumable'));
      c.ws.terminate(); // no close frame: an abnormal disconnect
      await c.closed;
      const lastSeq = seen.at(-1)!.seq as number;
      const d = await connect(t, user);
      d.send({ type: 'chat.resume', id: 'resumable', after_seq: lastSeq });
      const rest = await collect(d, 'resumable');
      expectSeqInOrder(rest.events, lastSeq + 1);
      expect(rest.end).toMatchObject({ type: 'chat.done', outcome: 'complete' });
      const all = eventTypes([...seen, ...rest.events]);
      expect(all[0]).toBe('message_start');
      expect(all.at(-1)).toBe('message_stop');
      expect(all.filter((x) => x === 'content_block_delta')).toHaveLength(12);
      expect(await t.usageRows(user.id)).toMatchObject([{ outcome: 'complete' }]);
      // A resume after completion replays everything, all or nothing.
      d.send({ type: 'chat.resume', id: 'resumable', after_seq: -1 });
      const replay = await collect(d, 'resumable');
      expect(replay.events.map((e) => e.seq)).toEqual([...seen, ...rest.events].map((e) => e.seq));
      d.send({ type: 'chat.resume', id: 'unknown', after_seq: 3 });
      expect(await d.next('chat.error')).toMatchObject({ id: 'unknown', error: { type: 'resume_unavailable' } });
      d.close();
    });
  });

  it('answers a chat over the rate limit with chat.error rate_limit_error and retry_after_ms to the millisecond', async () => {
    const t = await startChatApp({ env: { RATE_LIMIT_RPM: '1' } });
    try {
      const user = await makeUser(t.app);
      const c = await connect(t, user);
      c.send({ type: 'chat', id: 'first', request: chatRequest() });
      expect((await collect(c, 'first')).end).toMatchObject({ type: 'chat.done', outcome: 'complete' });
      const firstDone = Date.now(); // the first chat was admitted before this
      await new Promise((resolve) => setTimeout(resolve, 20));
      const secondSent = Date.now(); // the second is checked after this
      c.send({ type: 'chat', id: 'second', request: chatRequest() });
      const { events, end } = await collect(c, 'second');
      expect(events).toEqual([]);
      expect(end).toMatchObject({ type: 'chat.error', id: 'second', error: { type: 'rate_limit_error' } });
      // The limiter's own wait (admission + 60 s - now), not whole seconds: at most the bound below, under 60 000.
      expect(end.retry_after_ms).toBeGreaterThan(0);
      expect(end.retry_after_ms).toBeLessThanOrEqual(firstDone + 60_000 - secondSent);
      expect(served(t)).toHaveLength(1);
      expect(await t.usageRows(user.id)).toHaveLength(1);
      c.close();
    } finally {
      await t.close();
    }
  });

  it('streams at most UPSTREAM_CONNECTIONS chats upstream at once; the others wait their turn', async () => {
    const t = await startChatApp({ sim: { deltas: 12, deltaDelayMs: 10 }, env: { UPSTREAM_CONNECTIONS: '1' } });
    try {
      const user = await makeUser(t.app);
      const c = await connect(t, user);
      const order: string[] = [];
      c.ws.on('message', (data) => {
        const f = JSON.parse(String(data)) as { type: string; id?: string; event?: { type: string } };
        if (f.type === 'chat.event') order.push(`${f.id}:${f.event!.type}`);
      });
      c.send({ type: 'chat', id: 'first', request: chatRequest('first') });
      c.send({ type: 'chat', id: 'second', request: chatRequest('second') });
      const ends = await Promise.all([collect(c, 'first'), collect(c, 'second')]);
      expect(ends.map((e) => e.end.type)).toEqual(['chat.done', 'chat.done']);
      // One upstream socket: whichever stream got it first ends before the other one starts.
      const [x, y] = order[0]!.startsWith('first') ? ['first', 'second'] : ['second', 'first'];
      expect(order.indexOf(`${x}:message_stop`)).toBeLessThan(order.indexOf(`${y}:message_start`));
      c.close();
    } finally {
      await t.close();
    }
  });

  it('aborts and settles a chat nobody reclaims within the resume window, then refuses its resume', async () => {
    const t = await startChatApp({ sim: { deltas: 200, deltaDelayMs: 20 }, env: { WS_RESUME_WINDOW_MS: '150ms' } });
    try {
      const user = await droppedMidChat(t, 'orphan');
      const rows = await until(() => t.usageRows(user.id), (r) => r.length > 0);
      expect(rows).toMatchObject([{ outcome: 'cancelled' }]);
      await new Promise((r) => setTimeout(r, 300));
      const d = await connect(t, user);
      d.send({ type: 'chat.resume', id: 'orphan', after_seq: 0 });
      expect(await d.next('chat.error')).toMatchObject({ error: { type: 'resume_unavailable' } });
      d.close();
    } finally {
      await t.close();
    }
  });

  it('keeps a chat that another instance still receives when a third instance releases its claim', async () => {
    const t = await startChatApp({ sim: { deltas: 60, deltaDelayMs: 20 }, env: { WS_RESUME_WINDOW_MS: '300ms' } });
    try {
      const user = await droppedMidChat(t, 'moving');
      // The client resumed on instance B, then (B's socket dying unnoticed) on C; B notices later.
      const { bus } = t.app.services.engine;
      const claim = { userId: user.id, chatId: 'moving' };
      await bus.publish(CLAIM_TOPIC, { ...claim, instanceId: 'ins_b' });
      await bus.publish(CLAIM_TOPIC, { ...claim, instanceId: 'ins_c' });
      await bus.publish(RELEASE_TOPIC, { ...claim, instanceId: 'ins_b' });
      const rows = await until(() => t.usageRows(user.id), (r) => r.length > 0, 200);
      expect(rows).toMatchObject([{ outcome: 'complete' }]);
    } finally {
      await t.close();
    }
  });

  it('shuts down gracefully during 50 streams: each completes or gets 1001, exactly 50 usage rows', async () => {
    const t = await startChatApp({ sim: { deltas: 60, deltaDelayMs: 25 }, env: { SHUTDOWN_TIMEOUT_MS: '1500' } });
    try {
      const clients: TestClient[] = [];
      const users: User[] = [];
      for (let u = 0; u < 5; u++) {
        const user = await makeUser(t.app);
        users.push(user);
        for (let k = 0; k < 2; k++) clients.push(await connect(t, user));
      }
      const ends = clients.flatMap((c, i) =>
        [0, 1, 2, 3, 4].map((j) => {
          const id = `s${i}-${j}`;
          c.send({ type: 'chat', id, request: chatRequest(`stream ${id}`) });
          return collect(c, id, 8000).then((r) => (r.end.type === 'chat.done' ? (r.end.outcome as string) : 'error'), () => 'none');
        }),
      );
      await Promise.all(clients.map((c) => c.next((f) => f.type === 'chat.event')));
      const started = Date.now();
      await t.stopApp();
      // No hang: the shutdown budget (1.5 s) plus the 2.5 s wait for close frames, with slack for a loaded machine.
      expect(Date.now() - started).toBeLessThan(8000);
      const closes = await Promise.all(clients.map((c) => c.closed));
      expect(closes.every((c) => c.code === 1001)).toBe(true);
      const outcomes = await Promise.all(ends);
      expect(outcomes.every((o) => o === 'complete' || o === 'cancelled')).toBe(true);
      const rows = (await Promise.all(users.map((u) => t.usageRows(u.id)))).flat();
      expect(rows).toHaveLength(50);
      expect(rows.every((r) => r.outcome === 'complete' || r.outcome === 'cancelled')).toBe(true);
      const upstream = await until(async () => served(t), (r) => r.length >= 50);
      expect(upstream).toHaveLength(50);
      const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
      expect(sum(rows.map((r) => r.input_tokens))).toBe(sum(upstream.map((r) => r.usage!.input_tokens)));
    } finally {
      await t.close();
    }
  });
});
