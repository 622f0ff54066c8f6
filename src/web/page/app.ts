/**
 * The chat page: sign-in state, model picker, streaming replies over `portcullis/client`
 * (cookie credential), stop, connection state, rate-limit notices, sign out, and the admin
 * section for admins. Plain DOM, no framework; text is only ever set as text.
 */
import { PortcullisClient, RateLimitedError } from '../../client/index.js';
import type { ChatStream, ConnectionState, PortcullisError, StateDetail } from '../../client/index.js';
import { setUpAdmin } from './admin.js';
import { HttpError, api } from './http.js';
import { renderMarkdown } from './markdown.js';

interface Me {
  subject: string;
  name: string | null;
  roles: string[];
  permissions: { capabilities: string[]; models: string[] };
}
interface Turn {
  role: 'user' | 'assistant';
  content: string;
}

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const STATE_TEXT: Record<ConnectionState, string> = {
  idle: 'Not connected',
  connecting: 'Connecting…',
  open: 'Connected',
  reconnecting: 'Connection lost: reconnecting…',
  offline: 'Offline: waiting for the network',
  closed: 'Disconnected',
};

let client: PortcullisClient | null = null;
let running: ChatStream | null = null;
let history: Turn[] = [];
let noticeTimer: ReturnType<typeof setInterval> | undefined;

function showNotice(text: string | null): void {
  clearInterval(noticeTimer);
  $('notice').hidden = text === null;
  $('notice').textContent = text ?? '';
}

function showRateLimit(error: RateLimitedError): void {
  const until = Date.now() + (error.retryAfterMs ?? 0);
  const tick = () => {
    const left = Math.max(0, Math.ceil((until - Date.now()) / 1000));
    $('notice').textContent = left > 0 ? `Rate limit reached: you can send again in ${left} s.` : 'You can send again now.';
    if (left === 0) clearInterval(noticeTimer);
  };
  showNotice('');
  $('notice').dataset.kind = 'rate-limit';
  tick();
  noticeTimer = setInterval(tick, 1000);
}

function setConnState(state: ConnectionState, detail: StateDetail): void {
  const conn = $('conn');
  conn.dataset.state = state;
  let text = STATE_TEXT[state];
  if (state === 'reconnecting' && detail.retryAt) text += ` (attempt ${detail.attempt})`;
  if (state === 'closed' && detail.error) text += `: ${detail.error.message}`;
  conn.textContent = text;
}

function bubble(role: Turn['role'], text = ''): HTMLElement {
  const div = document.createElement('div');
  div.className = `msg ${role}`;
  const label = document.createElement('span');
  label.className = 'role';
  label.textContent = role === 'user' ? 'You' : 'Claude';
  const body = document.createElement('div');
  body.className = 'body';
  if (role === 'user') body.textContent = text;
  div.append(label, body);
  $('transcript').append(div);
  div.scrollIntoView({ block: 'end' });
  return div;
}

function renderReply(div: HTMLElement, text: string): void {
  div.querySelector('.body')!.replaceChildren(renderMarkdown(text));
}

function setStatus(div: HTMLElement, state: string, text: string | null): void {
  div.dataset.state = state;
  if (text === null) return;
  const status = document.createElement('span');
  status.className = 'status';
  status.textContent = text;
  div.append(status);
}

function setRunning(chat: ChatStream | null): void {
  running = chat;
  $<HTMLButtonElement>('stop').disabled = chat === null;
  $<HTMLButtonElement>('send').disabled = chat !== null;
}

