/**
 * The Portcullis WebSocket client (`portcullis.v1`, docs/protocol.md and docs/client.md).
 *
 * Guarantees:
 * - A chat's iterator sees every Anthropic event exactly once, in order, across reconnects:
 *   after a reconnect each unfinished chat is resumed with `chat.resume` from its last seq,
 *   and anything at or below that seq is dropped.
 * - Reconnection is automatic with full-jitter backoff (500 ms to 20 s by default); close
 *   codes decide: 1001/4008 reconnect at once, 4001 refreshes the credential then
 *   reconnects, 1008/1009 stop (every unfinished chat fails with ProtocolError).
 * - The credential is refreshed before it expires (and on `auth.expiring`), one refresh at a
 *   time, and handed to the live connection with `auth.refresh`.
 * No Node-only imports: the browser build is this directory compiled by tsc.
 */
import { backoffDelay } from './backoff.js';
import type { ChatCallbacks, ChatResult } from './chat.js';
import { ChatStream } from './chat.js';
import { Credentials } from './credentials.js';
import type { ErrorBody } from './errors.js';
import { AuthExpiredError, PortcullisError, ProtocolError, errorFromBody } from './errors.js';
import type { StreamEvent, Usage } from './message.js';
import type { ConnectivitySource, WebSocketConstructor, WebSocketLike } from './socket.js';
import { OPEN, browserConnectivity, globalWebSocket } from './socket.js';
import type { ClientOptions, ConnectionState, Listeners, StateDetail, Welcome } from './options.js';

type Frame = { type: string; [key: string]: unknown };
type Timer = ReturnType<typeof setTimeout>;
type TimerName = 'retry' | 'refresh' | 'heartbeat';
/** The longest delay a timer takes (2^31 - 1 ms, about 24.8 days). */
const MAX_TIMER_MS = 2 ** 31 - 1;
const CHAT_ID = /^[A-Za-z0-9_.:-]{1,128}$/;

export class PortcullisClient {
  private ws: WebSocketLike | null = null;
  private stateValue: ConnectionState = 'idle';
  private detail: StateDetail = { attempt: 0 };
  private readonly chats = new Map<string, ChatStream>();
  private readonly listeners: { [K in keyof Listeners]: Set<Listeners[K]> } = {
    state: new Set(), welcome: new Set(), broadcast: new Set(), error: new Set(), auth: new Set(),
  };
  private readonly credentials: Credentials;
  private readonly connectivity: ConnectivitySource | null;
  private readonly WS: WebSocketConstructor;
  private timers: Partial<Record<TimerName, Timer>> = {};
  private lastFrameAt = 0;
  private expiresAt: number | null = null;
  private welcomed = false;
  private stopped = false;
  private chatCounter = 0;
  private openWaiters: Array<{ resolve: () => void; reject: (e: PortcullisError) => void }> = [];
  /** The welcome of the current connection. */
  welcome: Welcome | null = null;

  constructor(private readonly options: ClientOptions) {
    const WS = options.WebSocket ?? globalWebSocket();
    if (!WS) throw new Error('No WebSocket available: pass the WebSocket option (e.g. the ws package in Node)');
    this.WS = WS;
    this.credentials = new Credentials(options, options.url);
    this.connectivity = options.connectivity === undefined ? (browserConnectivity() ?? null) : options.connectivity;
    this.connectivity?.addEventListener('online', this.onOnline);
    this.connectivity?.addEventListener('offline', this.onOffline);
  }

  get state(): ConnectionState {
    return this.stateValue;
  }

  /** Subscribes to an event; returns the unsubscribe function. */
  on<K extends keyof Listeners>(event: K, listener: Listeners[K]): () => void {
    this.listeners[event].add(listener);
    return () => this.listeners[event].delete(listener);
  }

  /** Opens the connection (if not open); resolves at the server's `welcome`. */
  connect(): Promise<void> {
    if (this.stateValue === 'open') return Promise.resolve();
    if (this.stopped) return Promise.reject(this.detail.error ?? new ProtocolError('client_closed', 'the client is closed'));
    const waiting = new Promise<void>((resolve, reject) => this.openWaiters.push({ resolve, reject }));
    if (this.stateValue === 'idle') void this.open();
    return waiting;
  }

