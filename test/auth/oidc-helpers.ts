/**
 * Drives sign-in flows with plain fetch: manual redirects, a cookie jar per origin, and
 * oidc-provider's development login and consent forms.
 */
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** Cookies per origin (paths ignored: every test path is under the cookie's path or close enough). */
export class CookieJar {
  private readonly jars = new Map<string, Map<string, string>>();

  store(url: string, response: Response): void {
    const origin = new URL(url).origin;
    const jar = this.jars.get(origin) ?? new Map<string, string>();
    this.jars.set(origin, jar);
    for (const line of response.headers.getSetCookie()) {
      const [pair, ...attributes] = line.split(';');
      const eq = pair!.indexOf('=');
      const name = pair!.slice(0, eq).trim();
      const value = pair!.slice(eq + 1).trim();
      const expired = attributes.some((a) => /^\s*max-age=0\s*$/i.test(a) || (/^\s*expires=/i.test(a) && Date.parse(a.split('=')[1]!) < Date.now()));
      if (expired || value === '') jar.delete(name);
      else jar.set(name, decodeURIComponent(value));
    }
  }

  header(url: string): string {
    const jar = this.jars.get(new URL(url).origin);
    return jar ? [...jar].map(([k, v]) => `${k}=${encodeURIComponent(v)}`).join('; ') : '';
  }

  get(origin: string, name: string): string | undefined {
    return this.jars.get(origin)?.get(name);
  }

  all(origin: string): Map<string, string> {
    return new Map(this.jars.get(origin) ?? []);
  }

  delete(origin: string, name: string): void {
    this.jars.get(origin)?.delete(name);
  }
}

export async function send(jar: CookieJar, url: string, init: { method?: string; form?: Record<string, string>; accept?: string } = {}): Promise<Response> {
  const headers: Record<string, string> = { accept: init.accept ?? 'application/json' };
  const cookie = jar.header(url);
  if (cookie) headers.cookie = cookie;
  let body: string | undefined;
  if (init.form) {
    headers['content-type'] = 'application/x-www-form-urlencoded';
    body = new URLSearchParams(init.form).toString();
  }
  const response = await fetch(url, { method: init.method ?? (init.form ? 'POST' : 'GET'), headers, body, redirect: 'manual' });
  jar.store(url, response);
  return response;
}

function location(response: Response, base: string): string {
  const value = response.headers.get('location');
  if (!value) throw new Error(`expected a redirect from ${base}, got ${response.status}`);
  return new URL(value, base).href;
}

/**
 * Starts a login at the gateway and walks the provider's pages (login form with `name`,
 * then consent) until the provider redirects to the gateway's callback; returns that
 * callback URL without following it.
 */
export async function loginAtProvider(
  jar: CookieJar,
  gateway: string,
  name: string,
  query = '',
  callbackBase = gateway,
): Promise<{ callback: string; authorize: URL }> {
  const start = await send(jar, `${gateway}/auth/login${query}`);
  if (start.status !== 302) throw new Error(`login start answered ${start.status}: ${await start.text()}`);
  const authorize = new URL(location(start, gateway));
  let url = authorize.href;
  for (let step = 0; step < 20; step += 1) {
    if (url.startsWith(`${callbackBase}/auth/callback`)) return { callback: url, authorize };
    const response = await send(jar, url, { accept: 'text/html' });
    if (response.status >= 300 && response.status < 400) {
      url = location(response, url);
      continue;
    }
    const html = await response.text();
    const action = /<form[^>]*action="([^"]+)"/.exec(html)?.[1];
    if (response.status !== 200 || !action) throw new Error(`unexpected provider page ${response.status}: ${html.slice(0, 300)}`);
    const prompt = /name="prompt" value="(\w+)"/.exec(html)?.[1];
    const form: Record<string, string> = prompt === 'login' ? { prompt, login: name, password: 'any' } : { prompt: prompt ?? 'consent' };
    const posted = await send(jar, new URL(action.replace(/&amp;/g, '&'), url).href, { form, accept: 'text/html' });
    url = location(posted, url);
  }
  throw new Error('the provider flow did not reach the callback in 20 steps');
}

/** Follows the callback at the gateway (GET) and returns its answer. */
export function finishLogin(jar: CookieJar, callback: string, accept = 'application/json'): Promise<Response> {
  return send(jar, callback, { accept });
}

export interface LateServer {
  url: string;
  /** Sets the handler once it can be built (it may need the URL). */
  handle(handler: (req: IncomingMessage, res: ServerResponse) => void): void;
  close(): Promise<void>;
}

/** An HTTP server on 127.0.0.1, port 0, whose handler is attached after it listens. */
export async function lateServer(): Promise<LateServer> {
  let handler: ((req: IncomingMessage, res: ServerResponse) => void) | undefined;
  const server: Server = createServer((req, res) => {
    if (handler) handler(req, res);
    else res.writeHead(503).end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    handle: (h) => {
      handler = h;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** The reason code of a JSON error answer. */
export async function reasonOf(response: Response): Promise<string | undefined> {
  const body = (await response.json()) as { error?: { code?: string } };
  return body.error?.code;
}
