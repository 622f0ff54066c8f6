/**
 * Demo mode: with no upstream key and outside production, the gateway answers with the
 * built-in Anthropic simulator, started in-process on a loopback port with a random key.
 * Nothing about it is stored: adding a real key and restarting leaves demo mode.
 */
import { randomBytes } from 'node:crypto';
import type { Config } from '../config/index.js';
import { ConfigError } from '../config/index.js';
import type { Simulator } from '../simulator/index.js';
import { buildSimulator } from '../simulator/index.js';
import type { KeyLease, KeySource } from '../upstream/keys.js';

export interface DemoUpstream {
  baseUrl: string;
  keys: KeySource;
  simulator: Simulator;
  close(): Promise<void>;
}

/** Whether demo mode applies, given how many keys the vault holds. */
export function demoModeWanted(config: Pick<Config, 'demoMode' | 'nodeEnv' | 'anthropicApiKey'>, vaultKeys: number): boolean {
  if (config.demoMode === 'on' && config.nodeEnv === 'production') {
    throw new ConfigError('DEMO_MODE=on is refused when NODE_ENV=production; add an upstream key instead');
  }
  if (config.demoMode === 'on') return true;
  if (config.demoMode === 'off' || config.nodeEnv === 'production') return false;
  return vaultKeys === 0 && !config.anthropicApiKey;
}

export async function startDemoUpstream(): Promise<DemoUpstream> {
  const secret = `sk-ant-demo-${randomBytes(16).toString('hex')}`;
  const simulator = await buildSimulator({ keys: [secret], deltaDelayMs: 20 });
  const baseUrl = await simulator.listen({ port: 0, host: '127.0.0.1' });
  const lease: KeyLease = { keyId: 'key_demo', name: 'demo-simulator', secret, release: () => {} };
  return {
    baseUrl,
    simulator,
    keys: { pick: (_model, exclude) => (exclude.has(lease.keyId) ? undefined : lease), count: () => 1 },
    close: () => simulator.close(),
  };
}