  /**
   * Starts a chat (connecting first if needed). `request` is a Messages API body; the
   * returned stream is an async iterable of its events with callbacks, `finalMessage()`
   * and `cancel()`. Refusals (rate limit, permissions…) end it with a typed error.
   */
  chat(request: Record<string, unknown>, options: ChatCallbacks & { id?: string } = {}): ChatStream {
    this.chatCounter += 1;
    const id = options.id ?? `c${Date.now().toString(36)}${this.chatCounter}${Math.floor(Math.random() * 1e6).toString(36)}`;
    if (!CHAT_ID.test(id)) throw new Error('chat id: expected 1 to 128 letters, digits, _ . : -');
    if (this.chats.has(id)) throw new Error(`chat id ${id} is already in use`);
    const chat = new ChatStream(id, request, options, (c) => this.cancelChat(c));
    if (this.stopped) {
      chat.fail(this.detail.error ?? new ProtocolError('client_closed', 'the client is closed'));
      return chat;
    }
    this.chats.set(id, chat);
    if (this.stateValue === 'open') this.sendChat(chat);
    else if (this.stateValue === 'idle') void this.open();
    return chat;
  }

  /** Closes for good: no reconnect; unfinished chats fail with ProtocolError `client_closed`. */
  close(): void {
    this.stop(new ProtocolError('client_closed', 'the client was closed'));
  }

  // ---- connection lifecycle ----

  private async open(): Promise<void> {
    if (this.stopped || this.ws) return;
    this.setState(this.detail.attempt === 0 && !this.welcome ? 'connecting' : 'reconnecting');
    let token: string | null;
    try {
      if (this.expiresAt !== null && this.expiresAt < Date.now() + 5_000 && this.credentials.canRefresh) await this.refreshCredential();
      token = await this.credentials.connectToken();
    } catch (err) {
      if (err instanceof AuthExpiredError) return this.stop(err);
      return this.scheduleReconnect(undefined);
    }
    if (this.stopped || this.ws) return;
    const protocols = token ? ['portcullis.v1', `bearer.${token}`] : ['portcullis.v1'];
    const ws = new this.WS(this.options.url, protocols);
    this.ws = ws;
    this.welcomed = false;
    ws.onmessage = (event) => this.onFrame(ws, event.data);
    ws.onerror = () => {};
    ws.onclose = (event) => this.onClose(ws, event.code);
  }

  private onFrame(ws: WebSocketLike, data: unknown): void {
    if (ws !== this.ws) return;
    this.lastFrameAt = Date.now();
    let frame: Frame;
    try {
      frame = JSON.parse(String(data)) as Frame;
    } catch {
      return;
    }
    const chat = typeof frame.id === 'string' ? this.chats.get(frame.id) : undefined;
    switch (frame.type) {
      case 'welcome':
        return this.onWelcome(frame as unknown as Welcome);
      case 'chat.event':
        chat?.pushEvent(frame.seq as number, frame.event as StreamEvent);
        return;
      case 'chat.done':
        if (!chat) return;
        this.chats.delete(chat.id);
        chat.finish({ outcome: frame.outcome as ChatResult['outcome'], usage: (frame.usage ?? null) as Usage | null, stopReason: (frame.stop_reason ?? null) as string | null });
        return;
      case 'chat.error': {
        if (!chat) return;
        const error = frame.error as ErrorBody;
        // A chat sent just before the socket died may never have reached the server: start it again.
        if (error.type === 'resume_unavailable' && chat.lastSeq === -1 && !chat.restarted) {
          chat.restarted = true;
          this.sendChat(chat);
          return;
        }
        this.chats.delete(chat.id);
        chat.fail(errorFromBody(error, frame.retry_after_ms as number | undefined));
        return;
      }
      case 'auth.ok':
        this.setExpiry((frame.expires_at ?? null) as number | null);
        return;
      case 'auth.expiring':
        void this.refreshAndSend();
        return;
      case 'broadcast':
        for (const l of this.listeners.broadcast) l(frame.channel as string, frame.data);
        return;
      case 'error': {
        const error = errorFromBody(frame.error as ErrorBody);
        if (chat) {
          this.chats.delete(chat.id);
          chat.fail(error);
        } else this.emitError(error);
        return;
      }
      default:
        return;
    }
  }

