/**
 * JWT signing keys: Ed25519 (JWS alg `EdDSA`), named by `kid`, private half sealed with the
 * envelope (context `signing_key:<kid>`), public half published at /.well-known/jwks.json.
 *
 * Guarantees:
 * - A key signs from its creation until `expires_at` (created_at + SIGNING_KEY_ROTATE_INTERVAL)
 *   or until `rotate()` replaces it; it is then kept for verification (and in the JWKS) for
 *   `retainMs` more, the longest lifetime of a token it may have signed.
 * - Several instances may start or rotate at once on one database: each may create a key,
 *   every stored key that has not expired verifies, so no token fails because another
 *   instance signed it. An unknown kid is looked up in the database (a miss is remembered
 *   for a few seconds so random kids cannot hammer it).
 * - `retire(kid)` withdraws a key at once (compromise): tokens it signed stop verifying on
 *   this instance immediately and on others within VERIFY_CACHE_MS.
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import type { JWK } from 'jose';
import { importJWK } from 'jose';
import type { Db } from '../db/index.js';
import type { SigningKeyRow } from '../db/types.js';
import type { MasterKeyRing } from '../security/envelope.js';
import { open, seal } from '../security/envelope.js';

/** The only algorithm we sign with and the only one verification accepts. */
export const SIGNING_ALG = 'EdDSA';
/** How long a verification key (or the fact that a kid is unknown) is remembered. */
export const VERIFY_CACHE_MS = 10_000;
const MAX_CACHED_KIDS = 256;

export interface SigningKeyOptions {
  db: Db;
  keyRing: MasterKeyRing;
  /** How long a key signs (SIGNING_KEY_ROTATE_INTERVAL). */
  rotateIntervalMs: number;
  /**
   * How long a key verifies after it stopped signing: at least the longest token lifetime
   * plus VERIFY_CACHE_MS (another instance may sign with it that long after a rotation).
   */
  retainMs: number;
  now?: () => number;
}

export interface ActiveSigningKey {
  kid: string;
  alg: typeof SIGNING_ALG;
  privateKey: CryptoKey;
  /** When this key stops signing (ms). */
  expiresAt: number;
}

export interface PublicSigningKey {
  kid: string;
  alg: string;
  createdAt: number;
  expiresAt: number;
  /** Until when tokens signed by it verify (ms). */
  verifiesUntil: number;
}

interface CachedVerifier {
  key: CryptoKey | null;
  verifiesUntil: number;
  fetchedAt: number;
}

export class SigningKeyStore {
  private readonly now: () => number;
  private active: (ActiveSigningKey & { checkedAt: number }) | undefined;
  private loading: Promise<ActiveSigningKey> | undefined;
  private readonly verifiers = new Map<string, CachedVerifier>();

  private readonly retireListeners = new Set<(kid: string) => void>();

  constructor(private readonly options: SigningKeyOptions) {
    this.now = options.now ?? Date.now;
  }

  /**
   * The key to sign with now, creating one when none is due. Cached in memory and re-read
   * every VERIFY_CACHE_MS, so a rotation by another instance is followed within that time.
   */
  async current(): Promise<ActiveSigningKey> {
    const now = this.now();
    if (this.active && this.active.expiresAt > now && now - this.active.checkedAt < VERIFY_CACHE_MS) return this.active;
    this.loading ??= this.loadOrCreate().finally(() => {
      this.loading = undefined;
    });
    return this.loading;
  }

  /** Makes a new key the signing key now; the previous ones stop signing but keep verifying. */
  async rotate(): Promise<ActiveSigningKey> {
    const now = this.now();
    const created = await this.create(now);
    await this.options.db.updateTable('signing_keys').set({ expires_at: now }).where('kid', '!=', created.kid).where('expires_at', '>', now).execute();
    this.active = { ...created, checkedAt: now };
    this.verifiers.clear();
    return created;
  }

  /** Withdraws a key at once: tokens it signed no longer verify. */
  async retire(kid: string): Promise<void> {
    const now = this.now();
    await this.options.db.updateTable('signing_keys').set({ retired_at: now, expires_at: now }).where('kid', '=', kid).execute();
    this.verifiers.delete(kid);
    if (this.active?.kid === kid) this.active = undefined;
    for (const listener of this.retireListeners) listener(kid);
  }

  /** Calls `listener` with the kid after `retire()` on this instance (authenticate drops the tokens it trusted); returns the unsubscribe. */
  onRetire(listener: (kid: string) => void): () => void {
    this.retireListeners.add(listener);
    return () => this.retireListeners.delete(listener);
  }

