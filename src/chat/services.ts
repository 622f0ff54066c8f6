/**
 * Builds what the chat pipeline needs from the configuration: the rate limiter over the
 * engine's store, the upstream client (Anthropic, or the demo simulator), the key source
 * (the vault, or the demo key) and the pipeline itself. Used by buildApp.
 */
import type { FastifyBaseLogger } from 'fastify';
import type { Config } from '../config/index.js';
import type { Engine } from '../engine/index.js';
import type { FailureCounter } from '../ratelimit/index.js';
import { RateLimiter } from '../ratelimit/index.js';
import type { Upstream } from '../upstream/index.js';
import { createUpstream } from '../upstream/index.js';
import type { KeySource } from '../upstream/keys.js';
import type { UsageLedger } from '../vault/usage.js';
import type { KeyVault } from '../vault/vault.js';
import type { DemoUpstream } from './demo.js';
import { demoModeWanted, startDemoUpstream } from './demo.js';
import { ChatPipeline } from './pipeline.js';

export interface ChatServices {
  limiter: RateLimiter;
  upstream: Upstream;
  keys: KeySource;
  chat: ChatPipeline;
  /** Set in demo mode. */
  demo: DemoUpstream | undefined;
  close(): Promise<void>;
}

export interface CreateChatServicesOptions {
  config: Config;
  engine: Engine;
  vault: KeyVault;
  usage: UsageLedger;
  log: FastifyBaseLogger;
  /** Counts rate-limit store failures (a Prometheus counter labelled operation, policy). */
  rateLimitFailures?: FailureCounter;
}

export async function createChatServices(options: CreateChatServicesOptions): Promise<ChatServices> {
  const { config, engine, vault, usage, log, rateLimitFailures } = options;
  const limiter = new RateLimiter({ config, store: engine.rateLimitStore, logger: log, failureCounter: rateLimitFailures });
  const demo = demoModeWanted(config, vault.count()) ? await startDemoUpstream() : undefined;
  const upstream = createUpstream(config, demo ? { baseUrl: demo.baseUrl } : {});
  upstream.circuits.onStateChange((change) => log.warn({ key_id: change.keyId, from: change.from, to: change.to, reason: change.reason }, 'upstream key circuit changed'));
  const keys = demo?.keys ?? vault;
  if (demo) {
    log.warn({ upstream: demo.baseUrl }, 'DEMO MODE (development only): no upstream API key is configured, so Claude is played by the built-in simulator');
  }
  const chat = new ChatPipeline({ upstream, keys, limiter, usage, log });
  return {
    limiter,
    upstream,
    keys,
    chat,
    demo,
    async close() {
      await chat.drain();
      await limiter.close();
      await upstream.client.close().catch(() => {});
      await demo?.close();
    },
  };
}
