/**
 * The composition root: builds the Fastify app from a parsed configuration and an engine.
 * No globals; tests build as many apps as they like.
 */
import fastifyCookie from '@fastify/cookie';
import Fastify, { LogController } from 'fastify';
import { Counter, Registry } from 'prom-client';
import type { FastifyInstance } from 'fastify';
import pino from 'pino';
import type { DestinationStream, LoggerOptions } from 'pino';
import type { Config } from './config/index.js';
import type { Engine } from './engine/index.js';
import { renderError, toGatewayError } from './errors/index.js';
import { rateLimitError } from './ratelimit/index.js';
import { healthRoutes } from './http/health.js';
import { UserService } from './auth/users.js';
import type { Authenticate } from './auth/authenticate.js';
import { installAuthGuards } from './auth/guard.js';
import type { PersonalTokenService } from './auth/personal-tokens.js';
import { createAuthServices } from './auth/services.js';
import type { SessionService } from './auth/sessions.js';
import type { SigningKeyStore } from './auth/signing-keys.js';
import { authRoutes } from './http/auth-routes.js';
import { oidcLogin } from './auth/oidc/routes.js';
import { validateLoginConfig } from './auth/oidc/settings.js';
import { LazyChildLogger } from './http/lazy-logger.js';
import { newRequestId } from './http/request-id.js';
import { metricsRoutes } from './http/metrics.js';
import { realtimeAdminRoutes, realtimePlugin } from './realtime/index.js';
import type { MasterKeyRing } from './security/envelope.js';
import { loadMasterKeyRing } from './security/master-key.js';
import { UsageLedger } from './vault/usage.js';
import { kyselyUsageWriter, sqliteWorkerUsageWriter } from './vault/usage-writer.js';
import { KeyVault } from './vault/vault.js';
import type { ChatServices } from './chat/services.js';
import { createChatServices } from './chat/services.js';
import { proxyRoutes } from './http/proxy-routes.js';
import { adminKeysRoutes } from './http/admin-keys.js';
import { webRoutes } from './web/routes.js';

export interface BuildAppOptions {
  /** Where log lines go (tests capture them); standard output by default (`logDestination(1)`). */
  logStream?: DestinationStream;
  /** Where the browser build (`client/`, `web/page/`) is; found beside the app by default (tests pass a fresh build). */
  webAssetsDir?: string;
}

export interface AppServices {
  config: Config;
  engine: Engine;
  users: UserService;
  /** Master keys sealing every secret stored in the database. */
  keyRing: MasterKeyRing;
  /** Upstream API keys (a KeySource for the upstream client); started by buildApp, closed with the app. */
  vault: KeyVault;
  /** Durable usage records and their summaries. */
  usage: UsageLedger;
  lifecycle: { draining: boolean };
  limiter: ChatServices['limiter'];
  upstream: ChatServices['upstream'];
  chat: ChatServices['chat'];
  demo: ChatServices['demo'];
  /** JWT signing keys (current key, rotation, JWKS). */
  signingKeys: SigningKeyStore;
  sessions: SessionService;
  personalTokens: PersonalTokenService;
  /** The one authentication function (access JWT, personal token, session cookie). */
  authenticate: Authenticate;
  /** Prometheus metrics of this app, served on GET /metrics. */
  metrics: Registry;
}

declare module 'fastify' {
  interface FastifyInstance {
    services: AppServices;
  }
}

const REQUEST_ID = /^[A-Za-z0-9_.:-]{1,128}$/;

/** Paths are logged without their query: callbacks carry codes and state there. */
function loggedUrl(url: string): string {
  const q = url.indexOf('?');
  return q === -1 ? url : `${url.slice(0, q)}?…`;
}

/**
 * A log destination: `dest` (a file descriptor or path) written asynchronously through pino's
 * own destination, sonic-boom, in its Buffer mode, each line handed over as a Buffer. In its
 * default mode sonic-boom appends the lines that arrive while a write is in flight to one
 * string and measures that whole string for each new line (flattening it), so under load
 * every line copied the lines queued before it: 12.7 KB allocated per 600-byte line in bursts
 * of 50, against 4.3 KB here, and about 6.5 against 4.3 µs (docs/benchmarks.md). Lines still
 * queued are written when the process exits, as with pino's default destination.
 */
