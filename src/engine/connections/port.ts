/**
 * The connection directory: who is connected, where, since when. The WebSocket server
 * registers every connection here on open and removes it on close.
 *
 * Guarantees (every implementation):
 * - `get(id)` and `byUser(userId)` are O(1) in the number of connections (plus the size of
 *   the answer); `filter` may scan.
 * - Safe under concurrent add, remove and reads: a reader sees a connection either fully
 *   registered or not at all; `byUser` and `filter` return snapshots (arrays), never live
 *   views, so broadcasting while connections come and go is safe.
 * - `remove` is idempotent; `add` of an id already present replaces it.
 * The memory implementation holds the very metadata objects it was given (the server
 * updates their counters in place); a shared implementation (Redis) keeps a copy that the
 * server refreshes with `touch`, so its counters may lag by one refresh.
 */

export interface ConnectionMeta {
  /** `conn_<hex>`, unique across instances. */
  id: string;
  userId: string;
  /** The user's roles when the connection authenticated. */
  roles: string[];
  /** The session behind an access token or cookie; null for personal tokens. */
  sessionId: string | null;
  personalTokenId: string | null;
  ip: string;
  userAgent: string | null;
  /** Epoch ms. */
  connectedAt: number;
  /** Epoch ms of the last frame received from the client (pongs included). */
  lastActivityAt: number;
  /** The protocol the client chose (`portcullis.v1`). */
  protocol: string;
  /** Chats running on this connection. */
  inFlight: number;
  bytesIn: number;
  bytesOut: number;
  /** The instance holding the socket. */
  instanceId: string;
}

/** Every field optional; a connection matches when it satisfies all given ones. */
export interface ConnectionFilter {
  id?: string;
  userId?: string;
  /** The connection's user has this role. */
  role?: string;
  sessionId?: string;
  /** Authenticated by this personal token. */
  personalTokenId?: string;
  /** Connected strictly before this epoch ms. */
  connectedBefore?: number;
  /** Connected at or after this epoch ms. */
  connectedAfter?: number;
  /** Last activity strictly before this epoch ms. */
  idleSince?: number;
  /** Held by this instance. */
  instanceId?: string;
}

export interface ConnectionDirectory {
  add(meta: ConnectionMeta): Promise<void>;
  /**
   * Adds the connection only if its user holds fewer than `cap` other live connections (an
   * entry with the same id is replaced, not counted); resolves whether it was added. Atomic:
   * concurrent calls for one user, from any number of callers or instances sharing the
   * directory, never leave the user with more than `cap` connections (the per-user cap).
   */
  addWithinCap(meta: ConnectionMeta, cap: number): Promise<boolean>;
  /** Removes the connection; resolves false when it was not there. */
  remove(id: string): Promise<boolean>;
  get(id: string): Promise<ConnectionMeta | undefined>;
  byUser(userId: string): Promise<ConnectionMeta[]>;
  /** How many connections the user holds, O(1) (the per-user cap asks on every upgrade). */
  countByUser(userId: string): Promise<number>;
  /** Connections matching every given field, oldest first, at most `limit` (default all). */
  filter(filter: ConnectionFilter, limit?: number): Promise<ConnectionMeta[]>;
  count(): Promise<number>;
  /** Publishes fresh counters of a connection (a no-op where `add` kept the object itself). */
  touch(meta: ConnectionMeta): Promise<void>;
  close(): Promise<void>;
}

/** True when `meta` satisfies every field of `filter` (shared by implementations). */
export function matchesFilter(meta: ConnectionMeta, filter: ConnectionFilter): boolean {
  if (filter.id !== undefined && meta.id !== filter.id) return false;
  if (filter.instanceId !== undefined && meta.instanceId !== filter.instanceId) return false;
  if (filter.userId !== undefined && meta.userId !== filter.userId) return false;
  if (filter.role !== undefined && !meta.roles.includes(filter.role)) return false;
  if (filter.sessionId !== undefined && meta.sessionId !== filter.sessionId) return false;
  if (filter.personalTokenId !== undefined && meta.personalTokenId !== filter.personalTokenId) return false;
  if (filter.connectedBefore !== undefined && !(meta.connectedAt < filter.connectedBefore)) return false;
  if (filter.connectedAfter !== undefined && !(meta.connectedAt >= filter.connectedAfter)) return false;
  if (filter.idleSince !== undefined && !(meta.lastActivityAt < filter.idleSince)) return false;
  return true;
}
