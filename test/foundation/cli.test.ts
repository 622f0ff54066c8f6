import { once } from 'node:events';
import { describe, expect, it } from 'vitest';
import { describeEachDatabase } from '../helpers/env.js';
import { cli, freePort, runCli, spawnCli, waitForStatus } from '../helpers/cli.js';

describeEachDatabase('portcullis users (CLI)', (db) => {
  it('adds a user with a role and shows it as JSON with its grants', async () => {
    const env = db.env();
    const add = await cli(['users', 'add', '--issuer', 'https://example.test', '--sub', 'alice.crypto', '--role', 'admin'], env);
    expect(add.stderr).toBe('');
    expect(add.code).toBe(0);
    expect(add.stdout).toMatch(/^created alice\.crypto \(usr_[0-9a-f]+\) with roles admin/);

    const show = await cli(['users', 'show', 'alice.crypto', '--json'], env);
    expect(show.code).toBe(0);
    const user = JSON.parse(show.stdout);
    expect(user).toMatchObject({ subject: 'alice.crypto', issuer: 'https://example.test', roles: ['admin'], status: 'active' });
    expect(user.grants).toEqual({ models: [], capabilities: [], maxOutputTokens: null, rateTier: null, rateLimits: null });
    expect(user.permissions.capabilities).toContain('manage_keys');
  });

  it('grants, revokes, disables and lists', async () => {
    const env = db.env();
    expect((await cli(['users', 'add', '--sub', 'bob.crypto'], env)).code).toBe(0);
    const grant = await cli(['users', 'grant', 'bob.crypto', '--model', 'claude-sonnet-*', '--max-output-tokens', '1024', '--tier', 'pro', '--json'], env);
    expect(grant.code).toBe(0);
    expect(JSON.parse(grant.stdout).grants).toEqual({ models: ['claude-sonnet-*'], capabilities: [], maxOutputTokens: 1024, rateTier: 'pro', rateLimits: null });
    const revoke = await cli(['users', 'revoke', 'bob.crypto', '--model', 'claude-sonnet-*', '--tier', '--json'], env);
    expect(JSON.parse(revoke.stdout).grants).toMatchObject({ models: [], rateTier: null, maxOutputTokens: 1024 });
    expect((await cli(['users', 'disable', 'bob.crypto'], env)).stdout.trim()).toBe('bob.crypto: disabled');
    const list = await cli(['users', 'list', '--status', 'disabled'], env);
    expect(list.stdout).toContain('bob.crypto');
  });

  it('gives one clear line and a non-zero exit for bad input', async () => {
    const env = db.env();
    await cli(['users', 'add', '--sub', 'carol.crypto'], env);
    const cases: Array<[string[], RegExp]> = [
      [['users', 'add', '--sub', 'carol.crypto'], /^error: A user carol\.crypto from .* already exists$/],
      [['users', 'grant', 'carol.crypto', '--role', 'wizard'], /^error: Unknown role wizard; known roles: admin, member$/],
      [['users', 'show', 'nobody.crypto'], /^error: No user nobody\.crypto$/],
      [['users', 'frobnicate'], /^error: unknown command 'frobnicate'/],
      [['users', 'list', '--colour'], /^error: unknown option '--colour'/],
      [['users', 'grant', 'carol.crypto'], /nothing to grant/],
    ];
    for (const [args, pattern] of cases) {
      const res = await cli(args, env);
      expect(res.code, args.join(' ')).not.toBe(0);
      expect(res.stderr.split('\n')[0], args.join(' ')).toMatch(pattern);
      expect(res.stderr, args.join(' ')).not.toMatch(/\n\s+at /); // no stack trace
    }
  });
});

describe('portcullis serve', () => {
  it('exits non-zero with one line naming PORT when PORT=abc', async () => {
    const res = await runCli(['serve'], { PORT: 'abc' });
    expect(res.code).not.toBe(0);
    expect(res.stderr.trim().split('\n')).toHaveLength(1);
    expect(res.stderr).toMatch(/PORT="abc" is invalid/);
  });

  it('exits non-zero naming the database when DATABASE_URL is malformed', async () => {
    const res = await cli(['migrate'], { DATABASE_URL: 'postgres//nope' });
    expect(res.code).not.toBe(0);
    expect(res.stderr.trim()).toMatch(/^error: configuration: DATABASE_URL=\(value hidden\) is invalid/);
  });
});

describeEachDatabase('portcullis serve (process)', (db) => {
  it('serves /healthz and /readyz, and stops cleanly on SIGTERM', async () => {
    const port = await freePort();
    const child = spawnCli(['serve'], db.env({ PORT: String(port), LOG_LEVEL: 'info' }));
    let out = '';
    child.stdout!.on('data', (d) => (out += d));
    try {
      await waitForStatus(`http://127.0.0.1:${port}/healthz`, 200);
      await waitForStatus(`http://127.0.0.1:${port}/readyz`, 200);
    } finally {
      child.kill('SIGTERM');
    }
    const [code] = await once(child, 'exit');
    expect(code).toBe(0);
    const lines = out.trim().split('\n').map((l) => JSON.parse(l));
    expect(lines.some((l) => l.msg === 'stopped')).toBe(true);
  });
});
