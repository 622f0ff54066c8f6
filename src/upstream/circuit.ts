/**
 * One circuit breaker per upstream key, kept in memory by each gateway instance.
 *
 * closed ──(N consecutive failures, or an error rate over the window)──▶ open
 * open ──(cool-down elapsed)──▶ half_open ──(ONE probe: success)──▶ closed
 *                                         ──(probe fails)──▶ open (a new cool-down)
 *
 * Failures are connection errors, 5xx and 529 (`recordFailure`). A 401 from upstream means the
 * key itself is bad: `trip` opens the circuit at once. A 429 is NOT a failure (the key works,
 * its rate limit is spent): `recordRateLimited` marks the key "cooling" until upstream's
 * retry-after (1 s when absent), during which it is skipped like an open key but its failure
 * counts are untouched, so a busy key comes back as soon as upstream says it may.
 *
 * Guarantees: `isHealthy` has no side effect (a key source may ask about many keys); a
 * half-open key admits exactly one attempt between `attemptStarted` and its verdict
 * (`recordSuccess`/`recordFailure`/`trip`/`recordRateLimited`/`recordAbandoned`), in a single
 * process. State is per instance, not shared across a cluster: each instance learns on its own
 * within a few requests, which is what the thresholds are for.
 */

export type CircuitState = 'closed' | 'open' | 'half_open';

export interface CircuitOptions {
  /** Consecutive failures that open the circuit (CIRCUIT_FAILURE_THRESHOLD). */
  failureThreshold: number;
  /** How long an open circuit stays open before a probe (CIRCUIT_COOLDOWN_MS). */
  cooldownMs: number;
  /** Window of the error-rate rule (60 s by default). */
  windowMs?: number;
  /** Attempts needed in the window before the rate rule applies (10 by default). */
  minRequestsInWindow?: number;
  /** Failure ratio in the window that opens the circuit (0.5 by default). */
  errorRateThreshold?: number;
  /** Default cooling after a 429 without retry-after (1000 ms). */
  rateLimitCoolingMs?: number;
  now?: () => number;
}

/** What /metrics and the key list show for one key. */
export interface CircuitSnapshot {
  state: CircuitState;
  /** Skipped because of a 429 until `coolingUntil` (epoch ms), or null. */
  coolingUntil: number | null;
  consecutiveFailures: number;
  /** When an open circuit admits its probe (epoch ms), or null. */
  reopensAt: number | null;
  lastFailure: string | null;
}

export interface CircuitChange {
  keyId: string;
  from: CircuitState;
  to: CircuitState;
  /** Why: the failure that opened it, `cooldown_elapsed`, `probe_succeeded`, … */
  reason: string;
}

interface Entry {
  state: CircuitState;
  consecutive: number;
  openedUntil: number;
  coolingUntil: number;
  probeInFlight: boolean;
  lastFailure: string | null;
  /** Recent outcomes (epoch ms, ok), oldest first, bounded. */
  window: { at: number; ok: boolean }[];
}

const WINDOW_CAP = 200;

/** The circuits of every key of one gateway instance. */
export class CircuitBreakers {
  private readonly entries = new Map<string, Entry>();
  private readonly listeners = new Set<(change: CircuitChange) => void>();
  private readonly opts: Required<Omit<CircuitOptions, 'now'>>;
  private readonly now: () => number;

  constructor(options: CircuitOptions) {
    if (!Number.isInteger(options.failureThreshold) || options.failureThreshold < 1) throw new RangeError('failureThreshold must be a positive integer');
    if (!(options.cooldownMs >= 0)) throw new RangeError('cooldownMs must be non-negative');
    this.opts = {
      failureThreshold: options.failureThreshold,
      cooldownMs: options.cooldownMs,
      windowMs: options.windowMs ?? 60_000,
      minRequestsInWindow: options.minRequestsInWindow ?? 10,
      errorRateThreshold: options.errorRateThreshold ?? 0.5,
      rateLimitCoolingMs: options.rateLimitCoolingMs ?? 1000,
    };
    this.now = options.now ?? Date.now;
  }

