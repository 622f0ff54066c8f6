/** Same-origin JSON requests for the page: the session cookie, and the CSRF header on state changes. */
import { documentCsrfToken } from '../../client/index.js';

export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** Fetches `path` as JSON; throws HttpError with the gateway's message on a non-2xx answer. */
export async function api<T>(path: string, init: { method?: string; body?: unknown; headers?: Record<string, string> } = {}): Promise<T> {
  const method = init.method ?? 'GET';
  const headers: Record<string, string> = { ...init.headers };
  if (method !== 'GET') headers['x-csrf-token'] = documentCsrfToken() ?? '';
  if (init.body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(path, { method, headers, credentials: 'same-origin', ...(init.body !== undefined ? { body: JSON.stringify(init.body) } : {}) });
  if (res.status === 204) return undefined as T;
  const body = (await res.json().catch(() => null)) as { error?: { message?: string } } | null;
  if (!res.ok) throw new HttpError(res.status, body?.error?.message ?? `${method} ${path}: ${res.status}`);
  return body as T;
}

/** Replaces `table`'s rows with `rows` (text cells only). */
export function fillTable(table: HTMLTableElement, head: string[], rows: string[][]): void {
  const caption = table.caption;
  table.replaceChildren();
  if (caption) table.append(caption);
  const thead = table.createTHead().insertRow();
  for (const h of head) {
    const th = document.createElement('th');
    th.scope = 'col';
    th.textContent = h;
    thead.append(th);
  }
  const body = table.createTBody();
  if (rows.length === 0) {
    const cell = body.insertRow().insertCell();
    cell.colSpan = head.length;
    cell.textContent = 'None';
  }
  for (const row of rows) {
    const tr = body.insertRow();
    for (const value of row) tr.insertCell().textContent = value;
  }
}