function send(text: string): void {
  if (!client || running) return;
  const model = $<HTMLSelectElement>('model').value;
  showNotice(null);
  bubble('user', text);
  const reply = bubble('assistant');
  setStatus(reply, 'streaming', null);
  const messages = [...history, { role: 'user' as const, content: text }];
  let frame = 0;
  const chat = client.chat(
    { model, max_tokens: 4096, messages },
    {
      onText: () => {
        if (frame) return;
        frame = requestAnimationFrame(() => {
          frame = 0;
          renderReply(reply, chat.text);
        });
      },
    },
  );
  setRunning(chat);
  chat.done().then(
    (result) => {
      cancelAnimationFrame(frame);
      renderReply(reply, chat.text);
      setStatus(reply, result.outcome, result.outcome === 'cancelled' ? 'Stopped.' : null);
      if (chat.text) history = [...messages, { role: 'assistant', content: chat.text }];
    },
    (err: PortcullisError) => {
      cancelAnimationFrame(frame);
      renderReply(reply, chat.text);
      setStatus(reply, 'error', `Failed: ${err.message}`);
      if (err instanceof RateLimitedError) showRateLimit(err);
      else showNotice(err.message);
    },
  ).finally(() => {
    setRunning(null);
    $('prompt').focus();
  });
}

async function loadModels(): Promise<void> {
  const select = $<HTMLSelectElement>('model');
  try {
    const list = await api<{ data: Array<{ id: string; display_name?: string }> }>('/v1/models', { headers: { 'anthropic-version': '2023-06-01' } });
    select.replaceChildren(...list.data.map((m) => new Option(m.display_name ? `${m.display_name} (${m.id})` : m.id, m.id)));
    if (list.data.length === 0) select.append(new Option('No model is allowed for you', ''));
  } catch (err) {
    select.replaceChildren(new Option('Models unavailable', ''));
    showNotice(`Could not load the models: ${(err as Error).message}`);
  }
}

/** /auth/me, refreshing the session cookie once when the access cookie has expired. */
async function whoAmI(): Promise<Me | null> {
  try {
    return await api<Me>('/auth/me');
  } catch (err) {
    if (!(err instanceof HttpError) || err.status !== 401) throw err;
  }
  try {
    await api('/auth/refresh', { method: 'POST' });
    return await api<Me>('/auth/me');
  } catch {
    return null;
  }
}

function showSignedOut(): void {
  client?.close();
  client = null;
  $('whoami').hidden = true;
  $('chat').hidden = true;
  $('admin').hidden = true;
  $('signin').hidden = false;
  $('signin-link').focus();
}

async function start(): Promise<void> {
  api<{ demo: boolean }>('/api/info').then((info) => ($('demo-banner').hidden = !info.demo), () => {});
  const me = await whoAmI().catch(() => null);
  if (!me) return showSignedOut();
  $('who-name').textContent = me.name && me.name !== me.subject ? `${me.name} (${me.subject})` : me.subject;
  $('whoami').hidden = false;
  $('chat').hidden = false;
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  client = new PortcullisClient({ url: `${scheme}//${location.host}/v1/ws` });
  client.on('state', setConnState);
  client.on('error', (err) => {
    if (err.name === 'AuthExpiredError') showSignedOut();
  });
  client.on('broadcast', (channel, data) => {
    const text = typeof data === 'object' && data !== null && 'text' in data ? String((data as { text: unknown }).text) : JSON.stringify(data);
    showNotice(`Announcement (${channel}): ${text}`);
  });
  void client.connect().catch(() => {});
  await loadModels();
  setUpAdmin(me);
  $('prompt').focus();
}

function wire(): void {
  const prompt = $<HTMLTextAreaElement>('prompt');
  $<HTMLFormElement>('composer').addEventListener('submit', (event) => {
    event.preventDefault();
    const text = prompt.value.trim();
    if (!text || running) return;
    prompt.value = '';
    send(text);
  });
  prompt.addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $<HTMLFormElement>('composer').requestSubmit();
    }
  });
  $('stop').addEventListener('click', () => running?.cancel());
  $('new-chat').addEventListener('click', () => {
    running?.cancel();
    history = [];
    $('transcript').replaceChildren();
    showNotice(null);
    prompt.focus();
  });
  $('signout').addEventListener('click', () => {
    api('/auth/logout', { method: 'POST' }).then(showSignedOut, (err: Error) => showNotice(`Sign out failed: ${err.message}`));
  });
}

wire();
void start();
