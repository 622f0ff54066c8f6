/** Input checks shared by every RateLimitStore implementation, so they refuse the same things. */
import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import type { CostAdjustment, LeaseRequest, LimitRule } from './port.js';

const positive = z.number().int().positive().max(Number.MAX_SAFE_INTEGER);
const nonNegative = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
const key = z.string().min(1).max(512);

const ruleSchema = z.object({ key, limit: positive, windowMs: positive, cost: nonNegative });
const rulesSchema = z
  .array(ruleSchema)
  .min(1)
  .max(16)
  .refine((rules) => new Set(rules.map((r) => r.key)).size === rules.length, 'rule keys must be distinct');
const adjustmentsSchema = z.array(z.object({ key, windowMs: positive, cost: nonNegative })).max(16);
const leaseSchema = z.object({ key, limit: positive, leaseId: key, ttlMs: positive, now: nonNegative.optional() });
const nowSchema = nonNegative.optional();

function parse<T>(schema: z.ZodType<T>, value: unknown, what: string): T {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  throw new TypeError(`invalid ${what}: ${issue ? `${issue.path.join('.') || '(root)'} ${issue.message}` : 'invalid'}`);
}

const isInt = (v: unknown, min: number): v is number => Number.isSafeInteger(v) && (v as number) >= min;
const isKey = (v: unknown): v is string => typeof v === 'string' && v.length >= 1 && v.length <= 512;

/**
 * The hot path (every request): plain checks first, costing well under a microsecond;
 * only a value that fails them goes through zod, for the same message as everywhere else.
 */
export function validateRules(rules: LimitRule[], now: number | undefined, aheadMs?: number): void {
  let ok = Array.isArray(rules) && rules.length >= 1 && rules.length <= 16 && (now === undefined || isInt(now, 0)) && (aheadMs === undefined || isInt(aheadMs, 0));
  for (let i = 0; ok && i < rules.length; i++) {
    const r = rules[i]!;
    ok = isKey(r.key) && isInt(r.limit, 1) && isInt(r.windowMs, 1) && isInt(r.cost, 0);
    for (let j = 0; ok && j < i; j++) ok = rules[j]!.key !== r.key;
  }
  if (ok) return;
  parse(rulesSchema, rules, 'rate-limit rules');
  parse(nowSchema, now, 'now');
  parse(nowSchema, aheadMs, 'aheadMs');
}

export function validateAdjustments(reservation: string, adjustments: CostAdjustment[], now: number | undefined): void {
  // Hot path (every settled request): plain checks first, zod only for the message of a bad value.
  let ok = isKey(reservation);
  ok &&= Array.isArray(adjustments) && adjustments.length <= 16 && (now === undefined || isInt(now, 0));
  for (let i = 0; ok && i < adjustments.length; i++) {
    const a = adjustments[i]!;
    ok = isKey(a.key) && isInt(a.windowMs, 1) && isInt(a.cost, 0);
  }
  if (ok) return;
  parse(key, reservation, 'reservation');
  parse(adjustmentsSchema, adjustments, 'cost adjustments');
  parse(nowSchema, now, 'now');
}

export function validateLease(request: LeaseRequest): void {
  // Hot path (every stream, and its renewals): plain checks first, zod only for the message.
  const ok =
    typeof request === 'object' && request !== null && isKey(request.key) && isKey(request.leaseId) &&
    isInt(request.limit, 1) && isInt(request.ttlMs, 1) && (request.now === undefined || isInt(request.now, 0));
  if (!ok) parse(leaseSchema, request, 'lease request');
}

/** Entry ids unique across instances: a random prefix per store, then a counter. */
export function idGenerator(): () => string {
  const prefix = randomBytes(6).toString('base64url');
  let sequence = 0;
  return () => `${prefix}${(sequence++).toString(36)}`;
}

/** The units a rule needs free to admit: a probe (cost 0) needs one. */
export function needed(rule: LimitRule): number {
  return rule.cost === 0 ? 1 : rule.cost;
}