  /** Subscribes to state changes (for logs); returns the unsubscribe function. Listeners must not throw. */
  onStateChange(listener: (change: CircuitChange) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Whether an attempt with this key may start now. Pure: asking never takes the probe slot. */
  isHealthy(keyId: string): boolean {
    const e = this.entries.get(keyId);
    if (!e) return true;
    this.advance(keyId, e);
    if (e.coolingUntil > this.now()) return false;
    if (e.state === 'closed') return true;
    return e.state === 'half_open' && !e.probeInFlight;
  }

  state(keyId: string): CircuitState {
    const e = this.entries.get(keyId);
    if (!e) return 'closed';
    this.advance(keyId, e);
    return e.state;
  }

  snapshot(keyId: string): CircuitSnapshot {
    const e = this.entries.get(keyId);
    if (!e) return { state: 'closed', coolingUntil: null, consecutiveFailures: 0, reopensAt: null, lastFailure: null };
    this.advance(keyId, e);
    return {
      state: e.state,
      coolingUntil: e.coolingUntil > this.now() ? e.coolingUntil : null,
      consecutiveFailures: e.consecutive,
      reopensAt: e.state === 'open' ? e.openedUntil : null,
      lastFailure: e.lastFailure,
    };
  }

  /**
   * Milliseconds until the soonest of these keys (every key seen, when omitted) becomes usable
   * again: 0 if one is usable now, undefined when there is no key to ask about.
   */
  msUntilAvailable(keyIds?: Iterable<string>): number | undefined {
    let best: number | undefined;
    const now = this.now();
    for (const id of keyIds ?? [...this.entries.keys()]) {
      const e = this.entries.get(id);
      if (!e) return 0;
      this.advance(id, e);
      const openWait = e.state === 'open' ? e.openedUntil - now : 0;
      const wait = Math.max(0, openWait, e.coolingUntil - now);
      best = best === undefined ? wait : Math.min(best, wait);
    }
    return best;
  }

  /** An attempt with this key starts: a half-open key's probe slot is taken. */
  attemptStarted(keyId: string): void {
    const e = this.entry(keyId);
    this.advance(keyId, e);
    if (e.state === 'half_open') e.probeInFlight = true;
  }

  recordSuccess(keyId: string): void {
    const e = this.entry(keyId);
    this.push(e, true);
    e.consecutive = 0;
    e.probeInFlight = false;
    if (e.state !== 'closed') this.move(keyId, e, 'closed', 'probe_succeeded');
  }

  /** A connection error, 5xx or 529 from this key (`reason` is logged, e.g. `status_529`). */
  recordFailure(keyId: string, reason: string): void {
    const e = this.entry(keyId);
    this.advance(keyId, e);
    this.push(e, false);
    e.consecutive += 1;
    e.lastFailure = reason;
    const wasProbe = e.state === 'half_open';
    e.probeInFlight = false;
    if (wasProbe || (e.state === 'closed' && (e.consecutive >= this.opts.failureThreshold || this.rateExceeded(e)))) this.open(keyId, e, reason);
  }

  /** Opens the circuit now, whatever the counts (upstream rejected the key itself). */
  trip(keyId: string, reason: string): void {
    const e = this.entry(keyId);
    this.advance(keyId, e);
    this.push(e, false);
    e.consecutive += 1;
    e.lastFailure = reason;
    e.probeInFlight = false;
    this.open(keyId, e, reason);
  }

  /** A 429: the key cools for `retryAfterMs` (default 1 s); failure counts unchanged. */
  recordRateLimited(keyId: string, retryAfterMs: number | undefined): void {
    const e = this.entry(keyId);
    e.probeInFlight = false;
    e.lastFailure = 'rate_limited';
    e.coolingUntil = Math.max(e.coolingUntil, this.now() + (retryAfterMs ?? this.opts.rateLimitCoolingMs));
  }

  /** The attempt ended without a verdict (client went away, client error): frees a probe slot. */
  recordAbandoned(keyId: string): void {
    const e = this.entries.get(keyId);
    if (e) e.probeInFlight = false;
  }

  /** Drops a key's state (key deleted or re-enabled by an operator). */
  forget(keyId: string): void {
    this.entries.delete(keyId);
  }

  private entry(keyId: string): Entry {
    let e = this.entries.get(keyId);
    if (!e) {
      e = { state: 'closed', consecutive: 0, openedUntil: 0, coolingUntil: 0, probeInFlight: false, lastFailure: null, window: [] };
      this.entries.set(keyId, e);
    }
    return e;
  }

  /** open → half_open once the cool-down has elapsed (evaluated lazily, no timers). */
  private advance(keyId: string, e: Entry): void {
    if (e.state === 'open' && this.now() >= e.openedUntil) {
      e.probeInFlight = false;
      this.move(keyId, e, 'half_open', 'cooldown_elapsed');
    }
  }

  private open(keyId: string, e: Entry, reason: string): void {
    e.openedUntil = this.now() + this.opts.cooldownMs;
    if (e.state !== 'open') this.move(keyId, e, 'open', reason);
  }

  private move(keyId: string, e: Entry, to: CircuitState, reason: string): void {
    const from = e.state;
    e.state = to;
    if (to === 'closed') e.window = [];
    for (const listener of this.listeners) listener({ keyId, from, to, reason });
  }

  private push(e: Entry, ok: boolean): void {
    const now = this.now();
    e.window.push({ at: now, ok });
    const horizon = now - this.opts.windowMs;
    while (e.window.length > 0 && (e.window[0]!.at < horizon || e.window.length > WINDOW_CAP)) e.window.shift();
  }

  private rateExceeded(e: Entry): boolean {
    if (e.window.length < this.opts.minRequestsInWindow) return false;
    const failures = e.window.reduce((n, o) => n + (o.ok ? 0 : 1), 0);
    return failures / e.window.length >= this.opts.errorRateThreshold;
  }
}
