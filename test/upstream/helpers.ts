/**
 * Shared pieces of the upstream tests: a KeySource over a plain list of keys (it is just a
 * list, the way the vault will pick: first enabled, healthy, not excluded), a fake clock that
 * records requested waits instead of waiting, and a builder of callUpstream options against a
 * real simulator.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { CircuitBreakers } from '../../src/upstream/circuit.js';
import type { CancelSignal, UpstreamClient } from '../../src/upstream/client.js';
import { FallbackChain } from '../../src/upstream/fallback.js';
import type { KeyLease, KeySource } from '../../src/upstream/keys.js';
import type { CallUpstreamOptions } from '../../src/upstream/resilient.js';
import { RetryPolicy } from '../../src/upstream/retry.js';
import type { Clock } from '../../src/upstream/retry.js';
import type { SimulatedFault } from '../../src/simulator/index.js';

export interface TestKey {
  id: string;
  name: string;
  secret: string;
}

export class ListKeys implements KeySource {
  leased = 0;
  released = 0;
  readonly picks: string[] = [];
  constructor(private readonly keys: TestKey[]) {}

  pick(_model: string, exclude: ReadonlySet<string>, isHealthy: (keyId: string) => boolean): KeyLease | undefined {
    const key = this.keys.find((k) => !exclude.has(k.id) && isHealthy(k.id));
    if (!key) return undefined;
    this.leased += 1;
    this.picks.push(key.id);
    let done = false;
    return {
      keyId: key.id,
      name: key.name,
      secret: key.secret,
      release: () => {
        if (done) throw new Error(`lease of ${key.id} released twice`);
        done = true;
        this.released += 1;
      },
    };
  }

  count(): number {
    return this.keys.length;
  }
}

export class FakeClock implements Clock {
  t = 1_700_000_000_000;
  readonly sleeps: number[] = [];
  now(): number {
    return this.t;
  }
  async sleep(ms: number, signal?: CancelSignal): Promise<void> {
    signal?.throwIfAborted();
    this.sleeps.push(ms);
    this.t += ms;
  }
}

export const MODEL = 'claude-haiku-4-5';

export function messageBody(extra: Record<string, unknown> = {}): Buffer {
  return Buffer.from(JSON.stringify({ model: MODEL, max_tokens: 50, messages: [{ role: 'user', content: 'hello there' }], ...extra }));
}

export interface CallSetup {
  client: UpstreamClient;
  keys: KeySource;
  clock?: FakeClock;
  circuits?: CircuitBreakers;
  maxRetries?: number;
  deadlineMs?: number;
  /** RetryPolicy.wholeAnswerMs, with `wholeAnswer` set on the call. */
  wholeAnswerMs?: number;
  fallbacks?: string;
  fault?: SimulatedFault;
  body?: Buffer;
  model?: string;
  signal?: AbortSignal;
  headers?: IncomingHttpHeaders;
}

export function circuitsFor(clock: FakeClock, failureThreshold = 5): CircuitBreakers {
  return new CircuitBreakers({ failureThreshold, cooldownMs: 30_000, now: () => clock.now() });
}

/** callUpstream options for POST /v1/messages as a client would send it. */
export function callOptions(setup: CallSetup): CallUpstreamOptions & { clock: FakeClock } {
  const clock = setup.clock ?? new FakeClock();
  const body = setup.body ?? messageBody(setup.model ? { model: setup.model } : {});
  const fallbacks = setup.fallbacks
    ? new FallbackChain(setup.fallbacks.split(',').map((p) => ({ pattern: p.split('=')[0]!, replacement: p.split('=')[1]! })))
    : undefined;
  return {
    clock,
    client: setup.client,
    keys: setup.keys,
    circuits: setup.circuits ?? circuitsFor(clock),
    retry: new RetryPolicy({ maxRetries: setup.maxRetries ?? 2, deadlineMs: setup.deadlineMs ?? 10_000, wholeAnswerMs: setup.wholeAnswerMs, clock }),
    ...(setup.wholeAnswerMs !== undefined ? { wholeAnswer: true } : {}),
    ...(fallbacks ? { fallbacks } : {}),
    method: 'POST',
    path: '/v1/messages',
    headers: {
      'content-type': 'application/json',
      'anthropic-version': '2023-06-01',
      authorization: 'Bearer client-own-token',
      cookie: 'session=abc',
      ...(setup.fault ? { 'x-sim-fault': JSON.stringify(setup.fault) } : {}),
      ...setup.headers,
    },
    body,
    model: (JSON.parse(body.toString()) as { model: string }).model,
    requestId: 'req_test',
    ...(setup.signal ? { signal: setup.signal } : {}),
  };
}
