/**
 * Which OpenID Connect client the gateway is: uAuth (or any issuer) when UAUTH_CLIENT_ID
 * is set, the built-in development provider when it runs and no client id is set,
 * otherwise none (sign-in answers 503).
 */
import type { Config } from '../../config/index.js';
import { ConfigError } from '../../config/index.js';
import { DEV_IDP_CLIENT_ID, DEV_IDP_PREFIX, devIdpEnabled } from '../dev-idp.js';
import type { OidcClientOptions, TokenAuthMethod } from './client.js';

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]']);

/** Fails fast (ConfigError, one line) on settings that could never sign anyone in. */
export function validateLoginConfig(config: Config): void {
  devIdpEnabled(config);
  if (!config.uauthScope.split(/\s+/).includes('openid')) {
    throw new ConfigError(`UAUTH_SCOPE=${JSON.stringify(config.uauthScope)} is invalid; it must include openid`);
  }
  if (!config.uauthClientId) return;
  const method = tokenAuthMethod(config);
  if (method !== 'none' && !config.uauthClientSecret) {
    throw new ConfigError(`UAUTH_TOKEN_AUTH_METHOD=${method} needs UAUTH_CLIENT_SECRET`);
  }
  const issuer = new URL(config.uauthIssuer);
  if (issuer.protocol === 'http:' && !LOOPBACK.has(issuer.hostname)) {
    throw new ConfigError(`UAUTH_ISSUER=${JSON.stringify(config.uauthIssuer)} is invalid; plain http is allowed only on 127.0.0.1 or localhost`);
  }
}

function tokenAuthMethod(config: Config): TokenAuthMethod {
  return config.uauthTokenAuthMethod ?? (config.uauthClientSecret ? 'client_secret_basic' : 'none');
}

/** The redirect URI registered at the provider: UAUTH_REDIRECT_URI or PUBLIC_URL/auth/callback. */
export function redirectUri(config: Config, publicBase: string): string {
  return config.uauthRedirectUri ?? `${publicBase}/auth/callback`;
}

/** The client options for the current configuration, or undefined when sign-in is not configured. */
export function oidcClientOptions(config: Config, publicBase: string): OidcClientOptions | undefined {
  const common = { redirectUri: redirectUri(config, publicBase), scope: config.uauthScope, maxAge: config.uauthMaxAge };
  if (config.uauthClientId) {
    return {
      ...common,
      issuer: config.uauthIssuer,
      clientId: config.uauthClientId,
      clientSecret: config.uauthClientSecret,
      tokenAuthMethod: tokenAuthMethod(config),
      allowHttp: new URL(config.uauthIssuer).protocol === 'http:',
    };
  }
  if (devIdpEnabled(config)) {
    return { ...common, issuer: `${publicBase}${DEV_IDP_PREFIX}`, clientId: DEV_IDP_CLIENT_ID, tokenAuthMethod: 'none', allowHttp: true };
  }
  return undefined;
}
