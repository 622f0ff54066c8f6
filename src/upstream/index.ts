/**
 * The upstream side of the proxy: an HTTP client to Anthropic, header policy, retries,
 * circuits per key, fallback models and the SSE tap. `createUpstream(config)` builds the
 * long-lived parts once (the composition root owns them and closes the client on shutdown);
 * `callUpstream` is then called per request with them.
 */
import type { Config } from '../config/index.js';
import { CircuitBreakers } from './circuit.js';
import { UpstreamClient } from './client.js';
import { FallbackChain } from './fallback.js';
import { RetryPolicy } from './retry.js';
import type { Clock } from './retry.js';

export type { KeyLease, KeySource } from './keys.js';
export { CircuitBreakers } from './circuit.js';
export type { CircuitChange, CircuitOptions, CircuitSnapshot, CircuitState } from './circuit.js';
export { UpstreamClient } from './client.js';
export type { UpstreamBody, UpstreamClientOptions, UpstreamRequest, UpstreamResponse } from './client.js';
export { FallbackChain, fallbackRules, withModel } from './fallback.js';
export type { FallbackRule } from './fallback.js';
export { responseHeadersForClient, upstreamRequestHeaders } from './headers.js';
export { RetryPolicy, backoffDelay, parseRetryAfter, systemClock } from './retry.js';
export type { Clock, RetryPolicyOptions } from './retry.js';
export { ANY_MODEL, callUpstream, resilienceHeaders } from './resilient.js';
export type { AttemptRecord, CallUpstreamOptions, UpstreamOutcome } from './resilient.js';
export { SseTap, emptyUsage, sseErrorEvent, usageFromMessage } from './sse.js';
export type { StreamSummary, TokenUsage } from './sse.js';

export interface Upstream {
  client: UpstreamClient;
  circuits: CircuitBreakers;
  retry: RetryPolicy;
  fallbacks: FallbackChain;
}

/**
 * Builds the upstream parts from the settings. The base URL is `options.baseUrl` (demo mode's
 * in-process simulator), else ANTHROPIC_BASE_URL.
 */
export function createUpstream(
  config: Pick<
    Config,
    | 'anthropicBaseUrl'
    | 'upstreamMaxRetries'
    | 'upstreamDeadlineMs'
    | 'upstreamTimeoutMs'
    | 'upstreamConnections'
    | 'circuitFailureThreshold'
    | 'circuitCooldownMs'
    | 'fallbackModels'
  >,
  options: { baseUrl?: string; clock?: Clock } = {},
): Upstream {
  const baseUrl = options.baseUrl ?? config.anthropicBaseUrl;
  const clock = options.clock;
  return {
    client: new UpstreamClient({
      baseUrl,
      // The attempts' own timers cut sooner (the deadline; a whole answer's UPSTREAM_TIMEOUT_MS).
      headersTimeoutMs: config.upstreamTimeoutMs,
      bodyTimeoutMs: config.upstreamTimeoutMs,
      connections: config.upstreamConnections,
    }),
    circuits: new CircuitBreakers({
      failureThreshold: config.circuitFailureThreshold,
      cooldownMs: config.circuitCooldownMs,
      ...(clock ? { now: () => clock.now() } : {}),
    }),
    retry: new RetryPolicy({
      maxRetries: config.upstreamMaxRetries,
      deadlineMs: config.upstreamDeadlineMs,
      wholeAnswerMs: config.upstreamTimeoutMs,
      ...(clock ? { clock } : {}),
    }),
    fallbacks: new FallbackChain(config.fallbackModels ?? []),
  };
}
