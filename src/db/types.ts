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
  login_states: LoginStatesTable;
}

export type UserRow = Selectable<UsersTable>;
export type NewUserRow = Insertable<UsersTable>;
export type UserUpdate = Updateable<UsersTable>;
export type RoleRow = Selectable<RolesTable>;
export type { Generated };
export type LoginStateRow = Selectable<LoginStatesTable>;
