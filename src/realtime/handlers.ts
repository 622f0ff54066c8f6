/** The router's entries: one per client frame type (see protocol.ts and docs/protocol.md). */
import type { Authenticate } from '../auth/authenticate.js';
import { toGatewayError } from '../errors/index.js';
import type { ChatManager } from './chats.js';
import type { Connection } from './connection.js';
import { clientFrames } from './protocol.js';
import { Router } from './router.js';
import type { RouterLogger } from './router.js';

export interface HandlerDeps {
  chats: ChatManager;
  authenticate: Authenticate;
  log: RouterLogger;
  now: () => number;
}

/** `auth.refresh`: a new access token of the same user replaces the connection's credential. */
async function refresh(deps: HandlerDeps, conn: Connection, token: string): Promise<void> {
  try {
    const next = await deps.authenticate({ authorization: `Bearer ${token}` });
    if (next.user.id !== conn.meta.userId) {
      conn.send({ type: 'error', error: { type: 'permission_error', message: 'auth.refresh: the token belongs to another user' } });
      return;
    }
    conn.auth = next;
    conn.meta.sessionId = next.sessionId;
    conn.meta.personalTokenId = next.personalTokenId;
    conn.scheduleExpiry(deps.now());
    conn.send({ type: 'auth.ok', expires_at: next.expiresAt });
  } catch (err) {
    const gateway = toGatewayError(err);
    conn.send({ type: 'error', error: { type: gateway.type, message: `auth.refresh: ${gateway.expose ? gateway.message : 'failed'}` } });
  }
}

export function createRouter(deps: HandlerDeps): Router {
  return new Router(deps.log)
    .add('chat', { schema: clientFrames.chat, handle: (conn, f) => deps.chats.run(conn, f.id, f.request) })
    .add('chat.cancel', { schema: clientFrames['chat.cancel'], handle: (conn, f) => deps.chats.cancel(conn, f.id) })
    .add('chat.resume', { schema: clientFrames['chat.resume'], handle: (conn, f) => deps.chats.resume(conn, f.id, f.after_seq) })
    .add('auth.refresh', { schema: clientFrames['auth.refresh'], handle: (conn, f) => refresh(deps, conn, f.token) })
    .add('ping', { schema: clientFrames.ping, handle: (conn) => void conn.send({ type: 'pong' }) });
}
