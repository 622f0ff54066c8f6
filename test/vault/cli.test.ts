import { randomBytes } from 'node:crypto';
import { expect, it } from 'vitest';
import { UsageLedger } from '../../src/vault/usage.js';
import { cli } from '../helpers/cli.js';
import { describeEachDatabase } from '../helpers/env.js';
import { newSecret, usage } from './fixtures.js';

describeEachDatabase('portcullis keys / usage (CLI)', (ctx) => {
  const masterKey = randomBytes(32).toString('base64');

  it('adds from stdin and --from-env, lists last4 only, rotates, disables, removes', async () => {
    const first = newSecret();
    const second = newSecret();
    const third = newSecret();
    const env = ctx.env({ PORTCULLIS_MASTER_KEY: masterKey, MY_KEY: second });
    const outputs: string[] = [];
    const run = async (args: string[], stdin?: string) => {
      const res = await cli(args, env, { stdin });
      outputs.push(res.stdout, res.stderr);
      return res;
    };

    const add = await run(['keys', 'add', '--name', 'primary', '--weight', '3', '--models', 'claude-sonnet-*,claude-haiku-*'], `${first}\nignored second line\n`);
    expect(add.stderr).toBe('');
    expect(add.stdout).toMatch(new RegExp(`^added primary \\(key_[0-9a-f]+\\) enabled, secret …${first.slice(-4)}, weight 3, models claude-sonnet-\\*,claude-haiku-\\*`));
    const fromEnv = await run(['keys', 'add', '--name', 'backup', '--from-env', 'MY_KEY', '--json']);
    expect(JSON.parse(fromEnv.stdout)).toMatchObject({ name: 'backup', last4: `…${second.slice(-4)}`, models: [], weight: 1 });

    const list = await run(['keys', 'list']);
    expect(list.stdout).toMatch(/^NAME\s+SECRET\s+STATE/);
    expect(list.stdout).toContain(`…${first.slice(-4)}`);
    const json = JSON.parse((await run(['keys', 'list', '--json'])).stdout);
    expect(json.map((k: { name: string }) => k.name)).toEqual(['backup', 'primary']);
    expect(json[1]).toMatchObject({ state: 'enabled', health: 'unknown', usage: { requests: 0 } });

    const rotate = await run(['keys', 'rotate', 'primary'], `${third}\r\n`);
    expect(rotate.stdout).toMatch(new RegExp(`^rotated primary .* secret …${third.slice(-4)}.*keep the previous secret …${first.slice(-4)} valid upstream until \\d{4}-`));
    expect((await run(['keys', 'disable', 'backup'])).stdout.trim()).toBe('backup: disabled');
    expect((await run(['keys', 'enable', 'backup'])).stdout.trim()).toBe('backup: enabled');
    expect((await run(['keys', 'remove', 'backup'])).stdout).toMatch(/^removed backup \(key_/);

    for (const text of outputs) for (const s of [first, second, third]) expect(text).not.toContain(s);
  });

  it('refuses bad input with one line and never echoes the secret', async () => {
    const env = ctx.env({ PORTCULLIS_MASTER_KEY: masterKey, SPACED: 'sk-ant-has a space-0123456789' });
    const cases: Array<[string[], string | undefined, RegExp]> = [
      [['keys', 'add', '--name', 'empty'], '', /^error: secret: the API key is empty$/],
      [['keys', 'add', '--name', 'spaced', '--from-env', 'SPACED'], undefined, /^error: secret: the API key contains whitespace$/],
      [['keys', 'add', '--name', 'unset', '--from-env', 'NOPE'], undefined, /^error: --from-env: the environment variable NOPE is not set$/],
      [['keys', 'add', '--name', 'Bad!'], newSecret(), /^error: name: expected 1 to 64/],
      [['keys', 'add', '--name', 'w', '--weight', '1001'], newSecret(), /^error: option '--weight <n>' argument '1001' is invalid/],
      [['keys', 'rotate', 'missing'], newSecret(), /^error: No upstream key named missing$/],
      [['usage', '--by', 'planet'], undefined, /^error: option '--by <grouping>' argument 'planet' is invalid/],
    ];
    for (const [args, stdin, pattern] of cases) {
      const res = await cli(args, env, { stdin });
      expect(res.code, args.join(' ')).not.toBe(0);
      expect(res.stderr.split('\n')[0], args.join(' ')).toMatch(pattern);
      expect(res.stderr).not.toContain('has a space');
    }
  });

  it('prints usage by user, key, model and day', async () => {
    const env = ctx.env({ PORTCULLIS_MASTER_KEY: masterKey });
    const engine = await ctx.engine({ PORTCULLIS_MASTER_KEY: masterKey });
    const ledger = new UsageLedger(engine.database.db);
    const now = Date.now();
    await ledger.record(usage({ userId: 'usr_x', model: 'claude-haiku-4-5', inputTokens: 40, outputTokens: 2, createdAt: now - 1000 }));
    await ledger.record(usage({ userId: 'usr_x', model: 'claude-haiku-4-5', inputTokens: 2, outputTokens: 2, createdAt: now - 30 * 86_400_000 }));
    const byModel = await cli(['usage', '--by', 'model', '--json'], env);
    expect(byModel.stderr).toBe('');
    expect(JSON.parse(byModel.stdout)).toEqual([expect.objectContaining({ group: 'claude-haiku-4-5', requests: 1, inputTokens: 40 })]);
    const month = JSON.parse((await cli(['usage', '--by', 'day', '--since', '60d', '--json'], env)).stdout);
    expect(month).toHaveLength(2);
    const text = await cli(['usage', '--by', 'user'], env);
    expect(text.stdout).toMatch(/^USER\s+REQUESTS\s+ERRORS\s+INPUT\s+OUTPUT/);
    expect(text.stdout).toContain('usr_x');
    expect((await cli(['usage', '--by', 'key'], env)).stdout).toContain('(none)');
  });
});
