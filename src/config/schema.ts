/**
 * Every setting of the gateway, in one place. Each entry names its environment variable,
 * its default, what it means, and how a valid value looks; `docs/configuration.md` is
 * generated from this table (`npm run docs:config`) and a test keeps the two equal.
 */
import { z } from 'zod';
import type { ValueParser } from './parsers.js';
import { base64Key, boolean, duration, integer, json, list, oneOf, text, url } from './parsers.js';
import { fallbackRules } from '../upstream/fallback.js';

export interface SettingDefinition<T> {
  env: string;
  parser: ValueParser<T>;
  /** The default as a person would write it in the environment; absent means unset. */
  default?: string;
  doc: string;
  /** Secrets are never echoed, not even in an error about their own value. */
  secret?: boolean;
}

interface WithDefault<T> extends SettingDefinition<T> {
  default: string;
}

/** A setting that always has a value (its default when the environment is silent). */
function setting<T>(definition: WithDefault<T>): WithDefault<T> {
  return definition;
}

/** A setting that may stay unset. */
function optional<T>(definition: Omit<SettingDefinition<T>, 'default'>): SettingDefinition<T> {
  return definition;
}

export const settings = {
  port: setting({ env: 'PORT', parser: integer(0, 65535), default: '8080', doc: 'TCP port the gateway listens on (0 picks a free port).' }),
  host: setting({ env: 'HOST', parser: text(), default: '127.0.0.1', doc: 'Address to listen on. Use 0.0.0.0 to accept connections from other machines.' }),
  publicUrl: optional({
    env: 'PUBLIC_URL',
    parser: url(['http:', 'https:']),
    doc: 'The URL people and identity providers reach the gateway at (redirects, cookies, token issuer). Defaults to http://HOST:PORT.',
  }),
  nodeEnv: setting({
    env: 'NODE_ENV',
    parser: oneOf(['development', 'production', 'test'] as const),
    default: 'development',
    doc: 'production refuses development-only conveniences (the demo identity provider, the in-process simulator).',
  }),
  logLevel: setting({
    env: 'LOG_LEVEL',
    parser: oneOf(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const),
    default: 'info',
    doc: 'Minimum level of the JSON log lines written to standard output.',
  }),
  dataDir: setting({ env: 'DATA_DIR', parser: text(), default: './data', doc: 'Directory for local state: the SQLite database by default and demo-mode files.' }),
  databaseUrl: optional({
    env: 'DATABASE_URL',
    parser: url(['sqlite:', 'postgres:', 'postgresql:']),
    secret: true,
    doc: 'sqlite:PATH (embedded; default sqlite:DATA_DIR/portcullis.db) or postgres://user:pass@host:5432/db (shared by many instances).',
  }),
  databaseSchema: setting({
    env: 'DATABASE_SCHEMA',
    parser: text(),
    default: 'public',
    doc: 'PostgreSQL schema holding the tables; created if missing. Ignored for SQLite.',
  }),
  databasePoolSize: setting({ env: 'DATABASE_POOL_SIZE', parser: integer(1, 200), default: '10', doc: 'Maximum PostgreSQL connections per instance.' }),
  redisUrl: optional({
    env: 'REDIS_URL',
    parser: url(['redis:', 'rediss:']),
    secret: true,
    doc: 'redis://host:6379 switches limits, broadcasts and stream buffers to Redis so instances share them. Unset: in-process.',
  }),
  redisKeyPrefix: setting({ env: 'REDIS_KEY_PREFIX', parser: text(), default: 'portcullis:', doc: 'Prefix of every Redis key, so several deployments can share one Redis.' }),
  uauthIssuer: setting({
    env: 'UAUTH_ISSUER',
    parser: url(['https:', 'http:']),
    default: 'https://auth.unstoppabledomains.com',
    doc: 'The OpenID Connect issuer users sign in with (uAuth by default; any OIDC issuer works). Also the default issuer of `portcullis users add`.',
  }),
  masterKey: optional({
    env: 'PORTCULLIS_MASTER_KEY',
    parser: base64Key(32),
    secret: true,
    doc: 'Master key wrapping every secret stored in the database: base64 of 32 random bytes. Required in production; outside it, one is generated into DATA_DIR/master.key.',
  }),
  masterKeyPrevious: optional({
    env: 'PORTCULLIS_MASTER_KEY_PREVIOUS',
    parser: list(),
    secret: true,
    doc: 'Older master keys (comma-separated base64), kept so secrets sealed under them still open until `portcullis master-key rotate` re-wraps them.',
  }),
  allowedOrigins: setting({
    env: 'ALLOWED_ORIGINS',
    parser: list(),
    default: '',
    doc: 'Origins (scheme://host[:port], comma-separated) allowed besides PUBLIC_URL\'s own: browser pages that may use cookies, WebSocket Origin checks and login return_to targets.',
  }),
  trustProxy: setting({
    env: 'TRUST_PROXY',
    parser: boolean(),
    default: 'false',
    doc: 'Trust X-Forwarded-For/-Proto from a reverse proxy in front of the gateway (client IPs for limits and sessions).',
  }),
  shutdownTimeoutMs: setting({
    env: 'SHUTDOWN_TIMEOUT_MS',
    parser: integer(0, 600_000),
    default: '15000',
    doc: 'On SIGTERM/SIGINT, how long in-flight work may take before the process exits anyway (milliseconds).',
  }),
  // Rate limits (src/ratelimit, docs/rate-limits.md). 0 disables a limit.
  rateLimitRpm: setting({ env: 'RATE_LIMIT_RPM', parser: integer(0, 10_000_000), default: '60', doc: 'Requests per minute per user (default tier).' }),
  rateLimitRpd: setting({ env: 'RATE_LIMIT_RPD', parser: integer(0, 100_000_000), default: '5000', doc: 'Requests per day (sliding 24 h) per user (default tier).' }),
  rateLimitTpm: setting({
    env: 'RATE_LIMIT_TPM',
    parser: integer(0, 1_000_000_000),
    default: '200000',
    doc: 'Tokens per minute per user (default tier): input + max_tokens are reserved on admission, then reconciled with the real usage.',
  }),
  rateLimitConcurrent: setting({ env: 'RATE_LIMIT_CONCURRENT', parser: integer(0, 10_000), default: '4', doc: 'Concurrent streams per user (default tier).' }),
  rateLimitTiers: optional({
    env: 'RATE_LIMIT_TIERS',
    parser: json(
      z.record(
        z.string().regex(/^[a-z0-9_-]{1,64}$/, 'tier names are lower-case letters, digits, _ and -').refine((n) => n !== 'default', 'the default tier comes from RATE_LIMIT_RPM/RPD/TPM/CONCURRENT'),
        z.strictObject({
          rpm: z.number().int().min(0).optional(),
          rpd: z.number().int().min(0).optional(),
          tpm: z.number().int().min(0).optional(),
          concurrent: z.number().int().min(0).optional(),
        }),
      ),
      'a JSON object of tier name to {rpm, rpd, tpm, concurrent}, e.g. {"pro":{"rpm":600,"tpm":2000000}}',
    ),
    doc: 'Named tiers; a role or user picks one by name (rateTier). Missing values come from the default tier.',
  }),
  rateLimitIpAuthPerMin: setting({ env: 'RATE_LIMIT_IP_AUTH_PER_MIN', parser: integer(0, 1_000_000), default: '30', doc: 'Sign-in and token requests per minute per client IP, before authentication.' }),
  rateLimitIpUpgradePerMin: setting({ env: 'RATE_LIMIT_IP_UPGRADE_PER_MIN', parser: integer(0, 1_000_000), default: '60', doc: 'WebSocket upgrades per minute per client IP, before authentication.' }),
  rateLimitAuthFailuresPerMin: setting({
    env: 'RATE_LIMIT_AUTH_FAILURES_PER_MIN',
    parser: integer(0, 1_000_000),
    default: '10',
    doc: 'Failed authentications per minute per client IP; past it the IP is refused until old failures age out.',
  }),
  rateLimitLeaseTtl: setting({
    env: 'RATE_LIMIT_LEASE_TTL',
    parser: duration(1000),
    default: '2m',
    doc: 'How long a concurrent-stream slot lives without renewal; bounds how long a crashed instance holds slots.',
  }),
  rateLimitFailurePolicy: setting({
    env: 'RATE_LIMIT_FAILURE_POLICY',
    parser: oneOf(['closed', 'open'] as const),
    default: 'closed',
    doc: 'When the limit store (Redis) is unreachable: closed refuses with 503, open admits without limits. Both log and count it.',
  }),
  rateLimitAllowances: setting({
    env: 'RATE_LIMIT_ALLOWANCES',
    parser: boolean(),
    default: 'true',
    doc: 'With Redis: lease requests and tokens in bulk for users who keep an instance busy, admitting them from memory (never over a limit; see docs/rate-limits.md, Allowances). false checks every request against Redis.',
  }),
  rateLimitMemoryMaxKeys: setting({
    env: 'RATE_LIMIT_MEMORY_MAX_KEYS',
    parser: integer(100, 100_000_000),
    default: '100000',
    doc: 'In-process store only: most limit keys held; the least recently used beyond it are forgotten.',
  }),
  // Sessions, access tokens, refresh tokens and signing keys (feat/sessions)
  accessTokenTtl: setting({
    env: 'ACCESS_TOKEN_TTL',
    parser: duration(10_000),
    default: '15m',
    doc: 'Lifetime of an access token (JWT). Revocation is checked on every request, so this bounds only offline verification by others.',
  }),
  refreshTokenTtl: setting({
    env: 'REFRESH_TOKEN_TTL',
    parser: duration(60_000),
    default: '30d',
    doc: 'Sliding lifetime of a refresh token: a session unused this long ends. Each refresh issues a new one.',
  }),
  sessionMaxAge: setting({
    env: 'SESSION_MAX_AGE',
    parser: duration(60_000),
    default: '90d',
    doc: 'Absolute cap on a session: after it, the user signs in again whatever the refreshes.',
  }),
  signingKeyRotateInterval: setting({
    env: 'SIGNING_KEY_ROTATE_INTERVAL',
    parser: duration(60_000),
    default: '30d',
    doc: 'How long a JWT signing key signs before a new one replaces it; old public keys stay in the JWKS until their tokens expire.',
  }),
  // Key vault and upstream (feat/vault)
  anthropicApiKey: optional({
    env: 'ANTHROPIC_API_KEY',
    parser: text(),
    secret: true,
    doc: 'An Anthropic API key imported into the vault as the key `default` at start, unless a key with the same secret (compared by SHA-256 fingerprint) already exists. Optional: keys can be added with `portcullis keys add` instead.',
  }),
  anthropicBaseUrl: setting({
    env: 'ANTHROPIC_BASE_URL',
    parser: url(['https:', 'http:']),
    default: 'https://api.anthropic.com',
    doc: 'Base URL of the Anthropic API the gateway forwards to (a simulator or another compatible endpoint in tests).',
  }),
  // Upstream calls: retries, deadlines, circuit breakers, fallback models (feat/upstream)
  upstreamMaxRetries: setting({
    env: 'UPSTREAM_MAX_RETRIES',
    parser: integer(0, 10),
    default: '2',
    doc: 'Extra rounds over the healthy upstream keys per model after the first, with backoff (retry-after when upstream gives one). Switching to another key does not count as a retry.',
  }),
  upstreamDeadlineMs: setting({
    env: 'UPSTREAM_DEADLINE_MS',
    parser: integer(1000, 600_000),
    default: '60000',
    doc: 'Time from a request to the first byte of a usable upstream answer, across all retries and fallbacks (milliseconds). Past it the client gets 504 timeout_error. A non-streaming message, whose answer Anthropic sends whole once written, may wait UPSTREAM_TIMEOUT_MS for it instead (no attempt starts past this deadline).',
  }),
  upstreamTimeoutMs: setting({
    env: 'UPSTREAM_TIMEOUT_MS',
    parser: integer(1000, 3_600_000),
    default: '600000',
    doc: 'Longest silence allowed between two chunks of an upstream answer body (milliseconds); a stream silent for longer ends with an error event. Also how long one attempt of a non-streaming message waits for its answer.',
  }),
  circuitFailureThreshold: setting({
    env: 'CIRCUIT_FAILURE_THRESHOLD',
    parser: integer(1, 1000),
    default: '5',
    doc: 'Consecutive failures (connection errors, 5xx, 529) after which an upstream key is taken out of rotation for CIRCUIT_COOLDOWN_MS. A 401 from upstream takes it out at once; a 429 only pauses it for retry-after.',
  }),
  circuitCooldownMs: setting({
    env: 'CIRCUIT_COOLDOWN_MS',
    parser: integer(100, 3_600_000),
    default: '30000',
    doc: 'How long an upstream key stays out of rotation after its circuit opens, before one probe request may use it again (milliseconds).',
  }),
  fallbackModels: optional({
    env: 'FALLBACK_MODELS',
    parser: fallbackRules(),
    doc: 'Models to fall back to when every key failed for the requested one: comma-separated pattern=model pairs, * matching anything, e.g. claude-opus-*=claude-sonnet-4-5,claude-sonnet-*=claude-haiku-4-5. Unset: no fallback.',
  }),
  // Sign-in with uAuth / any OpenID Connect issuer (feat/oidc)
  uauthClientId: optional({
    env: 'UAUTH_CLIENT_ID',
    parser: text(),
    doc: 'Client id registered at UAUTH_ISSUER. Unset outside production: the built-in development identity provider is used instead (see DEV_IDP).',
  }),
  uauthClientSecret: optional({
    env: 'UAUTH_CLIENT_SECRET',
    parser: text(),
    secret: true,
    doc: 'Client secret registered at UAUTH_ISSUER; leave unset for a public client (token auth method none).',
  }),
  uauthTokenAuthMethod: optional({
    env: 'UAUTH_TOKEN_AUTH_METHOD',
    parser: oneOf(['client_secret_basic', 'client_secret_post', 'none'] as const),
    doc: 'How the gateway authenticates at the token endpoint. Default: client_secret_basic with a secret, none without.',
  }),
  uauthScope: setting({
    env: 'UAUTH_SCOPE',
    parser: text(),
    default: 'openid wallet',
    doc: 'Scopes asked for at sign-in (space-separated; must include openid). uAuth also knows email, profile, social:*, humanity_check.',
  }),
  uauthRedirectUri: optional({
    env: 'UAUTH_REDIRECT_URI',
    parser: url(['https:', 'http:']),
    doc: 'The callback registered at the issuer. Defaults to PUBLIC_URL/auth/callback.',
  }),
  uauthMaxAge: optional({
    env: 'UAUTH_MAX_AGE',
    parser: integer(0, 31_536_000),
    doc: 'Ask the issuer to re-authenticate people whose last sign-in there is older than this many seconds (OIDC max_age; auth_time is then checked).',
  }),
  devIdp: setting({
    env: 'DEV_IDP',
    parser: oneOf(['auto', 'on', 'off'] as const),
    default: 'auto',
    doc: 'DEVELOPMENT ONLY identity provider mounted at /dev-idp (any name signs in). auto: on when UAUTH_CLIENT_ID is unset and NODE_ENV is not production; on in production is a startup error.',
  }),
  // Demo mode (src/chat/demo.ts)
  demoMode: setting({
    env: 'DEMO_MODE',
    parser: oneOf(['auto', 'on', 'off'] as const),
    default: 'auto',
    doc: 'DEVELOPMENT ONLY: answer with the built-in Anthropic simulator instead of Anthropic. auto: on when no upstream key is configured (vault empty, ANTHROPIC_API_KEY unset) and NODE_ENV is not production; on in production is a startup error.',
  }),
  // WebSocket server (src/realtime, docs/protocol.md)
  wsMaxMessageBytes: setting({
    env: 'WS_MAX_MESSAGE_BYTES',
    parser: integer(1024, 64 * 1024 * 1024),
    default: '1048576',
    doc: 'Largest WebSocket frame a client may send (bytes); a bigger one closes the connection with 1009.',
  }),
  wsHeartbeatMs: setting({
    env: 'WS_HEARTBEAT_MS',
    parser: duration(10),
    default: '25s',
    doc: 'How often the server pings every WebSocket connection.',
  }),
  wsHeartbeatTimeoutMs: setting({
    env: 'WS_HEARTBEAT_TIMEOUT_MS',
    parser: duration(10),
    default: '10s',
    doc: 'How long a connection may stay silent after a ping (no pong, no frame) before it is terminated.',
  }),
  wsAuthRecheckMs: setting({
    env: 'WS_AUTH_RECHECK_MS',
    parser: duration(10),
    default: '60s',
    doc: 'How often every open WebSocket\'s credential is checked again (session or personal token live, user active); a dead one closes the connection with 4001. Each chat checks it as well before it starts.',
  }),
  wsIdleTimeoutMs: setting({
    env: 'WS_IDLE_TIMEOUT_MS',
    parser: duration(0),
    default: '0',
    doc: 'Closes (1000) connections that sent no frame at all (pongs excluded) for this long and run no chat; 0 keeps idle connections open.',
  }),
  wsResumeWindowMs: setting({
    env: 'WS_RESUME_WINDOW_MS',
    parser: duration(0),
    default: '60s',
    doc: 'How long a chat\'s events are kept for chat.resume after it ends or its socket drops; a chat nobody reclaims within it is aborted.',
  }),
  wsMaxConnectionsPerUser: setting({
    env: 'WS_MAX_CONNECTIONS_PER_USER',
    parser: integer(1, 100_000),
    default: '20',
    doc: 'WebSocket connections one user may hold (counted in the connection directory); one more is refused with HTTP 429 before the upgrade.',
  }),
  wsMaxBufferedBytes: setting({
    env: 'WS_MAX_BUFFERED_BYTES',
    parser: integer(1024, 1024 * 1024 * 1024),
    default: '4194304',
    doc: 'Outgoing bytes a connection may have queued (bufferedAmount); a slower client is closed with 4008.',
  }),
  // WebSocket finish (feat/ws-finish): upstream concurrency for many streaming chats
  upstreamConnections: setting({
    env: 'UPSTREAM_CONNECTIONS',
    parser: integer(1, 1_000_000),
    default: '1024',
    doc: 'Most sockets open to the upstream at once. A streaming chat holds one for its whole length (HTTP/1.1), so this caps the chats streaming at once per instance; requests beyond it wait in a queue.',
  }),
  // Scale-out (several instances on one Redis)
  instanceTtlMs: setting({
    env: 'INSTANCE_TTL_MS',
    parser: duration(1000),
    default: '10s',
    doc: 'With Redis: how long an instance counts as alive after its last heartbeat (sent every third of it). A killed instance\'s connections vanish and its chats are settled as failed by a survivor within about this long.',
  }),
};

export type Settings = typeof settings;
export type SettingKey = keyof Settings;
export type ConfigValues = {
  [K in SettingKey]: Settings[K] extends WithDefault<infer T> ? T : Settings[K] extends SettingDefinition<infer T> ? T | undefined : never;
};
