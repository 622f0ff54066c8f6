/**
 * Admin routes for the key vault and the usage ledger. Authorization is the caller's:
 * pass a `preHandler` that rejects anyone without `manage_keys` (keys) / `read_usage`
 * (usage). Responses never carry a secret; request bodies with one are redacted from logs
 * by the app's logger (`*.secret`).
 *
 *   GET    /admin/keys                       → { data: KeyView[] }
 *   POST   /admin/keys                       { name, secret, weight?, models? } → 201 KeyRecord
 *   POST   /admin/keys/:name/rotate          { secret } → KeyRecord
 *   POST   /admin/keys/:name/disable|enable  → KeyRecord
 *   DELETE /admin/keys/:name                 → KeyRecord
 *   GET    /admin/usage?by=user|key|model|day&since=ms&until=ms&user_id=…  → { data: UsageSummaryRow[] }
 */
import type { FastifyPluginAsync, preHandlerAsyncHookHandler } from 'fastify';
import { z } from 'zod';
import { GatewayError } from '../errors/index.js';
import type { UsageLedger } from '../vault/usage.js';
import type { KeyVault } from '../vault/vault.js';

export interface AdminKeysOptions {
  vault: KeyVault;
  usage: UsageLedger;
  /** Runs before every route: authentication and authorization. */
  preHandler: preHandlerAsyncHookHandler;
}

const addBody = z.object({
  name: z.string(),
  secret: z.string(),
  weight: z.number().int().optional(),
  models: z.array(z.string()).optional(),
});
const rotateBody = z.object({ secret: z.string() });
const nameParams = z.object({ name: z.string().min(1).max(64) });
const usageQuery = z.object({
  by: z.enum(['user', 'key', 'model', 'day']).default('user'),
  since: z.coerce.number().int().min(0).optional(),
  until: z.coerce.number().int().min(0).optional(),
  user_id: z.string().min(1).max(200).optional(),
});

function parse<T>(schema: z.ZodType<T>, value: unknown, where: string): T {
  const result = schema.safeParse(value ?? {});
  if (result.success) return result.data;
  const issue = result.error.issues[0]!;
  // Never echo input: it may be a secret.
  throw new GatewayError('invalid_request', `${where}${issue.path.length ? `.${issue.path.join('.')}` : ''}: ${issue.message}`);
}

export const adminKeysRoutes: FastifyPluginAsync<AdminKeysOptions> = async (app, options) => {
  const { vault, usage } = options;
  app.addHook('preHandler', options.preHandler);

  app.get('/admin/keys', async () => ({ data: await vault.list() }));

  app.post('/admin/keys', async (request, reply) => {
    const body = parse(addBody, request.body, 'body');
    return reply.code(201).send(await vault.add(body));
  });

  app.post('/admin/keys/:name/rotate', async (request) => {
    const { name } = parse(nameParams, request.params, 'path');
    const { secret } = parse(rotateBody, request.body, 'body');
    return vault.rotate(name, secret);
  });

  for (const verb of ['disable', 'enable'] as const) {
    app.post(`/admin/keys/:name/${verb}`, async (request) => vault[verb](parse(nameParams, request.params, 'path').name));
  }

  app.delete('/admin/keys/:name', async (request) => vault.remove(parse(nameParams, request.params, 'path').name));

  app.get('/admin/usage', async (request) => {
    const q = parse(usageQuery, request.query, 'query');
    return { data: await usage.summary({ by: q.by, since: q.since, until: q.until, userId: q.user_id }) };
  });
};
