import { describe, expect, it } from 'vitest';
import { CircuitBreakers } from '../../src/upstream/circuit.js';
import type { CircuitChange } from '../../src/upstream/circuit.js';

function setup(extra: Partial<ConstructorParameters<typeof CircuitBreakers>[0]> = {}) {
  let t = 1_000_000;
  const changes: CircuitChange[] = [];
  const circuits = new CircuitBreakers({ failureThreshold: 3, cooldownMs: 30_000, now: () => t, ...extra });
  circuits.onStateChange((c) => changes.push(c));
  return { circuits, changes, advance: (ms: number) => (t += ms) };
}

describe('upstream circuit breaker', () => {
  it('opens after N consecutive failures, not before; a success resets the count', () => {
    const { circuits, changes } = setup();
    circuits.recordFailure('k', 'status_500');
    circuits.recordFailure('k', 'status_500');
    circuits.recordSuccess('k');
    circuits.recordFailure('k', 'status_500');
    circuits.recordFailure('k', 'status_529');
    expect(circuits.state('k')).toBe('closed');
    expect(circuits.isHealthy('k')).toBe(true);
    circuits.recordFailure('k', 'econnrefused');
    expect(circuits.state('k')).toBe('open');
    expect(circuits.isHealthy('k')).toBe(false);
    expect(changes).toEqual([{ keyId: 'k', from: 'closed', to: 'open', reason: 'econnrefused' }]);
    expect(circuits.snapshot('k')).toMatchObject({ state: 'open', consecutiveFailures: 3, lastFailure: 'econnrefused' });
  });

  it('goes half-open after the cool-down and lets exactly one probe through; success closes', () => {
    const { circuits, changes, advance } = setup();
    for (let i = 0; i < 3; i++) circuits.recordFailure('k', 'status_500');
    advance(29_999);
    expect(circuits.isHealthy('k')).toBe(false);
    expect(circuits.msUntilAvailable(['k'])).toBe(1);
    advance(1);
    expect(circuits.state('k')).toBe('half_open');
    expect(circuits.isHealthy('k')).toBe(true);
    expect(circuits.isHealthy('k')).toBe(true); // asking does not take the slot
    circuits.attemptStarted('k');
    expect(circuits.isHealthy('k')).toBe(false); // one probe at a time
    circuits.recordSuccess('k');
    expect(circuits.state('k')).toBe('closed');
    expect(circuits.isHealthy('k')).toBe(true);
    expect(changes.map((c) => `${c.from}>${c.to}:${c.reason}`)).toEqual(['closed>open:status_500', 'open>half_open:cooldown_elapsed', 'half_open>closed:probe_succeeded']);
  });

  it('a failed probe reopens for a whole new cool-down; an abandoned probe frees the slot', () => {
    const { circuits, advance } = setup();
    for (let i = 0; i < 3; i++) circuits.recordFailure('k', 'status_500');
    advance(30_000);
    circuits.attemptStarted('k');
    circuits.recordAbandoned('k');
    expect(circuits.isHealthy('k')).toBe(true);
    circuits.attemptStarted('k');
    circuits.recordFailure('k', 'status_503');
    expect(circuits.state('k')).toBe('open');
    advance(29_000);
    expect(circuits.isHealthy('k')).toBe(false);
    advance(1000);
    expect(circuits.state('k')).toBe('half_open');
  });

  it('opens on the error rate over the window even without N in a row', () => {
    const { circuits } = setup({ failureThreshold: 100, minRequestsInWindow: 6, errorRateThreshold: 0.5, windowMs: 60_000 });
    for (let i = 0; i < 3; i++) {
      circuits.recordSuccess('k');
      circuits.recordFailure('k', 'status_500');
    }
    expect(circuits.state('k')).toBe('open');
    const other = setup({ failureThreshold: 100, minRequestsInWindow: 6 });
    for (let i = 0; i < 3; i++) {
      other.circuits.recordSuccess('k');
      other.circuits.recordSuccess('k');
      other.circuits.recordFailure('k', 'status_500');
    }
    expect(other.circuits.state('k')).toBe('closed');
  });

  it('old outcomes leave the window', () => {
    const { circuits, advance } = setup({ failureThreshold: 100, minRequestsInWindow: 4, windowMs: 10_000 });
    circuits.recordFailure('k', 'x');
    circuits.recordFailure('k', 'x');
    advance(11_000);
    circuits.recordSuccess('k');
    circuits.recordSuccess('k');
    circuits.recordFailure('k', 'x');
    expect(circuits.state('k')).toBe('closed');
  });

  it('trip opens at once (upstream rejected the key)', () => {
    const { circuits } = setup();
    circuits.trip('k', 'status_401');
    expect(circuits.state('k')).toBe('open');
    expect(circuits.snapshot('k').reopensAt).toBe(1_000_000 + 30_000);
  });

  it('a 429 cools the key for retry-after without counting as a failure', () => {
    const { circuits, advance, changes } = setup();
    circuits.recordRateLimited('k', 2000);
    expect(circuits.isHealthy('k')).toBe(false);
    expect(circuits.state('k')).toBe('closed');
    expect(circuits.snapshot('k')).toMatchObject({ coolingUntil: 1_002_000, consecutiveFailures: 0 });
    expect(circuits.msUntilAvailable()).toBe(2000);
    advance(2000);
    expect(circuits.isHealthy('k')).toBe(true);
    circuits.recordRateLimited('k', undefined);
    expect(circuits.msUntilAvailable(['k'])).toBe(1000);
    expect(changes).toEqual([]);
  });

  it('keeps keys apart and reports unknown keys as healthy', () => {
    const { circuits } = setup({ failureThreshold: 1 });
    circuits.recordFailure('a', 'x');
    expect(circuits.isHealthy('a')).toBe(false);
    expect(circuits.isHealthy('b')).toBe(true);
    expect(circuits.msUntilAvailable(['a', 'b'])).toBe(0);
    circuits.forget('a');
    expect(circuits.state('a')).toBe('closed');
  });
});
