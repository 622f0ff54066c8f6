/**
 * portcullis/client against a real gateway (simulator upstream, real key) over `ws`:
 * event order and accumulation, cancel, typed errors, reconnect + resume after the link
 * drops mid-reply, token refresh before expiry, and no reconnect after 1008.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { AuthExpiredError, PortcullisClient, ProtocolError, RateLimitedError, PermissionDeniedError, InvalidRequestError, OverloadedError } from '../../src/client/index.js';
import type { ConnectionState, StreamEvent, WebSocketConstructor } from '../../src/client/index.js';
import { startTcpProxy } from '../helpers/tcp-proxy.js';
import type { Gateway } from './helpers.js';
import { clientFor, expectedEcho, makeUser, slowRequest, startGateway, until } from './helpers.js';

describe('portcullis/client', () => {
  let gw: Gateway;
  beforeAll(async () => {
    gw = await startGateway({ RATE_LIMIT_TIERS: '{"strict":{"rpm":1}}' });
  });
  afterAll(async () => gw?.close());

  it('yields every Anthropic event in order and accumulates the final message like the SDK', async () => {
    const { client } = await clientFor(gw.app, gw.url);
    const request = slowRequest('order', 8, 0);
    const texts: string[] = [];
    const chat = client.chat(request, { onText: (delta) => texts.push(delta) });
    const types: string[] = [];
    for await (const event of chat) if (event.type !== 'ping') types.push(event.type);
    expect(types[0]).toBe('message_start');
    expect(types[1]).toBe('content_block_start');
    expect(types.slice(2, 10)).toEqual(Array(8).fill('content_block_delta'));
    expect(types.slice(10)).toEqual(['content_block_stop', 'message_delta', 'message_stop']);
    const message = await chat.finalMessage();
    expect(message.content).toEqual([{ type: 'text', text: expectedEcho(request) }]);
    expect(message.stop_reason).toBe('end_turn');
    const served = gw.simulator.requests.at(-1)!;
    expect(message.usage.output_tokens).toBe(served.usage?.output_tokens);
    expect(texts.join('')).toBe(expectedEcho(request));
    expect((await chat.done()).outcome).toBe('complete');
    client.close();
  });

  it('cancel stops the reply midway: the chat ends cancelled with the text so far', async () => {
    const { client } = await clientFor(gw.app, gw.url);
    const request = slowRequest('cancel', 60, 20);
    let deltas = 0;
    const chat = client.chat(request, {
      onEvent: (e) => {
        if (e.type === 'content_block_delta' && ++deltas === 3) chat.cancel();
      },
    });
    const result = await chat.done();
    expect(result.outcome).toBe('cancelled');
    const text = chat.text;
    expect(text.length).toBeGreaterThan(0);
    expect(expectedEcho(request).startsWith(text)).toBe(true);
    expect(text.length).toBeLessThan(expectedEcho(request).length);
    client.close();
  });

  it('typed errors: rate limited with retry-after, model not allowed, bad request, overloaded', async () => {
    const { client, userId } = await clientFor(gw.app, gw.url);
    await gw.app.services.users.setLimits(userId, { rateTier: 'strict' });
    const first = client.chat(slowRequest('one', 2, 0));
    expect((await first.done()).outcome).toBe('complete');
    const second = client.chat(slowRequest('two', 2, 0));
    const err = await second.done().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RateLimitedError);
    expect((err as RateLimitedError).retryAfterMs).toBeGreaterThan(0);
    client.close();

    const other = await clientFor(gw.app, gw.url);
    const denied = other.client.chat({ ...slowRequest('x', 2, 0), model: 'not-a-model-anyone-may-use' });
    const deniedErr = await denied.finalMessage().catch((e: unknown) => e);
    expect(deniedErr instanceof PermissionDeniedError || deniedErr instanceof InvalidRequestError).toBe(true);
    const bad = other.client.chat({ model: 'claude-sonnet-4-5', messages: [] });
    await expect(bad.done()).rejects.toBeInstanceOf(InvalidRequestError);
    const overloaded = other.client.chat({
      model: 'claude-sonnet-4-5',
      max_tokens: 100,
      messages: [{ role: 'user', content: 'busy <<sim:{"status":529}>>' }],
    });
    const events: StreamEvent[] = [];
    const iterErr = await (async () => {
      for await (const e of overloaded) events.push(e);
    })().catch((e: unknown) => e);
    expect(iterErr).toBeInstanceOf(OverloadedError);
    other.client.close();
  });

  it('reconnects after the link drops mid-reply and resumes: no gap, no duplicate', async () => {
    const port = Number(new URL(gw.url).port);
    const proxy = await startTcpProxy({ host: '127.0.0.1', port });
    try {
      const { client } = await clientFor(gw.app, `ws://127.0.0.1:${proxy.port}/v1/ws`);
      const states: ConnectionState[] = [];
      client.on('state', (s) => states.push(s));
      const request = slowRequest('resume', 40, 25);
      const servedBefore = gw.simulator.requests.length;
      let deltas = 0;
      let cut = false;
      const chat = client.chat(request, {
        onEvent: (e) => {
          if (e.type !== 'content_block_delta') return;
          deltas += 1;
          if (deltas === 5 && !cut) {
            cut = true;
            void proxy.cut().then(() => setTimeout(() => void proxy.restore(), 300));
          }
        },
      });
      const text = await chat.finalText();
      expect(text).toBe(expectedEcho(request));
      expect(deltas).toBe(40);
      // Resumed, not restarted: the upstream served this chat once.
      expect(gw.simulator.requests.length - servedBefore).toBe(1);
      expect(states).toContain('reconnecting');
      expect(client.state).toBe('open');
      client.close();
    } finally {
      await proxy.close();
    }
  });

  it('refreshes the token before it expires and hands it to the live connection', async () => {
    const local = await startGateway({ ACCESS_TOKEN_TTL: '10s' });
    try {
      let refreshToken = '';
      let refreshes = 0;
      const { client, refreshToken: first } = await clientFor(local.app, local.url, {
        refreshLeadMs: 9_000,
        refresh: async () => {
          refreshes += 1;
          const tokens = await local.app.services.sessions.refresh(refreshToken, { ip: '127.0.0.1', userAgent: 'test' });
          refreshToken = tokens.refreshToken;
          return { token: tokens.accessToken, expiresAt: Date.now() + tokens.expiresIn * 1000 };
        },
      });
      refreshToken = first;
      const expiries: Array<number | null> = [];
      client.on('auth', (e) => expiries.push(e));
      await client.connect();
      const firstExpiry = client.welcome!.expires_at!;
      const connectionId = client.welcome!.connection_id;
      await until(() => expiries.some((e) => e !== null && e > firstExpiry), 5_000, 'auth.ok with a later expiry');
      expect(refreshes).toBeGreaterThanOrEqual(1);
      expect(Date.now()).toBeLessThan(firstExpiry);
      const chat = client.chat(slowRequest('after refresh', 2, 0));
      expect((await chat.done()).outcome).toBe('complete');
      expect(client.welcome!.connection_id).toBe(connectionId);
      client.close();
    } finally {
      await local.close();
    }
  });

  it('does not refresh a personal token that expires in 30 days (a timer that long would fire at once)', async () => {
    const user = await makeUser(gw.app);
    const expiresAt = Date.now() + 30 * 86_400_000;
    const { token } = await gw.app.services.personalTokens.create(user.id, { name: 'far', expiresAt });
    let refreshes = 0;
    const client = new PortcullisClient({
      url: gw.url,
      token,
      WebSocket: WebSocket as unknown as WebSocketConstructor,
      connectivity: null,
      refresh: async () => {
        refreshes += 1;
        return { token, expiresAt };
      },
    });
    await client.connect();
    expect(client.welcome!.expires_at).toBe(expiresAt);
    await new Promise((r) => setTimeout(r, 300));
    expect(refreshes).toBe(0);
    client.close();
  });

  it('does not reconnect after 1008: the state is closed and unfinished chats fail', async () => {
    const admin = await clientFor(gw.app, gw.url, { roles: ['admin'] });
    const { client, userId } = await clientFor(gw.app, gw.url);
    await client.connect();
    const chat = client.chat(slowRequest('kicked', 60, 30));
    await until(() => chat.lastSeq >= 2, 5_000, 'first events');
    const res = await fetch(`${gw.http}/admin/connections/${client.welcome!.connection_id}`, { method: 'DELETE', headers: { authorization: `Bearer ${admin.token}` } });
    expect(res.status).toBe(204);
    const err = await chat.done().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ProtocolError);
    expect((err as ProtocolError).closeCode).toBe(1008);
    expect(client.state).toBe('closed');
    // Backoff is 20 ms: a reconnect would have happened well within this wait.
    await new Promise((r) => setTimeout(r, 300));
    const list = (await (await fetch(`${gw.http}/admin/connections?user_id=${userId}`, { headers: { authorization: `Bearer ${admin.token}` } })).json()) as { count: number };
    expect(list.count).toBe(0);
    admin.client.close();
  });

  it('4001 with a refused refresh stops with AuthExpiredError instead of reconnecting', async () => {
    let refreshes = 0;
    const { client } = await clientFor(gw.app, gw.url, {
      refresh: async () => {
        refreshes += 1;
        throw new AuthExpiredError('authentication_error', 'session revoked');
      },
    });
    await client.connect();
    const errors: unknown[] = [];
    client.on('error', (e) => errors.push(e));
    const chat = client.chat(slowRequest('revoked', 60, 30));
    await until(() => chat.lastSeq >= 1, 5_000, 'first events');
    const sessionId = (await gw.app.services.sessions.list(client.welcome!.user.id))[0]!.id;
    await gw.app.services.sessions.revoke(sessionId, 'admin_revoked');
    await expect(chat.done()).rejects.toBeInstanceOf(AuthExpiredError);
    expect(refreshes).toBe(1);
    expect(client.state).toBe('closed');
    expect(errors[0]).toBeInstanceOf(AuthExpiredError);
  });

  it('refuses to start without a WebSocket implementation', () => {
    const g = globalThis as { WebSocket?: unknown };
    if (typeof g.WebSocket === 'function') return;
    expect(() => new PortcullisClient({ url: 'ws://127.0.0.1:1/v1/ws', token: 't' })).toThrow(/WebSocket/);
    expect(WebSocket).toBeDefined();
  });
});
