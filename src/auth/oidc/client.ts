/**
 * The gateway as an OpenID Connect relying party (uAuth by default, any issuer by
 * configuration), on openid-client v6: discovery, authorization URL with PKCE S256,
 * authorization code grant with client_secret_basic | client_secret_post | none.
 *
 * The ID token is validated here rather than by openid-client: openid-client compares
 * `iss` byte for byte with the discovered issuer, and uAuth's tokens carry a trailing
 * slash its issuer may not. The token response therefore passes through a fetch wrapper
 * that sets `id_token` aside before openid-client parses it; we then verify the
 * signature with jose against the discovered JWKS (allow-listed asymmetric algorithms)
 * and every claim with `checkIdTokenClaims` (OIDC Core §3.1.3.7).
 *
 * Failures are GatewayErrors that never carry a token, code or verifier, nor the
 * provider's raw response (logging an error must be safe).
 */
import * as client from 'openid-client';
import type { JWTVerifyGetKey } from 'jose';
import { createRemoteJWKSet, decodeProtectedHeader, errors as joseErrors, jwtVerify } from 'jose';
import { GatewayError } from '../../errors/index.js';
import type { LoginIdentity } from './validate.js';
import { IdTokenError, checkIdTokenClaims, parseLoginClaims } from './validate.js';

export type TokenAuthMethod = 'client_secret_basic' | 'client_secret_post' | 'none';

export interface OidcClientOptions {
  /** Issuer identifier as configured; also the `issuer` users are recorded under. */
  issuer: string;
  clientId: string;
  clientSecret?: string | undefined;
  tokenAuthMethod: TokenAuthMethod;
  redirectUri: string;
  scope: string;
  /** OIDC max_age in seconds; auth_time is then required and checked. */
  maxAge?: number | undefined;
  /** Plain http to the issuer (loopback issuers and the development provider only). */
  allowHttp: boolean;
  clockToleranceSeconds?: number;
  /** HTTP timeout towards the provider, seconds (default 10). */
  timeoutSeconds?: number;
}

export interface AuthorizationRequest {
  state: string;
  nonce: string;
  codeVerifier: string;
  loginHint?: string | undefined;
}

export interface CodeExchange {
  /** The authorization response parameters (query or form_post body). */
  params: URLSearchParams;
  state: string;
  nonce: string;
  codeVerifier: string;
}

export interface VerifiedLogin {
  /** The configured issuer (what users are keyed by). */
  issuer: string;
  identity: LoginIdentity;
}

interface Discovered {
  config: client.Configuration;
  jwks: JWTVerifyGetKey;
  algorithms: string[];
}

/** Asymmetric algorithms accepted for ID tokens; `none` and HMAC never. */
const ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519'];
const ID_TOKEN_ASIDE = 'x_portcullis_id_token';

function providerError(reason: string, message: string): GatewayError {
  return new GatewayError('bad_gateway', message, { reason });
}

export class OidcClient {
  #discovery: Promise<Discovered> | undefined;

  constructor(readonly options: OidcClientOptions) {}

  get issuer(): string {
    return this.options.issuer;
  }