  /**
   * The public key for `kid` if it may still verify, else null. Reads the database on a
   * cache miss; results (including misses) are cached for VERIFY_CACHE_MS.
   */
  async verificationKey(kid: string): Promise<CryptoKey | null> {
    const now = this.now();
    const cached = this.verifiers.get(kid);
    if (cached && now - cached.fetchedAt < VERIFY_CACHE_MS) return cached.key && cached.verifiesUntil > now ? cached.key : null;
    const row = await this.options.db.selectFrom('signing_keys').selectAll().where('kid', '=', kid).executeTakeFirst();
    const usable = row && row.retired_at === null && this.verifiesUntil(row) > now;
    const entry: CachedVerifier = {
      key: usable ? ((await importJWK(JSON.parse(row.public_jwk) as JWK, SIGNING_ALG)) as CryptoKey) : null,
      verifiesUntil: row ? this.verifiesUntil(row) : 0,
      fetchedAt: now,
    };
    if (this.verifiers.size >= MAX_CACHED_KIDS) this.verifiers.delete(this.verifiers.keys().next().value!);
    this.verifiers.set(kid, entry);
    return entry.key;
  }

  /** The JWKS document: every key that still verifies, newest first. */
  async jwks(): Promise<{ keys: JWK[] }> {
    const rows = await this.validRows();
    return { keys: rows.map((r) => ({ ...(JSON.parse(r.public_jwk) as JWK), kid: r.kid, alg: r.alg, use: 'sig' })) };
  }

  /** Metadata of the keys that still verify (no key material), newest first. */
  async list(): Promise<PublicSigningKey[]> {
    return (await this.validRows()).map((r) => ({
      kid: r.kid,
      alg: r.alg,
      createdAt: Number(r.created_at),
      expiresAt: Number(r.expires_at),
      verifiesUntil: this.verifiesUntil(r),
    }));
  }

  private verifiesUntil(row: Pick<SigningKeyRow, 'expires_at'>): number {
    return Number(row.expires_at) + this.options.retainMs;
  }

  private async validRows(): Promise<SigningKeyRow[]> {
    const rows = await this.options.db
      .selectFrom('signing_keys')
      .selectAll()
      .where('retired_at', 'is', null)
      .where('expires_at', '>', this.now() - this.options.retainMs)
      .orderBy('created_at', 'desc')
      .orderBy('kid')
      .execute();
    return rows;
  }

  private async loadOrCreate(): Promise<ActiveSigningKey> {
    const now = this.now();
    // Newest signing key wins, so instances that raced to create one converge on the same key.
    const row = await this.options.db
      .selectFrom('signing_keys')
      .selectAll()
      .where('retired_at', 'is', null)
      .where('expires_at', '>', now)
      .orderBy('created_at', 'desc')
      .orderBy('kid')
      .executeTakeFirst();
    const key = !row ? await this.create(now) : this.active?.kid === row.kid ? { ...this.active, expiresAt: Number(row.expires_at) } : await this.activate(row);
    this.active = { ...key, checkedAt: now };
    return this.active;
  }

  private async activate(row: SigningKeyRow): Promise<ActiveSigningKey> {
    const jwk = JSON.parse(open(this.options.keyRing, row.private_sealed, `signing_key:${row.kid}`).toString('utf8')) as JWK;
    const privateKey = (await importJWK(jwk, SIGNING_ALG)) as CryptoKey;
    return { kid: row.kid, alg: SIGNING_ALG, privateKey, expiresAt: Number(row.expires_at) };
  }

  private async create(now: number): Promise<ActiveSigningKey> {
    const kid = `sk_${now.toString(36)}_${randomBytes(6).toString('hex')}`;
    const { publicKey, privateKey } = generateKeyPairSync('ed25519');
    const publicJwk = publicKey.export({ format: 'jwk' });
    const privateJwk = JSON.stringify(privateKey.export({ format: 'jwk' }));
    const row: SigningKeyRow = {
      kid,
      alg: SIGNING_ALG,
      public_jwk: JSON.stringify(publicJwk),
      private_sealed: seal(this.options.keyRing, privateJwk, `signing_key:${kid}`),
      created_at: now,
      expires_at: now + this.options.rotateIntervalMs,
      retired_at: null,
    };
    await this.options.db.insertInto('signing_keys').values(row).execute();
    return this.activate(row);
  }
}
