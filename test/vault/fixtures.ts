import { randomBytes } from 'node:crypto';
import type { UsageRecord } from '../../src/vault/usage.js';

/** A random secret shaped like an Anthropic API key. */
export const newSecret = (): string => `sk-ant-api03-${randomBytes(60).toString('base64url')}`;

/** A complete usage record with overrides. */
export function usage(over: Partial<UsageRecord>): UsageRecord {
  return {
    requestId: `req_${randomBytes(6).toString('hex')}`, userId: 'usr_a', sessionId: null, personalTokenId: null, keyId: null,
    model: 'claude-sonnet-4-5', stream: false, inputTokens: 10, outputTokens: 20, cacheCreationInputTokens: 0, cacheReadInputTokens: 0,
    status: 200, outcome: 'complete', errorType: null, latencyMs: 100, ttfbMs: 50, retries: 0, fallback: null, createdAt: Date.now(), ...over,
  };
}

