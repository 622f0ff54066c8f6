/**
 * Builds the authentication services (signing keys, sessions, personal tokens and the
 * authenticate function) over one database: the app and the CLI use the same wiring.
 */
import type { Config } from '../config/index.js';
import type { Db } from '../db/index.js';
import type { MasterKeyRing } from '../security/envelope.js';
import type { Authenticate } from './authenticate.js';
import { createAuthenticate } from './authenticate.js';
import { PersonalTokenService } from './personal-tokens.js';
import { MAX_ISSUED_TTL_MS, SessionService } from './sessions.js';
import { SigningKeyStore, VERIFY_CACHE_MS } from './signing-keys.js';
import type { UserService } from './users.js';

export interface AuthServices {
  signingKeys: SigningKeyStore;
  sessions: SessionService;
  personalTokens: PersonalTokenService;
  authenticate: Authenticate;
}

export interface CreateAuthServicesOptions {
  config: Pick<Config, 'publicUrl' | 'accessTokenTtl' | 'refreshTokenTtl' | 'sessionMaxAge' | 'signingKeyRotateInterval'>;
  db: Db;
  users: UserService;
  keyRing: MasterKeyRing;
  log: { warn(obj: object, msg: string): void };
  now?: () => number;
}

export function createAuthServices(options: CreateAuthServicesOptions): AuthServices {
  const { config, db, users, now } = options;
  const signingKeys = new SigningKeyStore({
    db,
    keyRing: options.keyRing,
    rotateIntervalMs: config.signingKeyRotateInterval,
    // Tokens signed just before a rotation (by any instance) must keep verifying to their end.
    retainMs: Math.max(config.accessTokenTtl, MAX_ISSUED_TTL_MS) + 2 * VERIFY_CACHE_MS,
    now,
  });
  const sessions = new SessionService({ db, users, signingKeys, config, log: options.log, now });
  const personalTokens = new PersonalTokenService(db, now);
  const authenticate = createAuthenticate({ config, users, sessions, personalTokens, signingKeys, now });
  return { signingKeys, sessions, personalTokens, authenticate };
}
