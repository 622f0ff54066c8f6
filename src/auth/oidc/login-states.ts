/**
 * Pending sign-ins, kept server-side in the database so any instance sharing it can
 * finish a login another instance started.
 *
 * Guarantees: a state is consumed at most once, even by two callbacks racing on two
 * instances (the consuming UPDATE is conditional on `used_at is null`); states expire
 * ten minutes after creation; only a SHA-256 of the state and of the browser binding
 * value is stored.
 */
import { randomBytes } from 'node:crypto';
import type { Db } from '../../db/index.js';
import { GatewayError } from '../../errors/index.js';
import { hashToken, safeEqual } from '../../security/tokens.js';

export const LOGIN_STATE_TTL_MS = 10 * 60 * 1000;

export interface NewLoginState {
  issuer: string;
  nonce: string;
  codeVerifier: string;
  returnTo: string;
}

export interface StartedLogin {
  /** The `state` parameter to send to the provider. */
  state: string;
  /** The random value for the browser's login cookie. */
  browserValue: string;
  expiresAt: number;
}

export interface ConsumedLogin {
  issuer: string;
  nonce: string;
  codeVerifier: string;
  returnTo: string;
}

function fail(reason: string, message: string): GatewayError {
  return new GatewayError('invalid_request', message, { reason });
}

export class LoginStateStore {
  constructor(
    private readonly db: Db,
    private readonly now: () => number = Date.now,
  ) {}

  /** Records a new pending login and returns its state and browser binding value. */
  async create(input: NewLoginState): Promise<StartedLogin> {
    const state = randomBytes(32).toString('base64url');
    const browserValue = randomBytes(32).toString('base64url');
    const now = this.now();
    const expiresAt = now + LOGIN_STATE_TTL_MS;
    await this.db
      .insertInto('login_states')
      .values({
        state_hash: hashToken(state),
        nonce: input.nonce,
        code_verifier: input.codeVerifier,
        browser_hash: hashToken(browserValue),
        issuer: input.issuer,
        return_to: input.returnTo,
        created_at: now,
        expires_at: expiresAt,
        used_at: null,
      })
      .execute();
    // Housekeeping: forget logins that expired more than an hour ago.
    await this.db.deleteFrom('login_states').where('expires_at', '<', now - 3_600_000).execute();
    return { state, browserValue, expiresAt };
  }

  /**
   * Marks the login as used and returns what it stored. Fails with 400 and reason
   * `state_unknown`, `state_replayed`, `state_expired`, `login_not_bound` (the cookie of
   * the browser that started it is missing or different) or `pkce_verifier_missing`.
   */
  async consume(state: string, browserValue: string | undefined): Promise<ConsumedLogin> {
    const stateHash = hashToken(state);
    const row = await this.db.selectFrom('login_states').selectAll().where('state_hash', '=', stateHash).executeTakeFirst();
    if (!row) throw fail('state_unknown', 'Unknown login state: start again from the sign-in page');
    if (row.used_at !== null) throw fail('state_replayed', 'This login was already completed: start again from the sign-in page');
    const now = this.now();
    if (Number(row.expires_at) <= now) throw fail('state_expired', 'This login took too long and expired: start again from the sign-in page');
    const used = await this.db
      .updateTable('login_states')
      .set({ used_at: now })
      .where('state_hash', '=', stateHash)
      .where('used_at', 'is', null)
      .executeTakeFirst();
    if (Number(used.numUpdatedRows) !== 1) throw fail('state_replayed', 'This login was already completed: start again from the sign-in page');
    if (!browserValue || !safeEqual(hashToken(browserValue), row.browser_hash)) {
      throw fail('login_not_bound', 'This login was started in another browser (its login cookie is missing): start again from the sign-in page');
    }
    if (!row.code_verifier) throw fail('pkce_verifier_missing', 'This login has no PKCE verifier: start again from the sign-in page');
    return { issuer: row.issuer, nonce: row.nonce, codeVerifier: row.code_verifier, returnTo: row.return_to };
  }
}
