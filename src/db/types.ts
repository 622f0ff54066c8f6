/**
 * Table types for Kysely. Times are epoch milliseconds (bigint in PostgreSQL, parsed to
 * numbers), JSON lists are stored as text so one schema serves SQLite and PostgreSQL.
 */
import type { Generated, Insertable, Selectable, Updateable } from 'kysely';

export interface UsersTable {
  id: string;
  issuer: string;
  subject: string;
  display_name: string;
  email: string | null;
  wallet_address: string | null;
  status: 'active' | 'disabled';
  /** Per-user override of the roles' cap on max_tokens; null inherits. */
  max_output_tokens: number | null;
  /** Per-user override of the rate-limit tier; null inherits. */
  rate_tier: string | null;
  /** Per-user rate limits, JSON `{rpm?, rpd?, tpm?, concurrent?}` replacing the tier's; null inherits. */
  rate_limits: string | null;
  created_at: number;
  updated_at: number;
  last_login_at: number | null;
}

export interface RolesTable {
  name: string;
  description: string;
  /** JSON array of Capability. */
  capabilities: string;
  /** JSON array of model glob patterns. */
  models: string;
  max_output_tokens: number | null;
  rate_tier: string | null;
  created_at: number;
}

export interface UserRolesTable {
  user_id: string;
  role: string;
  created_at: number;
}

export interface UserGrantsTable {
  user_id: string;
  kind: 'model' | 'capability';
  value: string;
  created_at: number;
}

export interface SigningKeysTable {
  kid: string;
  alg: string;
  /** The public JWK, JSON. */
  public_jwk: string;
  /** The private JWK sealed with the envelope (context `signing_key:<kid>`). */
  private_sealed: string;
  created_at: number;
  /** When the key stops signing; its public half stays published a while longer. */
  expires_at: number;
  /** Set when the key is withdrawn early: tokens it signed stop verifying at once. */
  retired_at: number | null;
}

export interface SessionsTable {
  id: string;
  user_id: string;
  created_at: number;
  last_seen_at: number;
  ip: string;
  user_agent: string | null;
  issuer: string;
  /** Absolute cap: no refresh extends a session past it. */
  expires_at: number;
  revoked_at: number | null;
  revoked_reason: string | null;
}

export interface RefreshTokensTable {
  /** hex SHA-256 of the opaque token. */
  token_hash: string;
  session_id: string;
  created_at: number;
  expires_at: number;
  used_at: number | null;
  /** Hash of the token that replaced this one. */
  replaced_by: string | null;
}

export interface PersonalTokensTable {
  id: string;
  user_id: string;
  name: string;
  token_hash: string;
  /** JSON array of model globs narrowing the user's models, or null for no narrowing. */
  models: string | null;
  created_at: number;
  expires_at: number | null;
  last_used_at: number | null;
  revoked_at: number | null;
}

export type UpstreamKeyState = 'enabled' | 'disabled' | 'retiring';

export interface UpstreamKeysTable {
  /** `key_<hex>`. */
  id: string;
  name: string;
  /** Envelope-sealed secret, context `upstream_key:<id>`. */
  secret_sealed: string;
  /** Hex SHA-256 of the secret (API keys are high-entropy, so this reveals nothing usable). */
  fingerprint: string;
  last4: string;
  weight: number;
  /** JSON array of model glob patterns; empty means every model. */
  models: string;
  state: UpstreamKeyState;
  /** The secret replaced by the last rotation, same context; cleared after previous_retire_after. */
  previous_sealed: string | null;
  previous_last4: string | null;
  previous_retire_after: number | null;
  created_at: number;
  updated_at: number;
  rotated_at: number | null;
  disabled_at: number | null;
}

export interface UsageRecordsTable {
  id: string;
  request_id: string;
  user_id: string;
  session_id: string | null;
  personal_token_id: string | null;
  key_id: string | null;
  model: string;
  /** 0 or 1 (booleans are not portable between the two databases). */
  stream: number;
  input_tokens: number;
  output_tokens: number;
  cache_creation_input_tokens: number;
  cache_read_input_tokens: number;
  status: number;
  outcome: 'complete' | 'error' | 'cancelled' | 'failed_midstream';
  error_type: string | null;
  latency_ms: number;
  ttfb_ms: number | null;
  retries: number;
  fallback: string | null;
  created_at: number;
}

/** A pending sign-in (feat/oidc): single use, expires after ten minutes. */
export interface LoginStatesTable {
  /** Hex SHA-256 of the `state` sent to the identity provider. */
  state_hash: string;
  nonce: string;
  /** The PKCE verifier; short-lived, never logged. */
  code_verifier: string;
  /** Hex SHA-256 of the random value in the browser's login cookie (binds the callback to the browser that started the login). */
  browser_hash: string;
  /** The issuer the login was sent to. */
  issuer: string;
  return_to: string;
  created_at: number;
  expires_at: number;
  used_at: number | null;
}

export interface Database {
  users: UsersTable;
  roles: RolesTable;
  user_roles: UserRolesTable;
  user_grants: UserGrantsTable;
  signing_keys: SigningKeysTable;
  sessions: SessionsTable;
  refresh_tokens: RefreshTokensTable;
  personal_tokens: PersonalTokensTable;
  upstream_keys: UpstreamKeysTable;
  usage_records: UsageRecordsTable;
  login_states: LoginStatesTable;
}

export type UserRow = Selectable<UsersTable>;
export type NewUserRow = Insertable<UsersTable>;
export type UserUpdate = Updateable<UsersTable>;
export type RoleRow = Selectable<RolesTable>;
export type SigningKeyRow = Selectable<SigningKeysTable>;
export type SessionRow = Selectable<SessionsTable>;
export type PersonalTokenRow = Selectable<PersonalTokensTable>;
export type UpstreamKeyRow = Selectable<UpstreamKeysTable>;
export type UsageRecordRow = Selectable<UsageRecordsTable>;
export type { Generated };
export type LoginStateRow = Selectable<LoginStatesTable>;
