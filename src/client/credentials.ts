/**
 * Where the client's credential comes from and how it is renewed: a bearer token (with an
 * optional refresh callback), or the gateway's session cookie (renewed with
 * `POST /auth/refresh`, the cookie and the `x-csrf-token` double-submit header).
 * Refreshes are serialised: concurrent callers share the one in flight, because the
 * gateway revokes a session whose refresh token is presented twice.
 */
import { AuthExpiredError } from './errors.js';

/** A token and, when known, its expiry (epoch ms). */
export interface TokenInfo {
  token: string;
  expiresAt?: number | null;
}

export interface CredentialOptions {
  /** A bearer token (access JWT or personal token), or a function giving the current one. Omit to use the session cookie. */
  token?: string | (() => string | Promise<string>);
  /** Token mode: returns a fresh token (e.g. from your backend). Omitted: the token is never refreshed. */
  refresh?: () => Promise<TokenInfo | string>;
  /** Cookie mode: the refresh endpoint; derived from the socket URL by default (`/auth/refresh`). */
  refreshUrl?: string;
  /** Cookie mode: the CSRF value; read from the `pcl_csrf` cookie of `document` by default. */
  csrfToken?: () => string | null;
  /** The fetch used for cookie refreshes; the global one by default. */
  fetch?: typeof fetch;
}

/** The `pcl_csrf` cookie of the page, or null outside browsers. */
export function documentCsrfToken(): string | null {
  const doc = (globalThis as { document?: { cookie?: string } }).document;
  const match = /(?:^|;\s*)pcl_csrf=([^;]+)/.exec(doc?.cookie ?? '');
  return match ? decodeURIComponent(match[1]!) : null;
}

export class Credentials {
  /** The latest token (cookie mode: the access token from the last refresh, if any). */
  private current: string | null = null;
  private inFlight: Promise<TokenInfo | null> | null = null;

  constructor(
    private readonly options: CredentialOptions,
    private readonly socketUrl: string,
  ) {}

  get mode(): 'token' | 'cookie' {
    return this.options.token === undefined && this.options.refresh === undefined ? 'cookie' : 'token';
  }

  /** Whether a refresh is possible at all. */
  get canRefresh(): boolean {
    return this.mode === 'cookie' || this.options.refresh !== undefined;
  }

  /** The bearer token to offer at connect time; null in cookie mode (the browser sends the cookie). */
  async connectToken(): Promise<string | null> {
    if (this.mode === 'cookie') return null;
    if (this.current !== null) return this.current;
    const t = this.options.token;
    if (t === undefined) return (await this.refresh())?.token ?? null;
    this.current = typeof t === 'string' ? t : await t();
    return this.current;
  }

  /**
   * A fresh token, or null when refreshing is impossible (no callback). Rejects with
   * AuthExpiredError when the server refused (sign in again), with another error when it
   * could not be reached (try later).
   */
  refresh(): Promise<TokenInfo | null> {
    this.inFlight ??= this.doRefresh().finally(() => (this.inFlight = null));
    return this.inFlight;
  }

  private async doRefresh(): Promise<TokenInfo | null> {
    if (this.mode === 'token') {
      if (!this.options.refresh) return null;
      const got = await this.options.refresh();
      const info = typeof got === 'string' ? { token: got } : got;
      this.current = info.token;
      return info;
    }
    const doFetch = this.options.fetch ?? globalThis.fetch.bind(globalThis);
    const csrf = (this.options.csrfToken ?? documentCsrfToken)();
    const res = await doFetch(this.refreshUrl(), {
      method: 'POST',
      credentials: 'include',
      headers: csrf ? { 'x-csrf-token': csrf } : {},
    });
    if (res.status === 401 || res.status === 403) throw new AuthExpiredError('authentication_error', `refresh refused (${res.status}): sign in again`);
    if (!res.ok) throw new Error(`refresh failed with ${res.status}`);
    const body = (await res.json()) as { access_token: string; expires_in: number };
    this.current = body.access_token;
    return { token: body.access_token, expiresAt: Date.now() + body.expires_in * 1000 };
  }

  private refreshUrl(): string {
    if (this.options.refreshUrl) return this.options.refreshUrl;
    const url = new URL(this.socketUrl);
    url.protocol = url.protocol === 'wss:' ? 'https:' : 'http:';
    url.pathname = '/auth/refresh';
    url.search = '';
    return url.toString();
  }
}
