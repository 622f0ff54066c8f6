/**
 * The WebSocket server: `GET /v1/ws` upgrades on the app's own HTTP server (ws, no
 * permessage-deflate, maxPayload WS_MAX_MESSAGE_BYTES), authenticated before the upgrade
 * completes. Owns its registry, chats, heartbeat and fan-out, and cleans up on close:
 * `preClose` stops upgrades, lets chats finish until the drain deadline, aborts the rest
 * (usage is still settled), then closes every socket with 1001 in batches.
 */
import { randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { WebSocketServer } from 'ws';
import type { WebSocket } from 'ws';
import type { AuthContext } from '../auth/authenticate.js';
import { allowedOrigins } from '../auth/cookies.js';
import type { Bus } from '../engine/bus/index.js';
import type { ConnectionDirectory, ConnectionMeta } from '../engine/connections/index.js';
import type { StreamBuffer } from '../engine/stream-buffer/index.js';
import { GatewayError } from '../errors/index.js';
import { newRequestId } from '../http/request-id.js';
import type { RateLimiter } from '../ratelimit/index.js';
import { ChatManager, MAX_CHATS_PER_CONNECTION } from './chats.js';
import { Connection } from './connection.js';
import { createFanout } from './fanout.js';
import type { Fanout } from './fanout.js';
import { createRouter } from './handlers.js';
import { recheckConnection, startAuthSweep } from './auth-check.js';
import { startHeartbeat } from './heartbeat.js';
import { redisChatRegistry, settleOrphans } from './orphans.js';
import { createRealtimeMetrics } from './metrics.js';
import { CloseCode, PROTOCOL } from './protocol.js';
import { WS_PATH, admitUpgrade, refuseUpgrade } from './upgrade.js';

export interface RealtimeOptions {
  /** Override the engine's ports (tests); the engine's (memory or Redis) by default. */
  directory?: ConnectionDirectory;
  buffer?: StreamBuffer;
  bus?: Bus;
  limiter?: RateLimiter;
}

/** What other features use: broadcasts, kicks and the registry. */
export interface RealtimeServer {
  instanceId: string;
  directory: ConnectionDirectory;
  fanout: Fanout;
  /** Connections held by this instance. */
  localCount(): number;
}

declare module 'fastify' {
  interface FastifyInstance {
    realtime: RealtimeServer;
  }
}

const CLOSE_BATCH = 500;
/** Instances announce themselves here when they start and stop (logged by the others). */
export const INSTANCE_TOPIC = 'ws.instance';
const MAX_ABUSE_PER_MINUTE = 20;

export async function realtimePlugin(app: FastifyInstance, options: RealtimeOptions = {}): Promise<void> {
  const { config, engine, sessions, personalTokens, authenticate, metrics: registry } = app.services;
  const instanceId = engine.instanceId;
  const directory = options.directory ?? engine.directory;
  const buffer = options.buffer ?? engine.streamBuffer;
  const bus = options.bus ?? engine.bus;
  const distributed = engine.redis !== undefined;
  // The app's one limiter: the same counters (and failure metric) as the HTTP door.
  const limiter = options.limiter ?? app.services.limiter;
  const metrics = createRealtimeMetrics(registry);
  const local = new Map<string, Connection>();
  const state = { accepting: true };
  const now = Date.now;

  const chats = new ChatManager({
    pipeline: () => app.services.chat,
    buffer,
    bus,
    resumeWindowMs: config.wsResumeWindowMs,
    log: app.log,
    metrics,
    available: () => engine.redis === undefined || engine.redis.status === 'ready',
    registry: engine.redis ? redisChatRegistry({ redis: engine.redis, prefix: `${config.redisKeyPrefix}chats:`, instanceId }) : undefined,
    instanceId,
    // Each chat checks the connection's credential again before it starts (auth-check.ts).
    admit: async (conn, chatId) => (await recheckConnection(authenticate, conn, chatId)) === undefined,
  });
  await chats.start();
  const offExpired = engine.onInstanceExpired((dead) => {
    if (!engine.redis) return;
    const deps = { redis: engine.redis, prefix: `${config.redisKeyPrefix}chats:`, instanceId, buffer, usage: app.services.usage, db: engine.database.db, resumeWindowMs: config.wsResumeWindowMs, log: app.log };
    void settleOrphans(deps, dead).catch((err: unknown) => app.log.error({ err, instances: dead }, 'settling the chats of lost instances failed'));
  });
  const offInstances = await bus.subscribe(INSTANCE_TOPIC, (payload) => {
    const { id, state: up } = payload as { id: string; state: string };
    if (id !== instanceId) app.log.info({ instance: id, state: up }, `instance ${up}`);
  });
  await bus.publish(INSTANCE_TOPIC, { id: instanceId, state: 'started' }).catch(() => {});
  app.log.info({ instance: instanceId, distributed }, 'realtime instance started');
  const { fanout, stop: stopFanout } = await createFanout({ bus, directory, instanceId, local });
  const router = createRouter({ chats, authenticate, log: app.log, now });
  const stopHeartbeat = startHeartbeat({
    heartbeatMs: config.wsHeartbeatMs,
    timeoutMs: config.wsHeartbeatTimeoutMs,
    idleMs: config.wsIdleTimeoutMs,
    connections: () => local.values(),
  });
  const stopAuthSweep = startAuthSweep({ intervalMs: config.wsAuthRecheckMs, authenticate, connections: () => local.values(), log: app.log });
  // The bus is down: other instances learn of the revocation when their session cache
  // expires (new requests) and at their next credential check (open sockets, auth-check.ts).
  const kickFailed = (err: unknown) => app.log.error({ err }, 'could not publish a kick to the other instances');
  const unsubscribers = [
    sessions.onRevoke((event) => void fanout.kick({ sessionId: event.sessionId }, { code: CloseCode.unauthenticated, reason: 'session revoked: sign in again', cause: 'revoked' }).catch(kickFailed)),
    sessions.onUserDisabled((userId) => void fanout.kick({ userId }, { code: CloseCode.unauthenticated, reason: 'user disabled', cause: 'revoked' }).catch(kickFailed)),
    personalTokens.onRevoke((event) =>
      void fanout.kick({ personalTokenId: event.tokenId }, { code: CloseCode.unauthenticated, reason: 'personal token revoked', cause: 'revoked' }).catch(kickFailed),
    ),
  ];

  const wss = new WebSocketServer({
    noServer: true,
    perMessageDeflate: false,
    clientTracking: false,
    maxPayload: config.wsMaxMessageBytes,
    handleProtocols: (offered) => (offered.has(PROTOCOL) ? PROTOCOL : false),
  });
  const deps = {
    authenticate,
    limiter,
    origins: allowedOrigins(config),
    trustProxy: config.trustProxy,
    parseCookie: (header: string) => app.parseCookie(header),
  };

  /** Takes a connection out of the directory; a failure is logged (the directory retries at its next heartbeat). */
  const unlist = (id: string): void => {
    void directory.remove(id).catch((err: unknown) => app.log.warn({ err, connection_id: id }, 'connection directory unavailable: the entry is removed at its next heartbeat'));
  };

  const newMeta = (auth: AuthContext, info: Awaited<ReturnType<typeof admitUpgrade>>['info']): ConnectionMeta => {
    const t = now();
    return {
      id: `conn_${randomBytes(12).toString('hex')}`,
      userId: auth.user.id,
      roles: auth.permissions.roles,
      sessionId: auth.sessionId,
      personalTokenId: auth.personalTokenId,
      ip: info.ip,
      userAgent: info.userAgent,
      connectedAt: t,
      lastActivityAt: t,
      protocol: info.protocol ?? PROTOCOL,
      inFlight: 0,
      bytesIn: 0,
      bytesOut: 0,
      instanceId,
    };
  };

  /** Starts serving an upgraded socket whose `meta` the directory already holds. */
  const onOpen = (ws: WebSocket, auth: AuthContext, meta: ConnectionMeta) => {
    const t = meta.connectedAt;
    const conn = new Connection(ws, meta, auth, { maxBufferedBytes: config.wsMaxBufferedBytes, maxAbusePerMinute: MAX_ABUSE_PER_MINUTE }, () =>
      metrics.frames.inc({ direction: 'out' }),
    );
    local.set(meta.id, conn);
    metrics.connections.inc();
    ws.on('message', (data, isBinary) => {
      const at = now();
      conn.pingSentAt = 0;
      conn.lastFrameAt = at;
      meta.lastActivityAt = at;
      meta.bytesIn += Array.isArray(data) ? data.reduce((n, b) => n + b.length, 0) : (data as Buffer).byteLength;
      metrics.frames.inc({ direction: 'in' });
      void router.dispatch(conn, data, isBinary, at);
    });
    ws.on('pong', () => {
      const at = now();
      if (conn.pingSentAt !== 0) metrics.pingRtt.observe((at - conn.pingSentAt) / 1000);
      conn.pingSentAt = 0;
      meta.lastActivityAt = at;
    });
    ws.on('error', (err: Error & { code?: string }) => {
      if (conn.closeCause === null) conn.closeCause = err.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH' ? 'too_big' : 'error';
    });
    ws.on('close', () => {
      conn.clearExpiry();
      local.delete(meta.id);
      metrics.connections.dec();
      metrics.terminations.inc({ cause: conn.closeCause ?? 'client' });
      chats.detach(conn);
      unlist(meta.id);
    });
    conn.scheduleExpiry(t);
    conn.send({
      type: 'welcome',
      connection_id: meta.id,
      protocol: meta.protocol,
      user: { id: auth.user.id, display_name: auth.user.displayName, roles: auth.permissions.roles },
      heartbeat_ms: config.wsHeartbeatMs,
      expires_at: auth.expiresAt,
      limits: {
        max_message_bytes: config.wsMaxMessageBytes,
        max_connections: config.wsMaxConnectionsPerUser,
        resume_window_ms: config.wsResumeWindowMs,
        max_chats: MAX_CHATS_PER_CONNECTION,
      },
    });
    return meta;
  };

  const handleUpgrade = async (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const requestId = newRequestId();
    /** The directory entry taken for this upgrade, until the socket is open (then it is the connection's). */
    let pending: string | null = null;
    try {
      if (!state.accepting) throw new GatewayError('unavailable', 'The server is shutting down; reconnect', { reason: 'draining', retryAfterSeconds: 1 });
      if (new URL(req.url ?? '/', 'http://localhost').pathname !== WS_PATH) throw new GatewayError('not_found', `No WebSocket endpoint at ${(req.url ?? '').split('?')[0]}`);
      const { auth, info } = await admitUpgrade(req, deps);
      if (socket.destroyed) return;
      // The cap check and the registration are one atomic directory operation, so two
      // simultaneous upgrades (on this or another instance) cannot both take the last slot.
      const meta = newMeta(auth, info);
      const added = await directory.addWithinCap(meta, config.wsMaxConnectionsPerUser).catch((err: unknown) => {
        throw new GatewayError('unavailable', 'The connection directory is unavailable; retry shortly', { reason: 'state_store_unavailable', retryAfterSeconds: 2, cause: err });
      });
      if (!added) {
        throw new GatewayError('rate_limited', `At most ${config.wsMaxConnectionsPerUser} connections per user; close one first`, { reason: 'too_many_connections', retryAfterSeconds: 1 });
      }
      pending = meta.id;
      if (!state.accepting) throw new GatewayError('unavailable', 'The server is shutting down; reconnect', { reason: 'draining', retryAfterSeconds: 1 });
      if (socket.destroyed) return;
      await new Promise<void>((resolve) => {
        wss.handleUpgrade(req, socket, head, (ws) => {
          pending = null;
          onOpen(ws, auth, meta);
          resolve();
        });
        // handleUpgrade answers an invalid handshake itself and never calls back.
        socket.once('close', () => resolve());
      });
      metrics.upgrades.inc({ outcome: 'accepted' });
    } catch (err) {
      const status = refuseUpgrade(socket, err, requestId);
      metrics.upgrades.inc({ outcome: String(status) });
      if (status >= 500 && !(err instanceof GatewayError)) app.log.error({ err, request_id: requestId }, 'websocket upgrade failed');
      else app.log.info({ request_id: requestId, status, reason: (err as GatewayError).reason }, 'websocket upgrade refused');
    } finally {
      // Taken but never opened (handshake failed, client gone, draining): give the slot back.
      if (pending !== null) {
        unlist(pending);
      }
    }
  };
  const onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => socket.destroy());
    void handleUpgrade(req, socket, head);
  };
  app.server.on('upgrade', onUpgrade);

  const realtime: RealtimeServer = { instanceId, directory, fanout, localCount: () => local.size };
  app.decorate('realtime', realtime);

  app.addHook('preClose', async () => {
    state.accepting = false;
    app.services.lifecycle.draining = true;
    app.server.off('upgrade', onUpgrade);
    await bus.publish(INSTANCE_TOPIC, { id: instanceId, state: 'stopping' }).catch(() => {});
    const closeAll = async () => {
      const conns = [...local.values()];
      for (let i = 0; i < conns.length; i += CLOSE_BATCH) {
        for (const conn of conns.slice(i, i + CLOSE_BATCH)) conn.close(CloseCode.goingAway, 'server shutting down: reconnect', 'shutdown');
        await new Promise((resolve) => setImmediate(resolve));
      }
    };
    // In a cluster the sockets are handed over first (1001): clients reconnect to another
    // instance and resume there while this one finishes its chats into the shared buffer.
    if (distributed) await closeAll();
    // In-flight chats get most of the shutdown budget, then are aborted (and settled).
    const budget = config.shutdownTimeoutMs;
    const finished = await chats.drain(now() + Math.floor(budget * 0.6));
    if (!finished) await chats.abortAll(Math.floor(budget * 0.2));
    if (!distributed) await closeAll();
    const until = now() + 2_500;
    while (local.size > 0 && now() < until) await new Promise((resolve) => setTimeout(resolve, 20));
    for (const conn of local.values()) conn.terminate('shutdown');
  });
  app.addHook('onClose', async () => {
    stopHeartbeat();
    stopAuthSweep();
    stopFanout();
    offExpired();
    offInstances();
    for (const off of unsubscribers) off();
    await chats.close();
    await new Promise<void>((resolve) => wss.close(() => resolve()));
    // The ports belong to the engine, which closes them after the app.
  });
}
