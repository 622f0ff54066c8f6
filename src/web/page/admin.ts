/** The admin section: users and permissions, upstream keys (masked), live connections, broadcast. */
import { api, fillTable } from './http.js';

interface Me {
  permissions: { capabilities: string[] };
}

const time = (ms: number | null | undefined) => (ms ? new Date(ms).toLocaleString() : '—');

function el<T extends HTMLElement>(id: string): T {
  return document.getElementById(id) as T;
}

async function loadUsers(): Promise<void> {
  const users = await api<{ data: Array<{ subject: string; name: string; status: string; roles: string[]; models: string[]; capabilities: string[]; last_login_at: number | null }> }>('/admin/users');
  fillTable(el('admin-users'), ['User', 'Status', 'Roles', 'Models', 'Capabilities', 'Last sign-in'],
    users.data.map((u) => [u.name && u.name !== u.subject ? `${u.name} (${u.subject})` : u.subject, u.status, u.roles.join(', '), u.models.join(', ') || '—', u.capabilities.join(', ') || '—', time(u.last_login_at)]));
}

async function loadKeys(): Promise<void> {
  const keys = await api<{ data: Array<{ name: string; last4: string; state: string; health: unknown; usage: { requests: number; errors: number; inputTokens: number; outputTokens: number; lastUsedAt: number | null } }> }>('/admin/keys');
  fillTable(el('admin-keys'), ['Key', 'Secret', 'State', 'Health', 'Requests', 'Errors', 'Tokens in / out', 'Last used'],
    keys.data.map((k) => [k.name, `…${k.last4}`, k.state, typeof k.health === 'string' ? k.health : JSON.stringify(k.health), String(k.usage.requests), String(k.usage.errors), `${k.usage.inputTokens} / ${k.usage.outputTokens}`, time(k.usage.lastUsedAt)]));
}

async function loadConnections(): Promise<void> {
  const list = await api<{ data: Array<{ id: string; user_id: string; ip: string; connected_at: number; in_flight: number }>; total: number }>('/admin/connections');
  fillTable(el('admin-connections'), ['Connection', 'User', 'IP', 'Connected', 'Chats'],
    list.data.map((c) => [c.id, c.user_id, c.ip, time(c.connected_at), String(c.in_flight)]));
}

/** Shows the admin section when the user has an admin capability, and wires its controls. */
export function setUpAdmin(me: Me): void {
  const caps = new Set(me.permissions.capabilities);
  if (!caps.has('manage_users') && !caps.has('manage_keys') && !caps.has('broadcast')) return;
  el('admin').hidden = false;
  const load = async () => {
    const jobs: Array<Promise<void>> = [];
    if (caps.has('manage_users')) jobs.push(loadUsers(), loadConnections());
    if (caps.has('manage_keys')) jobs.push(loadKeys());
    const results = await Promise.allSettled(jobs);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    el('broadcast-result').textContent = failed ? `Could not load everything: ${String((failed.reason as Error).message)}` : '';
  };
  el('admin-refresh').addEventListener('click', () => void load());
  el<HTMLFormElement>('broadcast').hidden = !caps.has('broadcast');
  el<HTMLFormElement>('broadcast').addEventListener('submit', (event) => {
    event.preventDefault();
    const text = el<HTMLTextAreaElement>('broadcast-text').value.trim();
    if (!text) return;
    api<{ targets: number }>('/admin/broadcast', { method: 'POST', body: { channel: 'announcement', data: { text } } }).then(
      (r) => (el('broadcast-result').textContent = `Sent to ${r.targets} connection(s).`),
      (err: Error) => (el('broadcast-result').textContent = `Not sent: ${err.message}`),
    );
  });
  void load();
}
