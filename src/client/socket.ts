/**
 * The small slice of the WebSocket API the client uses: the browser's global WebSocket and
 * the `ws` package (Node) both fit it, so the client imports neither.
 */

export interface WebSocketLike {
  readonly readyState: number;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  onerror: ((event: unknown) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

/** readyState of an open socket (the same in browsers and `ws`). */
export const OPEN = 1;

/** The global WebSocket when there is one (browsers, Node ≥ 22), else undefined. */
export function globalWebSocket(): WebSocketConstructor | undefined {
  const g = globalThis as { WebSocket?: unknown };
  return typeof g.WebSocket === 'function' ? (g.WebSocket as WebSocketConstructor) : undefined;
}

/** Browser connectivity events (`online` / `offline`), when the environment has them. */
export interface ConnectivitySource {
  addEventListener(type: 'online' | 'offline', listener: () => void): void;
  removeEventListener(type: 'online' | 'offline', listener: () => void): void;
  /** Whether the environment believes it is online; assumed true when unknown. */
  isOnline(): boolean;
}

export function browserConnectivity(): ConnectivitySource | undefined {
  const g = globalThis as { addEventListener?: unknown; navigator?: { onLine?: boolean } };
  if (typeof g.addEventListener !== 'function' || !g.navigator) return undefined;
  const target = globalThis as unknown as Pick<ConnectivitySource, 'addEventListener' | 'removeEventListener'>;
  return {
    addEventListener: (type, listener) => target.addEventListener(type, listener),
    removeEventListener: (type, listener) => target.removeEventListener(type, listener),
    isOnline: () => g.navigator?.onLine !== false,
  };
}
