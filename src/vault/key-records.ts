/**
 * Upstream key records in the database: validation, sealing and the admin operations. No
 * decrypted secret ever leaves this file except through `openKeySecret`, and nothing here
 * logs or returns one; views carry only the last four characters.
 */
import { createHash, randomUUID } from 'node:crypto';
import { z } from 'zod';
import type { Db } from '../db/index.js';
import { isUniqueViolation } from '../db/errors.js';
import type { UpstreamKeyRow, UpstreamKeyState } from '../db/types.js';
import { GatewayError } from '../errors/index.js';
import type { MasterKeyRing } from '../security/envelope.js';
import { open, seal } from '../security/envelope.js';

export const KEY_NAME = /^[a-z0-9_-]{1,64}$/;
const MODEL_GLOB = /^[A-Za-z0-9._:@/*-]{1,128}$/;
/** Printable ASCII without whitespace; Anthropic keys (`sk-ant-…`) are about 108 characters. */
const SECRET = /^[\x21-\x7e]{16,512}$/;

export const newKeySchema = z.object({
  name: z.string().regex(KEY_NAME, 'expected 1 to 64 of a-z, 0-9, _ and -'),
  secret: z.string(),
  weight: z.number().int().min(0).max(1000).optional(),
  models: z.array(z.string().regex(MODEL_GLOB, 'expected a model name or glob such as claude-sonnet-*')).max(100).optional(),
});
export type NewKey = z.infer<typeof newKeySchema>;

/** A key as admins see it: never the secret. */
export interface KeyRecord {
  id: string;
  name: string;
  /** `…abcd`: the last four characters of the secret. */
  last4: string;
  state: UpstreamKeyState;
  weight: number;
  /** Model globs; empty means every model. */
  models: string[];
  createdAt: number;
  rotatedAt: number | null;
  disabledAt: number | null;
  /** Set while the secret replaced by the last rotation is still honoured (until this time). */
  previousRetiresAt: number | null;
  previousLast4: string | null;
}

/** The sealing context of a key's secret (and of its previous secret). */
export function keyContext(id: string): string {
  return `upstream_key:${id}`;
}

/** Hex SHA-256 of a secret: compares secrets without decrypting the stored ones. */
export function fingerprint(secret: string): string {
  return createHash('sha256').update(secret, 'utf8').digest('hex');
}

/** Checks a secret's shape; the message never contains the secret. */
export function validateSecret(secret: string): void {
  if (secret.length === 0) throw new GatewayError('invalid_request', 'secret: the API key is empty', { reason: 'invalid_secret' });
  if (/\s/.test(secret)) throw new GatewayError('invalid_request', 'secret: the API key contains whitespace', { reason: 'invalid_secret' });
  if (!SECRET.test(secret)) {
    throw new GatewayError('invalid_request', `secret: does not look like an API key (expected 16 to 512 printable characters, got ${secret.length})`, {
      reason: 'invalid_secret',
    });
  }
}

function tail(secret: string): string {
  return secret.slice(-4);
}

export function toKeyRecord(row: UpstreamKeyRow): KeyRecord {
  return {
    id: row.id,
    name: row.name,
    last4: `…${row.last4}`,
    state: row.state,
    weight: Number(row.weight),
    models: JSON.parse(row.models) as string[],
    createdAt: Number(row.created_at),
    rotatedAt: row.rotated_at === null ? null : Number(row.rotated_at),
    disabledAt: row.disabled_at === null ? null : Number(row.disabled_at),
    previousRetiresAt: row.previous_sealed === null || row.previous_retire_after === null ? null : Number(row.previous_retire_after),
    previousLast4: row.previous_sealed === null || row.previous_last4 === null ? null : `…${row.previous_last4}`,
  };
}

/** Decrypts a stored secret into a Buffer the caller must zero when done. */
export function openKeySecret(ring: MasterKeyRing, row: Pick<UpstreamKeyRow, 'id' | 'secret_sealed'>): Buffer {
  return open(ring, row.secret_sealed, keyContext(row.id));
}

function notFound(name: string): GatewayError {
  return new GatewayError('not_found', `No upstream key named ${name}`, { reason: 'key_not_found' });
}

function duplicate(err: unknown, name: string): GatewayError {
  return new GatewayError('conflict', `An upstream key named ${name} or with the same secret already exists`, { reason: 'key_exists', cause: err });
}

/** Database side of the vault's admin operations. Each call is one statement or one transaction. */
export class KeyRecords {
  constructor(
    private readonly db: Db,
    private readonly ring: MasterKeyRing,
  ) {}

  async add(input: NewKey): Promise<KeyRecord> {
    const parsed = newKeySchema.safeParse(input);
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      throw new GatewayError('invalid_request', `${issue.path.join('.') || 'key'}: ${issue.message}`, { reason: 'invalid_key' });
    }
    const { name, secret, weight = 1, models = [] } = parsed.data;
    validateSecret(secret);
    const id = `key_${randomUUID().replaceAll('-', '')}`;
    const now = Date.now();
    try {
      await this.db
        .insertInto('upstream_keys')
        .values({
          id,
          name,
          secret_sealed: seal(this.ring, secret, keyContext(id)),
          fingerprint: fingerprint(secret),
          last4: tail(secret),
          weight,
          models: JSON.stringify(models),
          state: 'enabled',
          previous_sealed: null,
          previous_last4: null,
          previous_retire_after: null,
          created_at: now,
          updated_at: now,
          rotated_at: null,
          disabled_at: null,
        })
        .execute();
    } catch (err) {
      if (isUniqueViolation(err)) throw duplicate(err, name);
      throw err;
    }
    return this.get(name);
  }

  async get(name: string): Promise<KeyRecord> {
    return toKeyRecord(await this.row(name));
  }

  async row(name: string): Promise<UpstreamKeyRow> {
    const row = await this.db.selectFrom('upstream_keys').selectAll().where('name', '=', name).executeTakeFirst();
    if (!row) throw notFound(name);
    return row;
  }

  async list(): Promise<KeyRecord[]> {
    const rows = await this.db.selectFrom('upstream_keys').selectAll().orderBy('name').execute();
    return rows.map(toKeyRecord);
  }

  /** Rows of enabled keys, sealed; the vault opens them. */
  async enabledRows(): Promise<UpstreamKeyRow[]> {
    return this.db.selectFrom('upstream_keys').selectAll().where('state', '=', 'enabled').orderBy('name').execute();
  }

  /** Whether any key (in any state) has this secret. */
  async hasSecret(secret: string): Promise<boolean> {
    const row = await this.db.selectFrom('upstream_keys').select('id').where('fingerprint', '=', fingerprint(secret)).executeTakeFirst();
    return row !== undefined;
  }

  /**
   * Replaces a key's secret. The old sealed secret moves to `previous_sealed` and stays
   * until `now + graceMs` (any earlier previous secret is dropped), so operators know
   * how long the old key must stay valid upstream.
   */
  async rotate(name: string, newSecret: string, graceMs: number): Promise<KeyRecord> {
    validateSecret(newSecret);
    const now = Date.now();
    try {
      await this.db.transaction().execute(async (trx) => {
        const row = await trx.selectFrom('upstream_keys').selectAll().where('name', '=', name).executeTakeFirst();
        if (!row) throw notFound(name);
        if (row.fingerprint === fingerprint(newSecret)) {
          throw new GatewayError('invalid_request', `The new secret of ${name} is the one it already has`, { reason: 'same_secret' });
        }
        const result = await trx
          .updateTable('upstream_keys')
          .set({
            secret_sealed: seal(this.ring, newSecret, keyContext(row.id)),
            fingerprint: fingerprint(newSecret),
            last4: tail(newSecret),
            previous_sealed: row.secret_sealed,
            previous_last4: row.last4,
            previous_retire_after: now + graceMs,
            rotated_at: now,
            updated_at: now,
          })
          .where('id', '=', row.id)
          .where('secret_sealed', '=', row.secret_sealed)
          .executeTakeFirst();
        if (Number(result.numUpdatedRows) !== 1) {
          throw new GatewayError('conflict', `The key ${name} changed during rotation; try again`, { reason: 'concurrent_change' });
        }
      });
    } catch (err) {
      if (isUniqueViolation(err)) throw duplicate(err, name);
      throw err;
    }
    return this.get(name);
  }

  async setState(name: string, state: 'enabled' | 'disabled'): Promise<KeyRecord> {
    const now = Date.now();
    const result = await this.db
      .updateTable('upstream_keys')
      .set({ state, disabled_at: state === 'disabled' ? now : null, updated_at: now })
      .where('name', '=', name)
      .executeTakeFirst();
    if (Number(result.numUpdatedRows) !== 1) throw notFound(name);
    return this.get(name);
  }

  async remove(name: string): Promise<KeyRecord> {
    const record = await this.get(name);
    await this.db.deleteFrom('upstream_keys').where('id', '=', record.id).execute();
    return record;
  }

  /** Drops previous secrets whose grace period has ended; returns how many. */
  async dropRetiredPrevious(now = Date.now()): Promise<number> {
    const result = await this.db
      .updateTable('upstream_keys')
      .set({ previous_sealed: null, previous_last4: null, previous_retire_after: null })
      .where('previous_retire_after', '<=', now)
      .executeTakeFirst();
    return Number(result.numUpdatedRows);
  }
}
