/**
 * Admin endpoints over the connection registry:
 * - `GET /admin/connections` (manage_users): filters `user_id`, `role`, `session_id`,
 *   `connected_before`, `connected_after`, `idle_since` (epoch ms), `limit` (default 100).
 * - `DELETE /admin/connections/:id` (manage_users): closes it with 1008 (wherever it is held).
 * - `POST /admin/broadcast` (broadcast): `{channel, data, user_id?, filter?}`; no target is everyone.
 */
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import type { ConnectionFilter, ConnectionMeta } from '../engine/connections/index.js';
import { GatewayError } from '../errors/index.js';
import { CloseCode } from './protocol.js';

const epoch = z.coerce.number().int().min(0);
const filterFields = {
  user_id: z.string().min(1).max(128).optional(),
  role: z.string().min(1).max(64).optional(),
  session_id: z.string().min(1).max(128).optional(),
  connected_before: epoch.optional(),
  connected_after: epoch.optional(),
  idle_since: epoch.optional(),
};
const listQuery = z.strictObject({ ...filterFields, limit: z.coerce.number().int().min(1).max(10_000).default(100) });
const broadcastBody = z.strictObject({
  channel: z.string().regex(/^[A-Za-z0-9_.:-]{1,128}$/, 'expected 1 to 128 letters, digits, _ . : -'),
  data: z.unknown(),
  user_id: z.string().min(1).max(128).optional(),
  filter: z.strictObject(filterFields).optional(),
});

function parse<T>(schema: z.ZodType<T>, value: unknown, where: string): T {
  const result = schema.safeParse(value ?? {});
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  throw new GatewayError('invalid_request', `${where}.${issue?.path.join('.') || ''}: ${issue?.message ?? 'invalid'}`, { reason: 'invalid_request_body' });
}

function toFilter(q: z.infer<z.ZodObject<typeof filterFields>>): ConnectionFilter {
  const f: ConnectionFilter = {};
  if (q.user_id !== undefined) f.userId = q.user_id;
  if (q.role !== undefined) f.role = q.role;
  if (q.session_id !== undefined) f.sessionId = q.session_id;
  if (q.connected_before !== undefined) f.connectedBefore = q.connected_before;
  if (q.connected_after !== undefined) f.connectedAfter = q.connected_after;
  if (q.idle_since !== undefined) f.idleSince = q.idle_since;
  return f;
}

function view(meta: ConnectionMeta) {
  return {
    id: meta.id,
    user_id: meta.userId,
    roles: meta.roles,
    session_id: meta.sessionId,
    personal_token_id: meta.personalTokenId,
    ip: meta.ip,
    user_agent: meta.userAgent,
    connected_at: meta.connectedAt,
    last_activity_at: meta.lastActivityAt,
    protocol: meta.protocol,
    in_flight: meta.inFlight,
    bytes_in: meta.bytesIn,
    bytes_out: meta.bytesOut,
    instance_id: meta.instanceId,
  };
}

export async function realtimeAdminRoutes(app: FastifyInstance): Promise<void> {
  const { directory, fanout } = app.realtime;

  app.get('/admin/connections', { preHandler: app.requireCapability('manage_users') }, async (request) => {
    const q = parse(listQuery, request.query, 'query');
    const found = await directory.filter(toFilter(q), q.limit);
    return { data: found.map(view), count: found.length, total: await directory.count() };
  });

  app.delete('/admin/connections/:id', { preHandler: app.requireCapability('manage_users') }, async (request, reply) => {
    const { id } = request.params as { id: string };
    const meta = await directory.get(id);
    if (!meta) throw new GatewayError('not_found', `No connection ${id}`, { reason: 'connection_not_found' });
    await fanout.kick({ id }, { code: CloseCode.policy, reason: 'closed by an administrator', cause: 'kicked' });
    request.log.info({ connection_id: id, user_id: meta.userId, by: request.auth?.user.id }, 'connection closed by an administrator');
    return reply.code(204).send();
  });

  app.post('/admin/broadcast', { preHandler: app.requireCapability('broadcast') }, async (request, reply) => {
    const body = parse(broadcastBody, request.body, 'body');
    const filter = body.filter ? toFilter(body.filter) : {};
    if (body.user_id !== undefined) filter.userId = body.user_id;
    const targets = (await directory.filter(filter)).length;
    await fanout.toFilter(filter, body.channel, body.data);
    return reply.code(202).send({ channel: body.channel, targets });
  });
}