export function logDestination(dest: number | string): DestinationStream & { flushSync(): void } {
  const boom = pino.destination({ dest, sync: false, contentMode: 'buffer' });
  // Its types know only strings; in Buffer mode it takes (and needs) Buffers.
  const writeBuffer = boom.write.bind(boom) as unknown as (line: Buffer) => boolean;
  return {
    write: (line: string) => void writeBuffer(Buffer.from(line)),
    flushSync: () => boom.flushSync(),
  };
}

let stampedAt = Number.NaN;
let stamp = '';
/** pino's `time` field, formatted once per millisecond (`toISOString` formats through the C library's printf). */
function logTimestamp(): string {
  const now = Date.now();
  if (now !== stampedAt) {
    stampedAt = now;
    stamp = `,"time":"${new Date(now).toISOString()}"`;
  }
  return stamp;
}

export function loggerOptions(config: Config): LoggerOptions {
  return {
    level: config.logLevel,
    base: { service: 'portcullis' },
    timestamp: logTimestamp,
    formatters: { level: (label) => ({ level: label }) },
    redact: {
      paths: [
        'req.headers.authorization',
        'req.headers.cookie',
        'req.headers["x-api-key"]',
        'req.headers["sec-websocket-protocol"]',
        '*.password',
        '*.token',
        '*.secret',
      ],
      censor: '[redacted]',
    },
    serializers: {
      req: (req: { method: string; url: string; ip?: string }) => ({ method: req.method, url: loggedUrl(req.url), ip: req.ip }),
      res: (res: { statusCode: number }) => ({ status: res.statusCode }),
    },
  };
}