  /** Discovers the provider once; a failed discovery is forgotten so the next call retries. */
  discover(): Promise<Discovered> {
    this.#discovery ??= this.#discover().catch((err: unknown) => {
      this.#discovery = undefined;
      throw err;
    });
    return this.#discovery;
  }

  /** The provider's authorization endpoint URL for one login (PKCE S256, state, nonce). */
  async authorizationUrl(request: AuthorizationRequest): Promise<URL> {
    const { config } = await this.discover();
    const params: Record<string, string> = {
      response_type: 'code',
      redirect_uri: this.options.redirectUri,
      scope: this.options.scope,
      state: request.state,
      nonce: request.nonce,
      code_challenge: await client.calculatePKCECodeChallenge(request.codeVerifier),
      code_challenge_method: 'S256',
    };
    if (request.loginHint) params.login_hint = request.loginHint;
    if (this.options.maxAge !== undefined) params.max_age = String(this.options.maxAge);
    return client.buildAuthorizationUrl(config, params);
  }

  /** Exchanges the code and returns the verified identity, or throws a GatewayError (400/502). */
  async exchange(exchange: CodeExchange): Promise<VerifiedLogin> {
    const discovered = await this.discover();
    const callbackUrl = new URL(this.options.redirectUri);
    callbackUrl.search = '';
    for (const [key, value] of exchange.params) callbackUrl.searchParams.append(key, value);
    let tokens: Record<string, unknown>;
    try {
      tokens = (await client.authorizationCodeGrant(discovered.config, callbackUrl, {
        pkceCodeVerifier: exchange.codeVerifier,
        expectedState: exchange.state,
      })) as unknown as Record<string, unknown>;
    } catch (err) {
      throw this.#grantError(err);
    }
    const idToken = tokens[ID_TOKEN_ASIDE];
    if (typeof idToken !== 'string' || idToken.length === 0) {
      throw providerError('id_token_missing', 'The identity provider returned no ID token (is "openid" in UAUTH_SCOPE?)');
    }
    const accessToken = typeof tokens.access_token === 'string' ? tokens.access_token : undefined;
    return { issuer: this.options.issuer, identity: await this.verifyIdToken(idToken, { nonce: exchange.nonce, accessToken }) };
  }

  /** Verifies an ID token's signature and claims; throws GatewayError `id_token_invalid` (400). */
  async verifyIdToken(idToken: string, expected: { nonce: string; accessToken?: string | undefined }): Promise<LoginIdentity> {
    const { jwks, algorithms } = await this.discover();
    const tolerance = this.options.clockToleranceSeconds ?? 60;
    try {
      const { payload, protectedHeader } = await jwtVerify(idToken, jwks, { algorithms, clockTolerance: tolerance });
      checkIdTokenClaims(payload as Record<string, unknown>, {
        issuer: this.options.issuer,
        clientId: this.options.clientId,
        nonce: expected.nonce,
        now: Math.floor(Date.now() / 1000),
        clockToleranceSeconds: tolerance,
        maxAgeSeconds: this.options.maxAge,
        accessToken: expected.accessToken,
        alg: protectedHeader.alg,
      });
      return parseLoginClaims(payload as Record<string, unknown>);
    } catch (err) {
      if (err instanceof IdTokenError) {
        throw new GatewayError('invalid_request', `ID token rejected: ${err.message}`, { reason: 'id_token_invalid' });
      }
      throw new GatewayError('invalid_request', `ID token rejected: ${describeJoseError(err, idToken)}`, { reason: 'id_token_invalid' });
    }
  }

  async #discover(): Promise<Discovered> {
    const o = this.options;
    const auth =
      o.tokenAuthMethod === 'none' ? client.None()
      : o.tokenAuthMethod === 'client_secret_post' ? client.ClientSecretPost(o.clientSecret)
      : client.ClientSecretBasic(o.clientSecret);
    let config: client.Configuration;
    try {
      config = await client.discovery(new URL(o.issuer), o.clientId, { redirect_uris: [o.redirectUri] }, auth, {
        execute: o.allowHttp ? [client.allowInsecureRequests] : [],
        timeout: o.timeoutSeconds ?? 10,
      });
    } catch (err) {
      const why = (err as { code?: string }).code ?? (err as Error).name;
      throw providerError('provider_unreachable', `Cannot discover the identity provider at ${o.issuer} (${why})`);
    }
    const metadata = config.serverMetadata();
    if (!metadata.jwks_uri || !metadata.token_endpoint) {
      throw providerError('provider_metadata_invalid', 'The identity provider metadata lacks jwks_uri or token_endpoint');
    }
    const tokenEndpoint = new URL(metadata.token_endpoint).href;
    config[client.customFetch] = setIdTokenAside(tokenEndpoint);
    const offered = metadata.id_token_signing_alg_values_supported ?? ['RS256'];
    const algorithms = ALGORITHMS.filter((alg) => offered.includes(alg));
    if (algorithms.length === 0) throw providerError('provider_metadata_invalid', 'The identity provider signs ID tokens with no algorithm we accept');
    const jwks = createRemoteJWKSet(new URL(metadata.jwks_uri), { timeoutDuration: (o.timeoutSeconds ?? 10) * 1000 });
    return { config, jwks, algorithms };
  }

  #grantError(err: unknown): GatewayError {
    if (err instanceof GatewayError) return err;
    if (err instanceof client.ResponseBodyError) {
      const code = /^[\w.-]{1,64}$/.test(err.error) ? err.error : 'error';
      if (code === 'invalid_grant') {
        return new GatewayError('invalid_request', 'The identity provider refused the authorization code (invalid_grant): it was used already, expired, or does not match this login', {
          reason: 'invalid_grant',
        });
      }
      return providerError('token_request_refused', `The identity provider refused the token request (${code}); check UAUTH_CLIENT_ID, the secret and UAUTH_TOKEN_AUTH_METHOD`);
    }
    if (err instanceof client.AuthorizationResponseError) {
      return new GatewayError('invalid_request', 'The identity provider reported an error in the authorization response', { reason: 'provider_error' });
    }
    const code = (err as { code?: string }).code;
    const name = (err as Error)?.name;
    if (name === 'TypeError' || name === 'AbortError' || name === 'TimeoutError' || code === 'ECONNREFUSED') {
      this.#discovery = undefined; // the provider may have moved or restarted: rediscover next time
      return providerError('provider_unreachable', 'The identity provider could not be reached');
    }
    if (code === 'OAUTH_INVALID_REQUEST' || code === 'OAUTH_JSON_ATTRIBUTE_COMPARISON_FAILED') {
      return new GatewayError('invalid_request', 'The authorization response is invalid (missing code or mismatching parameters)', { reason: 'invalid_callback' });
    }
    return providerError('provider_response_invalid', `The identity provider sent an invalid token response${code ? ` (${code})` : ''}`);
  }
}

