/**
 * Chats over WebSocket against the simulator: streaming with seq, two at once, duplicate
 * ids, refusals, cancel, resume after a killed socket, the resume window, graceful shutdown.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { User } from '../../src/auth/users.js';
import { buildSimulator } from '../../src/simulator/index.js';
import type { Simulator } from '../../src/simulator/index.js';
import type { Frame } from './helpers.js';
import { TestClient, accessToken, chatRequest, makeUser, simulatorPipeline, startApp } from './helpers.js';
import type { WsTestApp } from './helpers.js';

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

function expectSeqInOrder(events: Frame[], from = 0): void {
  expect(events.map((e) => e.seq)).toEqual(events.map((_, i) => from + i));
}

describe('WebSocket chats', () => {
  let sim: Simulator;
  let simUrl: string;
  beforeAll(async () => {
    sim = await buildSimulator({ deltas: 12, deltaDelayMs: 15 });
    simUrl = await sim.listen();
  });
  afterAll(() => sim.close());

  describe('on one instance', () => {
    let t: WsTestApp;
    let user: User;
    let pipeline: ReturnType<typeof simulatorPipeline>;
    beforeAll(async () => {
      t = await startApp();
      pipeline = simulatorPipeline(simUrl);
      (t.app.services as { chat?: unknown }).chat = pipeline;
      user = await makeUser(t.app);
    });
    afterAll(() => t.close());

    it('streams a chat end to end with seq in order, then chat.done with the usage recorded', async () => {
      const c = await connect(t, user);
      c.send({ type: 'chat', id: 'one', request: chatRequest() });
      const { events, end } = await collect(c, 'one');
      expectSeqInOrder(events);
      expect((events[0]!.event as { type: string }).type).toBe('message_start');
      expect((events.at(-1)!.event as { type: string }).type).toBe('message_stop');
      expect(events.filter((e) => (e.event as { type: string }).type === 'content_block_delta')).toHaveLength(12);
      expect(end).toMatchObject({ type: 'chat.done', outcome: 'complete', stop_reason: 'end_turn' });
      const usage = end.usage as { input_tokens: number; output_tokens: number };
      expect(usage.output_tokens).toBeGreaterThan(0);
      expect(pipeline.settled.at(-1)).toMatchObject({ outcome: 'complete', usage });
      c.close();
    });

    it('runs two chats at once on one connection and refuses a duplicate id', async () => {
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
      c.close();
    });

    it('answers a refused chat with chat.error and retry_after_ms', async () => {
      const c = await connect(t, user);
      c.send({ type: 'chat', id: 'limited', request: chatRequest('x', { model: 'rate-limited' }) });
      const { events, end } = await collect(c, 'limited');
      expect(events).toEqual([]);
      expect(end).toMatchObject({ type: 'chat.error', error: { type: 'rate_limit_error' }, retry_after_ms: 3000 });
      c.close();
    });

    it('cancels a chat from another connection of the same user; usage is settled', async () => {
      const c = await connect(t, user);
      const other = await connect(t, user);
      c.send({ type: 'chat', id: 'long', request: chatRequest() });
      await c.next((f) => f.type === 'chat.event' && f.id === 'long');
      const before = pipeline.settled.length;
      other.send({ type: 'chat.cancel', id: 'long' });
      const { end } = await collect(c, 'long');
      expect(end).toMatchObject({ type: 'chat.done', outcome: 'cancelled' });
      expect(pipeline.settled.length).toBe(before + 1);
      other.send({ type: 'chat.cancel', id: 'never-started' });
      expect(await other.next('chat.error')).toMatchObject({ id: 'never-started', error: { type: 'not_found_error' } });
      c.close();
      other.close();
    });

    it('resumes on a new connection after the socket was destroyed mid-stream, with no gap and no duplicate', async () => {
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
      const all = [...seen, ...rest.events].map((e) => (e.event as { type: string }).type);
      expect(all[0]).toBe('message_start');
      expect(all.at(-1)).toBe('message_stop');
      // A resume after completion replays everything, all or nothing.
      d.send({ type: 'chat.resume', id: 'resumable', after_seq: -1 });
      const replay = await collect(d, 'resumable');
      expect(replay.events.map((e) => e.seq)).toEqual([...seen, ...rest.events].map((e) => e.seq));
      d.send({ type: 'chat.resume', id: 'unknown', after_seq: 3 });
      expect(await d.next('chat.error')).toMatchObject({ id: 'unknown', error: { type: 'resume_unavailable' } });
      d.close();
    });
  });

  it('aborts and settles a chat nobody reclaims within the resume window, then refuses its resume', async () => {
    const t = await startApp({ WS_RESUME_WINDOW_MS: '150ms' });
    try {
      const slow = await buildSimulator({ deltas: 200, deltaDelayMs: 20 });
      const pipeline = simulatorPipeline(await slow.listen());
      (t.app.services as { chat?: unknown }).chat = pipeline;
      const user = await makeUser(t.app);
      const c = await connect(t, user);
      c.send({ type: 'chat', id: 'orphan', request: chatRequest() });
      await c.next((f) => f.type === 'chat.event');
      c.ws.terminate();
      for (let i = 0; i < 100 && pipeline.settled.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
      expect(pipeline.settled).toMatchObject([{ outcome: 'cancelled' }]);
      await new Promise((r) => setTimeout(r, 300));
      const d = await connect(t, user);
      d.send({ type: 'chat.resume', id: 'orphan', after_seq: 0 });
      expect(await d.next('chat.error')).toMatchObject({ error: { type: 'resume_unavailable' } });
      d.close();
      await slow.close();
    } finally {
      await t.close();
    }
  });

  it('shuts down gracefully during 50 streams: each completes or gets 1001, all usage recorded', async () => {
    const t = await startApp({ SHUTDOWN_TIMEOUT_MS: '1500' });
    const slow = await buildSimulator({ deltas: 60, deltaDelayMs: 25 });
    const pipeline = simulatorPipeline(await slow.listen());
    (t.app.services as { chat?: unknown }).chat = pipeline;
    const clients: TestClient[] = [];
    for (let u = 0; u < 5; u++) {
      const user = await makeUser(t.app);
      for (let k = 0; k < 2; k++) clients.push(await connect(t, user));
    }
    const ends = clients.flatMap((c, i) =>
      [0, 1, 2, 3, 4].map((j) => {
        const id = `s${i}-${j}`;
        c.send({ type: 'chat', id, request: chatRequest(`stream ${id}`, { metadata: { user_id: `u${j}` } }) });
        return collect(c, id, 8000).then((r) => r.end.type === 'chat.done' ? (r.end.outcome as string) : 'error', () => 'none');
      }),
    );
    await Promise.all(clients.map((c) => c.next((f) => f.type === 'chat.event')));
    const started = Date.now();
    await t.close();
    expect(Date.now() - started).toBeLessThan(5000);
    const closes = await Promise.all(clients.map((c) => c.closed));
    expect(closes.every((c) => c.code === 1001)).toBe(true);
    const outcomes = await Promise.all(ends);
    expect(outcomes.every((o) => o === 'complete' || o === 'cancelled')).toBe(true);
    expect(pipeline.settled).toHaveLength(50);
    await slow.close();
  });
});
