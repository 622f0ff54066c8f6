import { afterEach, describe, expect, it, vi } from 'vitest';
import { RetryPolicy, backoffDelay, parseRetryAfter, systemClock } from '../../src/upstream/retry.js';

const NOW = Date.parse('2026-11-28T12:00:00Z');

describe('upstream retry: retry-after parsing', () => {
  it('prefers retry-after-ms over retry-after', () => {
    expect(parseRetryAfter({ 'retry-after-ms': '1500', 'retry-after': '7' }, NOW)).toBe(1500);
    expect(parseRetryAfter({ 'retry-after-ms': '12.6' }, NOW)).toBe(13);
  });

  it('reads retry-after as seconds, integer or decimal', () => {
    expect(parseRetryAfter({ 'retry-after': '7' }, NOW)).toBe(7000);
    expect(parseRetryAfter({ 'retry-after': '0.25' }, NOW)).toBe(250);
    expect(parseRetryAfter({ 'retry-after': ' 0 ' }, NOW)).toBe(0);
  });

  it('reads retry-after as an HTTP date relative to now, never negative', () => {
    expect(parseRetryAfter({ 'retry-after': 'Sat, 28 Nov 2026 12:00:30 GMT' }, NOW)).toBe(30_000);
    expect(parseRetryAfter({ 'retry-after': 'Sat, 28 Nov 2026 11:59:00 GMT' }, NOW)).toBe(0);
  });

  it('ignores absent, negative and garbage values, falling back to retry-after when retry-after-ms is bad', () => {
    expect(parseRetryAfter({}, NOW)).toBeUndefined();
    expect(parseRetryAfter({ 'retry-after': '-3' }, NOW)).toBeUndefined();
    expect(parseRetryAfter({ 'retry-after': 'soon' }, NOW)).toBeUndefined();
    expect(parseRetryAfter({ 'retry-after': '2026' }, NOW)).toBe(600_000);
    expect(parseRetryAfter({ 'retry-after-ms': 'x', 'retry-after': '2' }, NOW)).toBe(2000);
  });

  it('caps absurd hints at ten minutes', () => {
    expect(parseRetryAfter({ 'retry-after': '86400' }, NOW)).toBe(600_000);
  });
});

describe('upstream retry: backoff', () => {
  it('draws uniformly under min(cap, base·2^n) (full jitter)', () => {
    const top = () => 0.999999;
    expect(backoffDelay(0, { baseMs: 500, capMs: 8000, random: top })).toBe(499);
    expect(backoffDelay(3, { baseMs: 500, capMs: 8000, random: top })).toBe(3999);
    expect(backoffDelay(10, { baseMs: 500, capMs: 8000, random: top })).toBe(7999);
    expect(backoffDelay(4, { random: () => 0 })).toBe(0);
    expect(backoffDelay(1, { baseMs: 100, random: () => 0.5 })).toBe(100);
  });

  it('uses upstream hints when given, backoff otherwise', () => {
    const policy = new RetryPolicy({ maxRetries: 2, deadlineMs: 1000, random: () => 0.5, baseMs: 1000 });
    expect(policy.delayFor(0, 2500)).toBe(2500);
    expect(policy.delayFor(2, undefined)).toBe(2000);
  });

  it('refuses nonsense limits', () => {
    expect(() => new RetryPolicy({ maxRetries: -1, deadlineMs: 1000 })).toThrow(RangeError);
    expect(() => new RetryPolicy({ maxRetries: 1, deadlineMs: 0 })).toThrow(RangeError);
  });
});

describe('upstream retry: the system clock', () => {
  afterEach(() => vi.restoreAllMocks());

  it('sleeps until its own now() has moved on by the time asked, even when timers run ahead of it', async () => {
    // A wall clock at half the speed of the timers: every timer fires "early" by now().
    const real = Date.now.bind(Date);
    const base = real();
    vi.spyOn(Date, 'now').mockImplementation(() => base + Math.floor((real() - base) / 2));
    const t0 = systemClock.now();
    await systemClock.sleep(40);
    expect(systemClock.now() - t0).toBeGreaterThanOrEqual(40);
  });

  it('still wakes up when the wall clock is set back while it sleeps', async () => {
    const real = Date.now.bind(Date);
    let offset = 0;
    vi.spyOn(Date, 'now').mockImplementation(() => real() - offset);
    const sleeping = systemClock.sleep(30);
    offset = 3_600_000; // an hour back, as an NTP step could
    await sleeping; // ends by the monotonic clock; the test's own timeout would fail it otherwise
    expect(systemClock.now()).toBeLessThan(real() - 3_000_000);
  });

  it('stops sleeping when its signal aborts', async () => {
    const controller = new AbortController();
    const sleeping = systemClock.sleep(60_000, controller.signal);
    controller.abort(new Error('client gone'));
    await expect(sleeping).rejects.toThrow('client gone');
    await expect(systemClock.sleep(10, controller.signal)).rejects.toThrow('client gone');
  });
});
