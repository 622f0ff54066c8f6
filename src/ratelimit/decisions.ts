/**
 * What the limiter (limiter.ts) answers, made from what its store or an allowance answered:
 * each limit's state (LimitStatus), an admission's token reservation, a stream's lease.
 */
import type { Decision, LeaseResult, LimitRule, RuleOutcome } from '../engine/ratelimit/port.js';
import type { Allowance, AllowanceRule } from './allowances.js';
import { freeOf } from './allowances.js';
import type { UserKeys } from './keys.js';
import type { LimitName, LimitStatus, RequestAdmission, StreamAdmission, StreamLease } from './limiter.js';
import type { TierLimits } from './tiers.js';

/** One limit's state as a LimitStatus, named. */
export function limitStatus(name: LimitName, o: RuleOutcome): LimitStatus {
  return { name, key: o.key, limit: o.limit, remaining: o.remaining, resetAtMs: o.resetAtMs, retryAfterMs: o.retryAfterMs };
}

/** A request admitted from an allowance; each limit's remaining is what is free of it (`freeOf`). */
export function admittedFrom(allowance: Allowance, reserved: number): RequestAdmission {
  const limits: LimitStatus[] = [];
  let tokens: AllowanceRule | undefined;
  for (let i = 0; i < allowance.rules.length; i++) {
    const rule = allowance.rules[i]!;
    if (rule.tokens) tokens = rule;
    const remaining = Math.min(rule.limit, Math.max(0, freeOf(allowance, i)));
    limits.push({ name: rule.name, key: rule.key, limit: rule.limit, remaining, resetAtMs: allowance.leasedAt[i]!.resetAtMs, retryAfterMs: 0 });
  }
  const admission: RequestAdmission = { allowed: true, limits, degraded: false };
  // Nothing reserved (count_tokens), nothing to settle: the allowance does not wait for it.
  if (tokens && reserved > 0) admission.reservation = { id: allowance.id, key: tokens.key, windowMs: tokens.windowMs, reserved, allowance };
  return admission;
}

/** The rules of one admission (RateLimiter.admissionPlan). */
export interface AdmissionPlan {
  named: [LimitName, LimitRule][];
  keys: UserKeys;
  limits: TierLimits;
  reserved: number;
  now: number | undefined;
}

/** The admission a store's decision on `plan` makes. */
export function admissionOf(plan: AdmissionPlan, decision: Decision): RequestAdmission {
  const { named, reserved } = plan;
  const result: RequestAdmission = {
    allowed: decision.allowed,
    limits: decision.rules.map((outcome, i) => limitStatus(named[i]![0], outcome)),
    degraded: false,
  };
  const tpm = named.find(([name]) => name === 'tokens_per_minute');
  if (decision.allowed && decision.reservation && tpm) {
    result.reservation = { id: decision.reservation, key: tpm[1].key, windowMs: tpm[1].windowMs, reserved };
  }
  return result;
}

/** The admission a store's answer to `lease` makes. */
export function streamAdmissionOf(lease: StreamLease, result: LeaseResult): StreamAdmission {
  const status: LimitStatus = {
    name: 'concurrent_streams',
    key: lease.key,
    limit: lease.limit,
    remaining: Math.max(0, lease.limit - result.active),
    resetAtMs: Date.now() + (result.allowed ? 0 : lease.ttlMs),
    // When a slot frees is unknowable; a second is a polite pause before asking again.
    retryAfterMs: result.allowed ? 0 : 1000,
  };
  return result.allowed ? { allowed: true, limits: [status], degraded: false, lease } : { allowed: false, limits: [status], degraded: false };
}
