/**
 * What a user may do: the union of their roles and personal grants, with per-user limits
 * overriding the roles'. Pure functions; the database side is in users.ts.
 */
import { GatewayError } from '../errors/index.js';

export const CAPABILITIES = ['manage_users', 'manage_keys', 'read_usage', 'broadcast'] as const;
export type Capability = (typeof CAPABILITIES)[number];

export function isCapability(value: string): value is Capability {
  return (CAPABILITIES as readonly string[]).includes(value);
}

export interface RoleDefinition {
  name: string;
  capabilities: Capability[];
  models: string[];
  maxOutputTokens: number | null;
  rateTier: string | null;
}

export interface Permissions {
  roles: string[];
  /** Glob patterns (`*` matches any run of characters) of the models the user may call. */
  models: string[];
  capabilities: Capability[];
  /** The largest max_tokens a request may ask for; null means no cap beyond the model's. */
  maxOutputTokens: number | null;
  /** The rate-limit tier; `default` unless a role or the user names another. */
  rateTier: string;
  /** Per-user limits an admin set, replacing the tier's values (absent: the tier's). */
  rateLimits?: RateLimitOverride;
}

/** Per-user numeric limits (0 = unlimited); each one given replaces the tier's value. */
export interface RateLimitOverride {
  rpm?: number;
  rpd?: number;
  tpm?: number;
  concurrent?: number;
}

export interface UserOverrides {
  models: string[];
  capabilities: Capability[];
  maxOutputTokens: number | null;
  rateTier: string | null;
  rateLimits?: RateLimitOverride | null;
}

/**
 * Roles are combined generously (a user with two roles may do what either allows);
 * a per-user limit replaces what the roles say.
 */
export function effectivePermissions(roles: RoleDefinition[], user: UserOverrides): Permissions {
  const models = new Set<string>(user.models);
  const capabilities = new Set<Capability>(user.capabilities);
  let roleCap: number | null | undefined;
  let roleTier: string | null = null;
  for (const role of roles) {
    role.models.forEach((m) => models.add(m));
    role.capabilities.forEach((c) => capabilities.add(c));
    if (roleCap !== null) roleCap = role.maxOutputTokens === null ? null : Math.max(roleCap ?? 0, role.maxOutputTokens);
    roleTier ??= role.rateTier;
  }
  return {
    roles: roles.map((r) => r.name).sort(),
    models: [...models].sort(),
    capabilities: CAPABILITIES.filter((c) => capabilities.has(c)),
    maxOutputTokens: user.maxOutputTokens ?? roleCap ?? null,
    rateTier: user.rateTier ?? roleTier ?? 'default',
    ...(user.rateLimits && Object.keys(user.rateLimits).length > 0 ? { rateLimits: user.rateLimits } : {}),
  };
}

const globCache = new Map<string, RegExp>();

/** `claude-sonnet-*` style matching; only `*` is special. */
export function matchesGlob(pattern: string, value: string): boolean {
  let re = globCache.get(pattern);
  if (!re) {
    re = new RegExp(`^${pattern.split('*').map((p) => p.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`);
    if (globCache.size < 1000) globCache.set(pattern, re);
  }
  return re.test(value);
}

export function modelAllowed(permissions: Pick<Permissions, 'models'>, model: string): boolean {
  return permissions.models.some((p) => matchesGlob(p, model));
}

export function hasCapability(permissions: Pick<Permissions, 'capabilities'>, capability: Capability): boolean {
  return permissions.capabilities.includes(capability);
}

export function requireCapability(permissions: Pick<Permissions, 'capabilities'>, capability: Capability): void {
  if (!hasCapability(permissions, capability)) {
    throw new GatewayError('permission_denied', `This action needs the ${capability} capability`, { reason: 'missing_capability' });
  }
}

export function requireModel(permissions: Pick<Permissions, 'models'>, model: string): void {
  if (!modelAllowed(permissions, model)) {
    throw new GatewayError('permission_denied', `You are not allowed to use the model ${model}`, { reason: 'model_not_allowed' });
  }
}

export function requireMaxTokens(permissions: Pick<Permissions, 'maxOutputTokens'>, maxTokens: number): void {
  if (permissions.maxOutputTokens !== null && maxTokens > permissions.maxOutputTokens) {
    throw new GatewayError(
      'invalid_request',
      `max_tokens: ${maxTokens} is more than your limit of ${permissions.maxOutputTokens}`,
      { reason: 'max_tokens_over_limit' },
    );
  }
}