  private onWelcome(welcome: Welcome): void {
    this.welcome = welcome;
    this.welcomed = true;
    this.detail = { attempt: 0 };
    this.setExpiry(welcome.expires_at);
    this.startHeartbeat(welcome.heartbeat_ms);
    this.setState('open');
    for (const chat of this.chats.values()) {
      if (!chat.sent) this.sendChat(chat);
      else this.send({ type: 'chat.resume', id: chat.id, after_seq: chat.lastSeq });
      if (chat.cancelRequested) this.send({ type: 'chat.cancel', id: chat.id });
    }
    for (const l of this.listeners.welcome) l(welcome);
    const waiters = this.openWaiters;
    this.openWaiters = [];
    for (const w of waiters) w.resolve();
  }

  private onClose(ws: WebSocketLike, code: number): void {
    if (ws !== this.ws) return;
    this.ws = null;
    this.clearTimer('heartbeat');
    this.clearTimer('refresh');
    if (this.stopped) return;
    const wasOpen = this.welcomed;
    if (code === 1008 || code === 1009) {
      return this.stop(new ProtocolError('connection_closed', `the server closed the connection with ${code}; not reconnecting`, code));
    }
    if (this.connectivity && !this.connectivity.isOnline()) {
      this.setState('offline', { attempt: this.detail.attempt, closeCode: code });
      return;
    }
    if (code === 4001 && this.credentials.canRefresh) {
      void this.refreshCredential().then(
        () => this.scheduleReconnect(code, 0),
        (err: unknown) => (err instanceof AuthExpiredError ? this.stop(err) : this.scheduleReconnect(code)),
      );
      return;
    }
    if (code === 4001) return this.stop(new AuthExpiredError('authentication_error', 'the session expired or was revoked: sign in again'));
    // Refused before the welcome (a browser cannot see why): an expired credential is the usual cause.
    if (!wasOpen && this.detail.attempt >= 1 && this.credentials.canRefresh) {
      void this.refreshCredential().then(
        () => this.scheduleReconnect(code),
        (err: unknown) => (err instanceof AuthExpiredError ? this.stop(err) : this.scheduleReconnect(code)),
      );
      return;
    }
    this.scheduleReconnect(code, wasOpen && (code === 1001 || code === 4008) ? 0 : undefined);
  }

  /** Waits (backoff, or `delayMs`) then opens a new socket. */
  private scheduleReconnect(closeCode: number | undefined, delayMs?: number): void {
    if (this.stopped) return;
    const attempt = this.detail.attempt;
    const delay = delayMs ?? backoffDelay(attempt, this.options.backoff, this.options.random);
    this.detail = { attempt: attempt + 1, retryAt: Date.now() + delay, ...(closeCode !== undefined ? { closeCode } : {}) };
    this.setState('reconnecting', this.detail);
    this.clearTimer('retry');
    this.timers.retry = setTimeout(() => void this.open(), delay);
  }

  private stop(error: PortcullisError): void {
    if (this.stopped) return;
    this.stopped = true;
    for (const name of ['retry', 'refresh', 'heartbeat'] as const) this.clearTimer(name);
    this.connectivity?.removeEventListener('online', this.onOnline);
    this.connectivity?.removeEventListener('offline', this.onOffline);
    const ws = this.ws;
    this.ws = null;
    if (ws) ws.close(1000);
    const chats = [...this.chats.values()];
    this.chats.clear();
    for (const chat of chats) chat.fail(error);
    const waiters = this.openWaiters;
    this.openWaiters = [];
    for (const w of waiters) w.reject(error);
    this.detail = { attempt: this.detail.attempt, error };
    this.setState('closed', this.detail);
    if (error.type !== 'client_closed') this.emitError(error);
  }

