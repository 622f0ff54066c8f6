/** Per-user rate limits set by an admin from the CLI, stored by migration 0006 on both databases. */
import { expect, it } from 'vitest';
import { RateLimiter } from '../../src/ratelimit/index.js';
import { MemoryRateLimitStore } from '../../src/engine/ratelimit/index.js';
import { UserService } from '../../src/auth/users.js';
import { cli } from '../helpers/cli.js';
import { describeEachDatabase } from '../helpers/env.js';

describeEachDatabase('per-user rate-limit overrides', (db) => {
  it('portcullis users grant --rpm/--tpm sets them, revoke clears one, and the limiter applies them', async () => {
    const env = db.env({ RATE_LIMIT_RPM: '60', RATE_LIMIT_TPM: '100000' });
    expect((await cli(['users', 'add', '--sub', 'carol.crypto'], env)).code).toBe(0);
    const grant = await cli(['users', 'grant', 'carol.crypto', '--rpm', '2', '--tpm', '0', '--json'], env);
    expect(grant.stderr).toBe('');
    expect(JSON.parse(grant.stdout).grants.rateLimits).toEqual({ rpm: 2, tpm: 0 });
    expect(JSON.parse(grant.stdout).permissions.rateLimits).toEqual({ rpm: 2, tpm: 0 });
    const revoke = await cli(['users', 'revoke', 'carol.crypto', '--tpm', '--json'], env);
    expect(JSON.parse(revoke.stdout).grants.rateLimits).toEqual({ rpm: 2 });
    const bad = await cli(['users', 'grant', 'carol.crypto', '--rpm', '-3'], env);
    expect(bad.code).not.toBe(0);

    const engine = await db.engine(env);
    const users = new UserService(engine.database.db);
    const carol = await users.resolve('carol.crypto');
    const permissions = await users.permissions(carol.id);
    const limiter = new RateLimiter({ config: db.config(env), store: new MemoryRateLimitStore() });
    const admit = () => limiter.admitRequest({ userId: carol.id, tier: permissions.rateTier, override: permissions.rateLimits, estimatedInputTokens: 1, maxTokens: 1 });
    expect((await admit()).allowed).toBe(true);
    expect((await admit()).allowed).toBe(true);
    const third = await admit();
    expect(third.allowed).toBe(false);
    expect(third.limits.find((l) => l.name === 'requests_per_minute')?.limit).toBe(2);
    expect(third.limits.find((l) => l.name === 'tokens_per_minute')?.limit).toBe(100000);
    expect(await users.setRateLimits(carol.id, { rpm: null })).toBeNull();
    expect((await users.permissions(carol.id)).rateLimits).toBeUndefined();
  });
});