export async function buildApp(config: Config, engine: Engine, options: BuildAppOptions = {}): Promise<FastifyInstance> {
  validateLoginConfig(config);
  const logger = loggerOptions(config);
  const app = Fastify({
    logger: { ...logger, stream: options.logStream ?? logDestination(1) },
    trustProxy: config.trustProxy,
    bodyLimit: 32 * 1024 * 1024,
    requestIdHeader: false,
    genReqId: (req) => {
      const incoming = req.headers['x-request-id'];
      return typeof incoming === 'string' && REQUEST_ID.test(incoming) ? incoming : newRequestId();
    },
    // Each request's child logger is made only if something logs through it (lazy-logger.ts).
    childLoggerFactory: (logger, bindings, options) => new LazyChildLogger(logger, bindings, options),
    logController: new LogController({
      requestIdLogLabel: 'request_id',
      // POST /v1/messages logs one line per request when it settles (chat/settle.ts); Fastify's
      // own two lines per request would triple the log volume of the busiest route.
      disableRequestLogging: (req) => req.method === 'POST' && (req.url === '/v1/messages' || req.url.startsWith('/v1/messages?')),
    }),
  });

  const masterKeys = loadMasterKeyRing(config);
  const users = new UserService(engine.database.db);
  const auth = createAuthServices({ config, db: engine.database.db, users, keyRing: masterKeys.ring, log: app.log });
  const vault = new KeyVault({
    db: engine.database.db,
    ring: masterKeys.ring,
    onError: (err, keyName) => app.log.error({ err, key: keyName }, 'key vault: reload failed or a key cannot be opened'),
  });
  await vault.start();
  app.addHook('onClose', () => vault.close());
  const imported = await vault.importFromEnv(config);
  if (imported === 'added') app.log.info({ key: 'default' }, 'key vault: imported ANTHROPIC_API_KEY as the key default');
  if (imported === 'name_taken') {
    app.log.warn({ key: 'default' }, 'key vault: ANTHROPIC_API_KEY is not in the vault but the name default is taken (rotated?); not imported');
  }
  // On a SQLite file, usage rows are written by a worker thread (see vault/usage-writer.ts).
  const sqliteFile = config.database.kind === 'sqlite' && config.database.path !== ':memory:' ? config.database.path : undefined;
  const usage = new UsageLedger(engine.database.db, {
    ...(sqliteFile ? { writer: sqliteWorkerUsageWriter(sqliteFile, kyselyUsageWriter(engine.database.db)) } : {}),
  });
  const metrics = new Registry();
  const rateLimitFailures = new Counter({
    name: 'portcullis_rate_limit_store_failures_total',
    help: 'Rate-limit store calls that failed or timed out, by operation and the failure policy applied.',
    labelNames: ['operation', 'policy'],
    registers: [metrics],
  });
  const chat = await createChatServices({ config, engine, vault, usage, log: app.log, rateLimitFailures });
  // Settlements still writing finish first, then the ledger writes what it holds.
  app.addHook('onClose', async () => {
    await chat.close();
    await usage.close();
  });
  const services: AppServices = {
    config,
    engine,
    users,
    keyRing: masterKeys.ring,
    vault,
    usage,
    lifecycle: { draining: false },
    limiter: chat.limiter,
    upstream: chat.upstream,
    chat: chat.chat,
    demo: chat.demo,
    ...auth,
    metrics,
  };
  app.decorate('services', services);
  if (masterKeys.generatedFile) {
    app.log.warn({ file: masterKeys.generatedFile }, 'DEVELOPMENT ONLY: master key read from the data directory; set PORTCULLIS_MASTER_KEY in production');
  }

  // Callback-style hooks: they run for every request, and an async hook costs a promise each.
  app.addHook('onRequest', (request, reply, done) => {
    reply.header('x-request-id', request.id);
    done();
  });

  app.setErrorHandler((err, request, reply) => {
    // The client left before the answer (its own abort came back through the call): nothing
    // failed here and nobody is left to answer.
    if (request.raw.socket?.destroyed) {
      request.log.info({ code: 'client_disconnected' }, 'the client disconnected before the answer');
      return reply.code(499).send();
    }
    const gateway = toGatewayError(err);
    if (gateway.status >= 500) request.log.error({ err: gateway.cause ?? gateway, code: gateway.code }, gateway.message);
    else request.log.info({ code: gateway.code, reason: gateway.reason }, gateway.message);
    const { status, body, headers } = renderError(gateway, request.id);
    return reply.code(status).headers(headers).send(body);
  });

  app.setNotFoundHandler((request, reply) => {
    const { status, body, headers } = renderError(toGatewayError({ statusCode: 404, message: `No route for ${request.method} ${loggedUrl(request.url)}`, code: 'NOT_FOUND' }), request.id);
    return reply.code(status).headers(headers).send(body);
  });

  if (!app.hasDecorator('parseCookie')) await app.register(fastifyCookie);
  installAuthGuards(app, { authenticate: services.authenticate, limiter: chat.limiter, config });

  // Brute-force protection: sign-in and token endpoints are limited per client IP.
  app.addHook('onRequest', (request, _reply, done) => {
    const path = request.url;
    if (!path.startsWith('/auth/login') && !path.startsWith('/auth/callback') && !path.startsWith('/auth/refresh')) return done();
    chat.limiter.admitIp(request.ip, 'auth').then(
      (decision) => done(decision.allowed ? undefined : rateLimitError(decision)),
      (err: Error) => done(err),
    );
  });

  await app.register(healthRoutes, { engine, isDraining: () => services.lifecycle.draining });
  await app.register(proxyRoutes, {
    chat: chat.chat,
    upstream: chat.upstream,
    keys: chat.keys,
    limiter: chat.limiter,
    extraHeaders: chat.demo ? { 'x-portcullis-demo': 'true' } : {},
  });
  await app.register(adminKeysRoutes, {
    vault: services.vault,
    usage: services.usage,
    preHandler: app.requireCapability('manage_keys'),
    usagePreHandler: app.requireCapability('read_usage'),
  });
  await app.register(authRoutes);
  await app.register(oidcLogin, { config });
  await app.register(metricsRoutes);
  // Not encapsulated: its upgrade listener, hooks and `app.realtime` belong to the root.
  await realtimePlugin(app);
  await app.register(realtimeAdminRoutes);
  await app.register(webRoutes, { demo: Boolean(chat.demo), ...(options.webAssetsDir ? { assetsDir: options.webAssetsDir } : {}) });

  return app;
}