  private readonly onOnline = (): void => {
    if (this.stateValue !== 'offline' && this.stateValue !== 'reconnecting') return;
    this.clearTimer('retry');
    this.detail = { attempt: 0 };
    void this.open();
  };

  private readonly onOffline = (): void => {
    if (this.stopped) return;
    this.clearTimer('retry');
    const ws = this.ws;
    this.ws = null;
    this.clearTimer('heartbeat');
    this.clearTimer('refresh');
    ws?.close(1000);
    this.setState('offline', { attempt: this.detail.attempt });
  };

  /** Client pings keep proxies from idling the socket out and detect a dead link. */
  private startHeartbeat(heartbeatMs: number): void {
    this.clearTimer('heartbeat');
    const every = Math.max(1_000, heartbeatMs);
    const tick = () => {
      const ws = this.ws;
      if (!ws) return;
      if (Date.now() - this.lastFrameAt > every + 10_000) {
        ws.onclose = null;
        ws.close(4000);
        this.onClose(ws, 1006);
        return;
      }
      this.send({ type: 'ping' });
      this.timers.heartbeat = setTimeout(tick, every);
    };
    this.timers.heartbeat = setTimeout(tick, every);
  }

  // ---- credentials ----

  private setExpiry(expiresAt: number | null): void {
    this.expiresAt = expiresAt;
    for (const l of this.listeners.auth) l(expiresAt);
    this.armRefresh();
  }

  /** Refreshes the credential a little before it expires. */
  private armRefresh(): void {
    this.clearTimer('refresh');
    const expiresAt = this.expiresAt;
    if (expiresAt === null || !this.credentials.canRefresh) return;
    const remaining = expiresAt - Date.now();
    const lead = this.options.refreshLeadMs ?? Math.min(60_000, remaining / 2);
    const delay = Math.max(0, remaining - lead);
    // A longer timer fires at once (Node and browsers alike): a far expiry, a personal token's, is armed in steps.
    this.timers.refresh = delay > MAX_TIMER_MS ? setTimeout(() => this.armRefresh(), MAX_TIMER_MS) : setTimeout(() => void this.refreshAndSend(), delay);
  }

  private async refreshCredential(): Promise<string | null> {
    const info = await this.credentials.refresh();
    if (info?.expiresAt !== undefined && !this.ws) this.expiresAt = info.expiresAt;
    return info?.token ?? null;
  }

  /** Refreshes and hands the new token to the live connection (`auth.refresh`). */
  private async refreshAndSend(): Promise<void> {
    try {
      const token = await this.refreshCredential();
      if (token) this.send({ type: 'auth.refresh', token });
    } catch (err) {
      if (err instanceof AuthExpiredError) this.stop(err);
      else this.emitError(new PortcullisError('refresh_failed', err instanceof Error ? err.message : String(err)));
    }
  }

  // ---- helpers ----

  private sendChat(chat: ChatStream): void {
    if (this.send({ type: 'chat', id: chat.id, request: chat.request })) chat.sent = true;
  }

  private cancelChat(chat: ChatStream): void {
    if (!chat.sent) {
      this.chats.delete(chat.id);
      chat.finish({ outcome: 'cancelled', usage: null, stopReason: null });
      return;
    }
    if (this.stateValue === 'open') this.send({ type: 'chat.cancel', id: chat.id });
    // Otherwise onWelcome sends the cancel after the resume.
  }

  private send(frame: Frame): boolean {
    const ws = this.ws;
    if (!ws || ws.readyState !== OPEN || !this.welcomed) return false;
    try {
      ws.send(JSON.stringify(frame));
      return true;
    } catch {
      return false;
    }
  }

  private setState(state: ConnectionState, detail: StateDetail = this.detail): void {
    this.detail = detail;
    if (state === this.stateValue && state !== 'reconnecting') return;
    this.stateValue = state;
    for (const l of this.listeners.state) l(state, detail);
  }

  private emitError(error: PortcullisError): void {
    for (const l of this.listeners.error) l(error);
  }

  private clearTimer(name: TimerName): void {
    const t = this.timers[name];
    if (t !== undefined) clearTimeout(t);
    delete this.timers[name];
  }
}