/** Reads the signature failure class without echoing the token. */
function describeJoseError(err: unknown, idToken: string): string {
  if (err instanceof joseErrors.JWTExpired) return 'it has expired';
  if (err instanceof joseErrors.JWSSignatureVerificationFailed) return 'its signature does not verify';
  if (err instanceof joseErrors.JWKSNoMatchingKey) return 'no key of the provider matches its key id';
  if (err instanceof joseErrors.JOSEAlgNotAllowed) {
    let alg = 'unknown';
    try {
      alg = String(decodeProtectedHeader(idToken).alg);
    } catch {
      /* unreadable header */
    }
    return `its algorithm ${alg.replace(/[^\w-]/g, '').slice(0, 16)} is not accepted`;
  }
  if (err instanceof joseErrors.JWTClaimValidationFailed) return `claim ${err.claim} is invalid (${err.reason})`;
  if (err instanceof joseErrors.JOSEError) return `it is malformed (${err.code})`;
  return 'the provider keys could not be fetched';
}

/**
 * A fetch for openid-client that moves `id_token` out of the way in token endpoint
 * responses (see the module comment). Every other response passes through untouched.
 */
function setIdTokenAside(tokenEndpoint: string): client.CustomFetch {
  return async (url, options) => {
    const response = await fetch(url, options as RequestInit);
    if (new URL(url).href !== tokenEndpoint || !response.ok) return response;
    const text = await response.text();
    const headers = new Headers({ 'content-type': response.headers.get('content-type') ?? 'application/json' });
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      return new Response(text, { status: response.status, headers });
    }
    if (body && typeof body === 'object' && !Array.isArray(body) && 'id_token' in body) {
      const { id_token: idToken, ...rest } = body as Record<string, unknown>;
      return new Response(JSON.stringify({ ...rest, [ID_TOKEN_ASIDE]: idToken }), { status: response.status, headers });
    }
    return new Response(text, { status: response.status, headers });
  };
}
