/** The limiter's input checks (limiter.ts), and the schemas behind their messages. */
import { z } from 'zod';
import type { AdmitRequestInput, StreamInput } from './limiter.js';
import type { TierOverride } from './tiers.js';
import { tierOverrideSchema } from './tiers.js';

const admitSchema = z.object({
  userId: z.string().min(1).max(256),
  tier: z.string().max(64).optional(),
  override: tierOverrideSchema.optional(),
  estimatedInputTokens: z.number().int().min(0),
  maxTokens: z.number().int().min(0),
  now: z.number().int().min(0).optional(),
});
export const tokensSchema = z.number().int().min(0);
export const ipSchema = z.string().min(1).max(64);
const streamSchema = z.object({
  userId: z.string().min(1).max(256),
  tier: z.string().max(64).optional(),
  override: tierOverrideSchema.optional(),
  leaseId: z.string().min(1).max(128).optional(),
});

export const isCount = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;
export const isName = (v: unknown, max: number): boolean => typeof v === 'string' && v.length >= 1 && v.length <= max;
const isOverride = (o: TierOverride | undefined): boolean =>
  o === undefined || (typeof o === 'object' && o !== null && Object.keys(o).every((k) => (k === 'rpm' || k === 'rpd' || k === 'tpm' || k === 'concurrent') && isCount(o[k])));

/**
 * The hot path (every request) checks its input with plain comparisons; only input that
 * fails them goes through zod, for its message (a TypeError: a caller's bug).
 */
export function checkedAdmit(input: AdmitRequestInput): AdmitRequestInput {
  const ok = isUserLimits(input) && isCount(input.estimatedInputTokens) && isCount(input.maxTokens) && (input.now === undefined || isCount(input.now));
  return ok ? input : admitSchema.parse(input);
}

export function checkedStream(input: StreamInput): StreamInput {
  const ok = isUserLimits(input) && (input.leaseId === undefined || isName(input.leaseId, 128));
  return ok ? input : streamSchema.parse(input);
}

/** The fields both inputs share: who, their tier and their override. */
function isUserLimits(input: Pick<AdmitRequestInput, 'userId' | 'tier' | 'override'>): boolean {
  return isName(input.userId, 256) && (input.tier === undefined || (typeof input.tier === 'string' && input.tier.length <= 64)) && isOverride(input.override);
}
