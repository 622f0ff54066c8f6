/**
 * Chooses the rate-limit store for the Engine: Redis when a client is given (limits shared
 * by every instance), otherwise the in-process store (exact for a single instance).
 */
import type { Redis } from 'ioredis';
import type { Config } from '../../config/index.js';
import { MemoryRateLimitStore } from './memory.js';
import type { RateLimitStore } from './port.js';
import { RedisRateLimitStore } from './redis.js';

export type { CheckOptions, CostAdjustment, Decision, LeaseRequest, LeaseResult, LimitRule, RateLimitStore, RuleOutcome } from './port.js';
export { MemoryRateLimitStore } from './memory.js';
export { RedisRateLimitStore } from './redis.js';

export function createRateLimitStore(
  config: Pick<Config, 'redisKeyPrefix' | 'rateLimitMemoryMaxKeys'>,
  redis: Redis | undefined,
): RateLimitStore {
  if (redis) return new RedisRateLimitStore({ redis, prefix: `${config.redisKeyPrefix}rl:` });
  return new MemoryRateLimitStore({ maxKeys: config.rateLimitMemoryMaxKeys });
}
