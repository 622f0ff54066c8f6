/**
 * Tiers: the `default` tier from RATE_LIMIT_RPM/RPD/TPM/CONCURRENT, named tiers from
 * RATE_LIMIT_TIERS (missing values inherit the default's), and per-user overrides on top.
 * A limit of 0 means "no limit" for that dimension.
 */
import { z } from 'zod';
import type { Config } from '../config/index.js';

export interface TierLimits {
  /** Requests per minute (sliding 60 s). */
  rpm: number;
  /** Requests per day (sliding 24 h). */
  rpd: number;
  /** Tokens (input + output) per minute (sliding 60 s). */
  tpm: number;
  /** Concurrent streams. */
  concurrent: number;
}

export type RateLimitConfig = Pick<
  Config,
  | 'rateLimitRpm'
  | 'rateLimitRpd'
  | 'rateLimitTpm'
  | 'rateLimitConcurrent'
  | 'rateLimitTiers'
  | 'rateLimitIpAuthPerMin'
  | 'rateLimitIpUpgradePerMin'
  | 'rateLimitAuthFailuresPerMin'
  | 'rateLimitLeaseTtl'
  | 'rateLimitFailurePolicy'
  | 'rateLimitAllowances'
>;

const limit = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
/** A per-user override: any subset of the tier's limits. */
export const tierOverrideSchema = z.strictObject({ rpm: limit.optional(), rpd: limit.optional(), tpm: limit.optional(), concurrent: limit.optional() });
export type TierOverride = z.infer<typeof tierOverrideSchema>;

/** Every tier by name, `default` included, fully resolved. */
export function tierTable(config: RateLimitConfig): Map<string, TierLimits> {
  const base: TierLimits = {
    rpm: config.rateLimitRpm,
    rpd: config.rateLimitRpd,
    tpm: config.rateLimitTpm,
    concurrent: config.rateLimitConcurrent,
  };
  const table = new Map<string, TierLimits>([['default', base]]);
  for (const [name, partial] of Object.entries(config.rateLimitTiers ?? {})) table.set(name, applyOverride(base, partial));
  return table;
}

export function applyOverride(limits: TierLimits, override: TierOverride | undefined): TierLimits {
  if (!override) return limits;
  return {
    rpm: override.rpm ?? limits.rpm,
    rpd: override.rpd ?? limits.rpd,
    tpm: override.tpm ?? limits.tpm,
    concurrent: override.concurrent ?? limits.concurrent,
  };
}
