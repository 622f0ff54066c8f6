/**
 * What an app gives `PortcullisClient` (its options) and what it gets back from it: the
 * connection's state, the welcome frame, the events it can listen to.
 */
import type { BackoffOptions } from './backoff.js';
import type { CredentialOptions } from './credentials.js';
import type { PortcullisError } from './errors.js';
import type { ConnectivitySource, WebSocketConstructor } from './socket.js';

/** What the app can show: `open` is usable; `reconnecting`/`offline` recover by themselves; `closed` does not. */
export type ConnectionState = 'idle' | 'connecting' | 'open' | 'reconnecting' | 'offline' | 'closed';

export interface StateDetail {
  /** Reconnection attempts since the last successful connection. */
  attempt: number;
  /** When the next attempt starts (epoch ms), while reconnecting. */
  retryAt?: number;
  /** The close code that ended the previous connection. */
  closeCode?: number;
  /** Why the client stopped, when `closed`. */
  error?: PortcullisError;
}

export interface Welcome {
  connection_id: string;
  user: { id: string; display_name: string | null; roles: string[] };
  heartbeat_ms: number;
  expires_at: number | null;
  limits: Record<string, number>;
}

export interface ClientOptions extends CredentialOptions {
  /** The socket URL, e.g. `wss://gateway.example.com/v1/ws`. */
  url: string;
  /** The WebSocket constructor; the global one by default (Node tests pass `ws`). */
  WebSocket?: WebSocketConstructor;
  /** Reconnection delays. */
  backoff?: BackoffOptions;
  /** Refresh this long before the token expires; by default the smaller of 60 000 and half its remaining life. */
  refreshLeadMs?: number;
  /** Online/offline events; the browser's by default, none in Node. */
  connectivity?: ConnectivitySource | null;
  /** Random source for the jitter (tests). */
  random?: () => number;
}

export interface Listeners {
  state: (state: ConnectionState, detail: StateDetail) => void;
  welcome: (welcome: Welcome) => void;
  broadcast: (channel: string, data: unknown) => void;
  /** A connection-level problem (refused refresh, error frame without a chat). */
  error: (error: PortcullisError) => void;
  /** The credential's expiry changed (epoch ms, null for personal tokens). */
  auth: (expiresAt: number | null) => void;
}
