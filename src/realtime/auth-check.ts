/**
 * Open connections' credentials checked again (`authenticate.recheck`): before each chat, and
 * every WS_AUTH_RECHECK_MS for every connection of this instance. Revocations made on a
 * running instance close their sockets at once (the kicks in server.ts); this catches those
 * no kick reaches (the CLI's own process, another instance while the bus is down) and a
 * personal token's expiry, so a dead credential neither starts a chat nor keeps its socket.
 */
import type { Authenticate } from '../auth/authenticate.js';
import { GatewayError, toGatewayError } from '../errors/index.js';
import { errorFrame } from './chats.js';
import type { Connection } from './connection.js';
import { CloseCode } from './protocol.js';

/**
 * Checks `conn`'s credential; on success the connection gets its user's current permissions.
 * On failure, chat `chatId` (when the check is for one) gets a `chat.error` first; then a
 * dead credential (401) closes the connection with 4001, while a check that could not be
 * made (the database unreachable) leaves it open. Resolves to the failure, if any; never
 * rejects.
 */
export async function recheckConnection(authenticate: Authenticate, conn: Connection, chatId?: string): Promise<GatewayError | undefined> {
  const checked = conn.auth;
  try {
    const next = await authenticate.recheck(checked);
    if (conn.auth === checked) conn.auth = next; // an auth.refresh meanwhile wins
    return undefined;
  } catch (err) {
    const cause = toGatewayError(err);
    const gateway = cause.expose ? cause : new GatewayError('unavailable', 'The credential could not be checked; retry shortly', { reason: 'auth_check_failed', retryAfterSeconds: 2, cause: err });
    if (chatId !== undefined) conn.send(errorFrame(chatId, gateway));
    if (gateway.status === 401 && conn.auth === checked) conn.close(CloseCode.unauthenticated, gateway.message, gateway.reason === 'token_expired' ? 'expired' : 'revoked');
    return gateway;
  }
}

export interface AuthSweepOptions {
  intervalMs: number;
  authenticate: Authenticate;
  connections: () => Iterable<Connection>;
  log: { warn(details: object, message: string): void };
}

/** Every `intervalMs`, checks each open connection in turn (one sweep at a time); returns the stop. */
export function startAuthSweep(options: AuthSweepOptions): () => void {
  let stopped = false;
  let sweeping = false;
  const sweep = async () => {
    let failed: GatewayError | undefined;
    for (const conn of [...options.connections()]) {
      if (stopped) return;
      if (conn.closeCause !== null) continue;
      const error = await recheckConnection(options.authenticate, conn);
      if (error && error.status !== 401) failed ??= error;
    }
    // The check itself failed (the database unreachable): the connections stay, checked next time.
    if (failed) options.log.warn({ err: failed }, 'websocket credentials could not be checked again');
  };
  const timer = setInterval(() => {
    if (sweeping) return;
    sweeping = true;
    void sweep()
      .catch((err: unknown) => options.log.warn({ err }, 'websocket credential sweep failed'))
      .finally(() => (sweeping = false));
  }, options.intervalMs);
  timer.unref();
  return () => {
    stopped = true;
    clearInterval(timer);
  };
}
