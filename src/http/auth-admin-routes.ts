/**
 * Admin views of other users' sessions, personal tokens and rate limits; every route needs
 * the manage_users capability. `:id` of a user is a user id or a subject.
 */
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { GatewayError } from '../errors/index.js';
import { sessionJson, tokenJson, validate } from './auth-routes.js';

export interface AuthAdminOptions {
  createToken(request: FastifyRequest, reply: FastifyReply, userId: string): Promise<unknown>;
}

const idParams = z.object({ id: z.string().min(1).max(200) });
const limitValue = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).nullable().optional();
/** A number sets the user's own limit (0 = unlimited), null clears it back to the tier's. */
const rateLimitsBody = z.strictObject({ rpm: limitValue, rpd: limitValue, tpm: limitValue, concurrent: limitValue });
const tokenParams = z.object({ id: z.string().min(1).max(200), tokenId: z.string().min(1).max(100) });

export const authAdminRoutes: FastifyPluginAsync<AuthAdminOptions> = async (app, { createToken }) => {
  const { sessions, personalTokens, users, limiter } = app.services;
  const admin = { preHandler: app.requireCapability('manage_users') };

  app.get('/admin/users/:id/sessions', admin, async (request) => {
    const user = await users.resolve(validate(idParams, request.params).id);
    return { data: (await sessions.list(user.id)).map((s) => sessionJson(s)) };
  });

  app.delete('/admin/sessions/:id', admin, async (request, reply) => {
    await sessions.revoke(validate(idParams, request.params).id, 'admin_revoked');
    return reply.code(204).send();
  });

  app.get('/admin/users/:id/tokens', admin, async (request) => {
    const user = await users.resolve(validate(idParams, request.params).id);
    return { data: (await personalTokens.list(user.id)).map(tokenJson) };
  });

  app.post('/admin/users/:id/tokens', admin, async (request, reply) => {
    const user = await users.resolve(validate(idParams, request.params).id);
    if (user.status !== 'active') throw new GatewayError('conflict', `${user.subject} is disabled`, { reason: 'user_disabled' });
    return createToken(request, reply, user.id);
  });

  /** The user's tier, own overrides and the limits that result (0 = unlimited). */
  const rateLimitsJson = async (userId: string) => {
    const view = await users.view(userId);
    const own = view.grants.rateLimits;
    return { user_id: view.id, rate_tier: view.permissions.rateTier, overrides: own ?? {}, effective: limiter.limitsFor(view.permissions.rateTier, own ?? undefined) };
  };

  app.get('/admin/users/:id/rate-limits', admin, async (request) => {
    const user = await users.resolve(validate(idParams, request.params).id);
    return rateLimitsJson(user.id);
  });

  app.patch('/admin/users/:id/rate-limits', admin, async (request) => {
    const user = await users.resolve(validate(idParams, request.params).id);
    await users.setRateLimits(user.id, validate(rateLimitsBody, request.body));
    return rateLimitsJson(user.id);
  });

  app.delete('/admin/users/:id/tokens/:tokenId', admin, async (request, reply) => {
    const params = validate(tokenParams, request.params);
    const user = await users.resolve(params.id);
    await personalTokens.revoke(params.tokenId, user.id);
    return reply.code(204).send();
  });
};
