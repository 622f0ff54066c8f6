import { randomBytes } from 'node:crypto';
import { beforeAll, expect, it } from 'vitest';
import type { Db } from '../../src/db/index.js';
import { loadMasterKeyRing } from '../../src/security/master-key.js';
import { sealedKeyId } from '../../src/security/envelope.js';
import { rotateMasterKey } from '../../src/vault/master-key-rotation.js';
import { KeyVault } from '../../src/vault/vault.js';
import { cli } from '../helpers/cli.js';
import { describeEachDatabase } from '../helpers/env.js';
import { newSecret } from './fixtures.js';


describeEachDatabase('master key rotation', (ctx) => {
  let db: Db;
  beforeAll(async () => {
    db = (await ctx.engine()).database.db;
  });

  /** Every key's secret as a fresh vault with this ring sees it (by name). */
  async function secretsWith(env: Record<string, string>): Promise<Map<string, string>> {
    const errors: string[] = [];
    const vault = new KeyVault({ db, ring: loadMasterKeyRing(ctx.config(env)).ring, reloadIntervalMs: 0, onError: (e) => errors.push(e.message) });
    await vault.start();
    const out = new Map<string, string>();
    const exclude = new Set<string>();
    for (let i = 0; i < 100; i++) {
      const lease = vault.pick('m', exclude, () => true);
      if (!lease) break;
      out.set(lease.name, lease.secret);
      exclude.add(lease.keyId);
      lease.release();
    }
    await vault.close();
    if (errors.length) out.set('!errors', errors.join('; '));
    return out;
  }

  it('keeps every key usable with the old key in PREVIOUS, and without it after rotation', async () => {
    const oldKey = randomBytes(32).toString('base64');
    const newKey = randomBytes(32).toString('base64');
    const before = { PORTCULLIS_MASTER_KEY: oldKey };
    const during = { PORTCULLIS_MASTER_KEY: newKey, PORTCULLIS_MASTER_KEY_PREVIOUS: oldKey };
    const after = { PORTCULLIS_MASTER_KEY: newKey };

    const vault = new KeyVault({ db, ring: loadMasterKeyRing(ctx.config(before)).ring, reloadIntervalMs: 0 });
    const secrets = new Map<string, string>();
    for (const name of ['one', 'two', 'three']) {
      const secret = newSecret();
      secrets.set(name, secret);
      await vault.add({ name, secret });
    }
    await vault.rotate('three', newSecret()); // a previous_sealed value too
    secrets.set('three', (await secretsWith(before)).get('three')!);

    expect(await secretsWith(during)).toEqual(secrets);
    expect((await secretsWith(after)).get('!errors')).toMatch(/cannot be opened/);

    const ring = loadMasterKeyRing(ctx.config(during)).ring;
    const result = await rotateMasterKey(db, ring);
    expect(result).toMatchObject({ masterKeyId: ring.current.id, rewrapped: 4, failed: 0 });
    expect(result.columns.map((c) => [c.column, c.rewrapped])).toEqual([['secret_sealed', 3], ['previous_sealed', 1], ['private_sealed', 0]]);
    const rows = await db.selectFrom('upstream_keys').select(['secret_sealed', 'previous_sealed']).execute();
    for (const r of rows) {
      expect(sealedKeyId(r.secret_sealed)).toBe(ring.current.id);
      if (r.previous_sealed) expect(sealedKeyId(r.previous_sealed)).toBe(ring.current.id);
    }
    expect(await secretsWith(after)).toEqual(secrets);

    // Safe to re-run: nothing left to do.
    const again = await rotateMasterKey(db, ring);
    expect(again).toMatchObject({ rewrapped: 0, failed: 0 });
    expect(again.columns[0]).toMatchObject({ scanned: 3, current: 3 });

    // And via the CLI: nothing to re-wrap, exit 0.
    const res = await cli(['master-key', 'rotate', '--json'], ctx.env(after));
    expect(res.stderr).toBe('');
    expect(JSON.parse(res.stdout)).toMatchObject({ rewrapped: 0, failed: 0 });
    await vault.close();
  });

  it('reports values it cannot open by id, and the CLI exits non-zero', async () => {
    const stray = randomBytes(32).toString('base64');
    const vault = new KeyVault({ db, ring: loadMasterKeyRing(ctx.config({ PORTCULLIS_MASTER_KEY: stray })).ring, reloadIntervalMs: 0 });
    const key = await vault.add({ name: 'stray', secret: newSecret() });
    const env = ctx.env({ PORTCULLIS_MASTER_KEY: randomBytes(32).toString('base64') });
    const result = await rotateMasterKey(db, loadMasterKeyRing(ctx.config({ PORTCULLIS_MASTER_KEY: env.PORTCULLIS_MASTER_KEY! })).ring);
    expect(result.columns[0]!.failed).toContain(key.id);
    const res = await cli(['master-key', 'rotate'], env);
    expect(res.code).toBe(1);
    expect(res.stdout).toMatch(/could not be opened/);
    expect(res.stderr).toMatch(/^error: \d+ sealed values could not be re-wrapped/);
    await vault.remove('stray');
  });
});
