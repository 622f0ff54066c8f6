/** Input checks shared by every RateLimitStore implementation, so they refuse the same things. */
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

export function validateRules(rules: LimitRule[], now: number | undefined): void {
  parse(rulesSchema, rules, 'rate-limit rules');
  parse(nowSchema, now, 'now');
}

export function validateAdjustments(reservation: string, adjustments: CostAdjustment[], now: number | undefined): void {
  parse(key, reservation, 'reservation');
  parse(adjustmentsSchema, adjustments, 'cost adjustments');
  parse(nowSchema, now, 'now');
}

export function validateLease(request: LeaseRequest): void {
  parse(leaseSchema, request, 'lease request');
}

/** The units a rule needs free to admit: a probe (cost 0) needs one. */
export function needed(rule: LimitRule): number {
  return rule.cost === 0 ? 1 : rule.cost;
}
