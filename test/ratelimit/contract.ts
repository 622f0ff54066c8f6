/**
 * The contract every RateLimitStore implementation passes (memory always, Redis when
 * TEST_REDIS_URL is set). Time is injected through `now`, so nothing here sleeps.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LimitRule, RateLimitStore } from '../../src/engine/ratelimit/port.js';
import { uniqueName } from '../helpers/env.js';

export interface RateLimitStoreFactory {
  /** A store; every store made by one factory shares state. */
  create(): Promise<RateLimitStore>;
  /** Stores sharing state over separate connections, for cross-connection races (optional). */
  peers?(count: number): Promise<RateLimitStore[]>;
}

const MINUTE = 60_000;
const T0 = Date.UTC(2030, 0, 1);

export function describeRateLimitStoreContract(name: string, factory: RateLimitStoreFactory): void {
  describe(`RateLimitStore contract: ${name}`, () => {
    let store: RateLimitStore;
    const owned: RateLimitStore[] = [];
    beforeAll(async () => {
      store = await factory.create();
      owned.push(store);
    });
    afterAll(async () => {
      await Promise.all(owned.map((s) => s.close()));
    });
    const key = (label: string) => `t:{${uniqueName(label)}}`;
    const rule = (k: string, limit: number, cost = 1, windowMs = MINUTE): LimitRule => ({ key: k, limit, windowMs, cost });

    it('admits up to the limit, then refuses with a positive retryAfterMs', async () => {
      const k = key('basic');
      for (let i = 0; i < 5; i++) {
        const d = await store.check([rule(k, 5)], { now: T0 + i * 1000 });
        expect(d.allowed).toBe(true);
        expect(d.reservation).toEqual(expect.any(String));
        expect(d.rules[0]).toMatchObject({ key: k, limit: 5, remaining: 4 - i, retryAfterMs: 0, resetAtMs: T0 + i * 1000 + MINUTE });
      }
      const refused = await store.check([rule(k, 5)], { now: T0 + 10_000 });
      expect(refused.allowed).toBe(false);
      expect(refused.reservation).toBeUndefined();
      // The oldest entry (T0) expires at T0 + 60 s: 50 s from now.
      expect(refused.rules[0]).toMatchObject({ remaining: 0, retryAfterMs: 50_000, resetAtMs: T0 + 4000 + MINUTE });
    });

    it('expires entries exactly at windowMs', async () => {
      const k = key('edge');
      expect((await store.check([rule(k, 1)], { now: T0 })).allowed).toBe(true);
      const before = await store.check([rule(k, 1)], { now: T0 + MINUTE - 1 });
      expect(before.allowed).toBe(false);
      expect(before.rules[0]!.retryAfterMs).toBe(1);
      expect((await store.check([rule(k, 1)], { now: T0 + MINUTE })).allowed).toBe(true);
    });

    it('never exceeds the limit within any window when bursts straddle a boundary', async () => {
      const k = key('burst');
      const admitted: number[] = [];
      // Bursts of 10 at the end of one minute and the start of the next, and every 7 s between.
      const times = [
        ...Array.from({ length: 10 }, () => T0 + MINUTE - 1),
        ...Array.from({ length: 10 }, () => T0 + MINUTE),
        ...Array.from({ length: 20 }, (_, i) => T0 + MINUTE + 1 + i * 7000),
      ];
      for (const t of times) if ((await store.check([rule(k, 6)], { now: t })).allowed) admitted.push(t);
      expect(admitted.length).toBeGreaterThan(6);
      for (const start of admitted) {
        expect(admitted.filter((t) => t >= start && t < start + MINUTE).length).toBeLessThanOrEqual(6);
      }
    });

    it('is all-or-nothing across rules: a refusal records nothing in the others', async () => {
      const a = key('a');
      const b = key('b');
      expect((await store.check([rule(b, 1)], { now: T0 })).allowed).toBe(true);
      const refused = await store.check([rule(a, 10), rule(b, 1)], { now: T0 + 1 });
      expect(refused.allowed).toBe(false);
      expect(refused.rules[0]).toMatchObject({ key: a, remaining: 10, retryAfterMs: 0 });
      expect(refused.rules[1]!.retryAfterMs).toBe(MINUTE - 1);
      const after = await store.check([rule(a, 10)], { now: T0 + 2 });
      expect(after.rules[0]!.remaining).toBe(9);
    });

    it('weighs entries by cost and times retries by when enough cost expires', async () => {
      const k = key('tokens');
      expect((await store.check([rule(k, 1000, 600)], { now: T0 })).allowed).toBe(true);
      expect((await store.check([rule(k, 1000, 300)], { now: T0 + 10_000 })).rules[0]!.remaining).toBe(100);
      const refused = await store.check([rule(k, 1000, 200)], { now: T0 + 20_000 });
      expect(refused.allowed).toBe(false);
      // 100 free; 200 needs the 600 at T0 to expire (at T0 + 60 s).
      expect(refused.rules[0]).toMatchObject({ remaining: 100, retryAfterMs: 40_000 });
      const tooBig = await store.check([rule(k, 1000, 1001)], { now: T0 + 20_000 });
      expect(tooBig.rules[0]!.retryAfterMs).toBe(MINUTE);
      expect((await store.check([rule(k, 1000, 100)], { now: T0 + 20_000 })).allowed).toBe(true);
    });

    it('treats cost 0 as a probe that records nothing', async () => {
      const k = key('probe');
      expect((await store.check([rule(k, 2, 0)], { now: T0 })).allowed).toBe(true);
      await store.check([rule(k, 2)], { now: T0 });
      await store.check([rule(k, 2)], { now: T0 + 5 });
      const probe = await store.check([rule(k, 2, 0)], { now: T0 + 10 });
      expect(probe.allowed).toBe(false);
      expect(probe.rules[0]).toMatchObject({ remaining: 0, retryAfterMs: MINUTE - 10 });
    });

    it('reconciles a reservation with the real cost, returning unused capacity', async () => {
      const r = key('rpm');
      const t = key('tpm');
      const d = await store.check([rule(r, 10), rule(t, 1000, 900)], { now: T0 });
      expect(d.rules[1]!.remaining).toBe(100);
      expect((await store.check([rule(t, 1000, 500)], { now: T0 + 1 })).allowed).toBe(false);
      await store.reconcile(d.reservation!, [{ key: t, windowMs: MINUTE, cost: 250 }], { now: T0 + 2 });
      const next = await store.check([rule(r, 10), rule(t, 1000, 500)], { now: T0 + 3 });
      expect(next.allowed).toBe(true);
      expect(next.rules[1]!.remaining).toBe(250);
      expect(next.rules[0]!.remaining).toBe(8);
      // Charging more than reserved is recorded too; zero removes the entry.
      await store.reconcile(next.reservation!, [{ key: t, windowMs: MINUTE, cost: 800 }], { now: T0 + 4 });
      expect((await store.check([rule(t, 1000, 0)], { now: T0 + 5 })).rules[0]!.remaining).toBe(0);
      await store.reconcile(d.reservation!, [{ key: t, windowMs: MINUTE, cost: 0 }], { now: T0 + 6 });
      expect((await store.check([rule(t, 1000, 0)], { now: T0 + 7 })).rules[0]!.remaining).toBe(200);
      // Unknown reservations and expired entries are ignored.
      await store.reconcile('nope', [{ key: t, windowMs: MINUTE, cost: 1 }], { now: T0 + 8 });
      await store.reconcile(next.reservation!, [{ key: t, windowMs: MINUTE, cost: 1 }], { now: T0 + 3 + MINUTE });
      expect((await store.check([rule(t, 1000, 0)], { now: T0 + 3 + MINUTE })).rules[0]!.remaining).toBe(1000);
    });

    it('counts entries stamped ahead at once and until a window after their stamp', async () => {
      const k = key('ahead');
      const leased = await store.check([rule(k, 10, 4)], { now: T0, aheadMs: 1000 });
      expect(leased.rules[0]).toMatchObject({ remaining: 6, resetAtMs: T0 + 1000 + MINUTE });
      // A later ordinary entry neither hides nor shortens the one stamped ahead.
      const later = await store.check([rule(k, 10, 1)], { now: T0 + 10 });
      expect(later.rules[0]).toMatchObject({ remaining: 5, resetAtMs: T0 + 1000 + MINUTE });
      expect((await store.check([rule(k, 10, 0)], { now: T0 + 20 + MINUTE })).rules[0]!.remaining).toBe(6);
      expect((await store.check([rule(k, 10, 0)], { now: T0 + 1000 + MINUTE })).rules[0]!.remaining).toBe(10);
    });

    it('an entry stamped ahead and reconciled to nothing no longer sets the reset', async () => {
      const k = key('ahead0');
      await store.check([rule(k, 10, 1)], { now: T0 });
      const leased = await store.check([rule(k, 10, 4)], { now: T0 + 10, aheadMs: 1000 });
      await store.reconcile(leased.reservation!, [{ key: k, windowMs: MINUTE, cost: 0 }], { now: T0 + 20 });
      const after = await store.check([rule(k, 10, 1)], { now: T0 + 30 });
      expect(after.rules[0]).toMatchObject({ remaining: 8, resetAtMs: T0 + 30 + MINUTE });
    });

    it('admits exactly `limit` of 50 concurrent checks', async () => {
      const k = key('race');
      const stores = factory.peers ? await factory.peers(3) : [store];
      owned.push(...(factory.peers ? stores : []));
      const results = await Promise.all(
        Array.from({ length: 50 }, (_, i) => stores[i % stores.length]!.check([rule(k, 17), rule(`${k}:tpm`, 1000, 10)])),
      );
      expect(results.filter((d) => d.allowed)).toHaveLength(17);
      expect(new Set(results.filter((d) => d.allowed).map((d) => d.reservation)).size).toBe(17);
      const tpm = await store.check([rule(`${k}:tpm`, 1000, 0)]);
      expect(tpm.rules[0]!.remaining).toBe(1000 - 170);
    });

    it('caps concurrent leases, renews them, releases them and lets them lapse', async () => {
      const k = key('lease');
      const lease = (id: string, now: number) => store.acquire({ key: k, limit: 2, leaseId: id, ttlMs: 30_000, now });
      expect(await lease('a', T0)).toEqual({ allowed: true, active: 1 });
      expect(await lease('b', T0 + 1)).toEqual({ allowed: true, active: 2 });
      expect(await lease('c', T0 + 2)).toEqual({ allowed: false, active: 2 });
      expect(await lease('a', T0 + 20_000)).toEqual({ allowed: true, active: 2 });
      await store.release(k, 'b');
      await store.release(k, 'unknown');
      expect(await lease('c', T0 + 20_001)).toEqual({ allowed: true, active: 2 });
      // a was renewed at +20 s and c taken at +20.001 s: both live at +49 s, both gone at +51 s.
      expect(await lease('d', T0 + 49_000)).toEqual({ allowed: false, active: 2 });
      expect(await lease('d', T0 + 50_001)).toEqual({ allowed: true, active: 1 });
    });

    it('counts only live leases when a renewed one outlives a lapsed one taken after it', async () => {
      const k = key('lease-order');
      const lease = (id: string, now: number) => store.acquire({ key: k, limit: 5, leaseId: id, ttlMs: 1000, now });
      await lease('a', T0); // expires at +1000
      await lease('b', T0 + 100); // expires at +1100
      await lease('a', T0 + 600); // renewed: expires at +1600
      // At +1150 b has lapsed and a has not: a and the new c are the live ones.
      expect(await lease('c', T0 + 1150)).toEqual({ allowed: true, active: 2 });
    });

    it('refuses malformed rules', async () => {
      await expect(store.check([])).rejects.toThrow(/rules/);
      await expect(store.check([rule('x', 0)])).rejects.toThrow(/limit/);
      await expect(store.check([rule('x', 1), rule('x', 2)])).rejects.toThrow(/distinct/);
      await expect(store.check([rule('x', 1, 1.5)])).rejects.toThrow(/cost/);
    });
  });
}
