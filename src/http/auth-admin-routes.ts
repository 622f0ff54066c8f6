/**
 * Admin views of other users' sessions and personal tokens; every route needs the
 * manage_users capability. `:id` of a user is a user id or a subject.
 */
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { GatewayError } from '../errors/index.js';
import { sessionJson, tokenJson, validate } from './auth-routes.js';

export interface AuthAdminOptions {
  createToken(request: FastifyRequest, reply: FastifyReply, userId: string): Promise<unknown>;
}

const idParams = z.object({ id: z.string().min(1).max(200) });
const tokenParams = z.object({ id: z.string().min(1).max(200), tokenId: z.string().min(1).max(100) });

export const authAdminRoutes: FastifyPluginAsync<AuthAdminOptions> = async (app, { createToken }) => {
  const { sessions, personalTokens, users } = app.services;
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

  app.delete('/admin/users/:id/tokens/:tokenId', admin, async (request, reply) => {
    const params = validate(tokenParams, request.params);
    const user = await users.resolve(params.id);
    await personalTokens.revoke(params.tokenId, user.id);
    return reply.code(204).send();
  });
};
