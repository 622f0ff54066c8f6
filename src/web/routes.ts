/**
 * The chat page: `GET /` (the page), `/assets/…` (its stylesheet, and the browser build of
 * `portcullis/client` plus the page script, compiled by tsc from src/client and src/web/page
 * with tsconfig.web.json, no bundler), `GET /api/info` (`{demo, version}`) and a read-only
 * `GET /admin/users` (manage_users) for the admin section.
 *
 * Files are served only from two fixed directories and only when their name matches an
 * allowlist pattern (no `..`, no other extensions), with a strict Content-Security-Policy:
 * the page runs its own scripts only, never inline code.
 */
import { existsSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyPluginAsync, FastifyReply } from 'fastify';
import { z } from 'zod';
import { GatewayError } from '../errors/index.js';

export interface WebRoutesOptions {
  /** The tsc output holding `client/*.js` and `web/page/*.js`; found next to this module or in `dist/` by default. */
  assetsDir?: string;
  /** Whether the gateway answers with the built-in simulator (demo mode). */
  demo: boolean;
}

const here = fileURLToPath(new URL('.', import.meta.url));
/** Running from dist/web: the sources sit in ../../src/web; from src/web (tsx): right here. */
const PUBLIC_DIRS = [join(here, 'public'), join(here, '..', '..', 'src', 'web', 'public')];
/** Running from dist/web: dist/ is one up; from src/web: the build is in ../../dist. */
const ASSET_DIRS = [join(here, '..'), join(here, '..', '..', 'dist')];

const PUBLIC_FILES: Record<string, string> = {
  'index.html': 'text/html; charset=utf-8',
  'style.css': 'text/css; charset=utf-8',
};
const SCRIPT = /^(client|web\/page)\/[a-z0-9-]+\.js$/;
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

function firstExisting(dirs: string[], probe: string): string | undefined {
  return dirs.find((d) => existsSync(join(d, probe)));
}

function version(): string {
  for (const p of [join(here, '..', '..', 'package.json'), join(here, '..', '..', '..', 'package.json')]) {
    try {
      return (JSON.parse(readFileSync(p, 'utf8')) as { version?: string }).version ?? '0.0.0';
    } catch {
      // try the next candidate
    }
  }
  return '0.0.0';
}

const usersQuery = z.strictObject({
  limit: z.coerce.number().int().min(1).max(1000).default(100),
  offset: z.coerce.number().int().min(0).default(0),
  status: z.enum(['active', 'disabled']).optional(),
});

export const webRoutes: FastifyPluginAsync<WebRoutesOptions> = async (app, options) => {
  const publicDir = firstExisting(PUBLIC_DIRS, 'index.html');
  const assetsDir = options.assetsDir ?? firstExisting(ASSET_DIRS, join('client', 'index.js'));
  const info = { demo: options.demo, version: version() };

  const sendFile = async (reply: FastifyReply, path: string, type: string) => {
    const body = await readFile(path).catch(() => null);
    if (!body) throw new GatewayError('not_found', 'No such file', { reason: 'not_found' });
    return reply.type(type).header('content-security-policy', CSP).header('x-content-type-options', 'nosniff').header('cache-control', 'no-cache').send(body);
  };

  app.get('/', async (_request, reply) => {
    if (!publicDir) throw new GatewayError('not_found', 'The chat page is not installed', { reason: 'not_found' });
    return sendFile(reply, join(publicDir, 'index.html'), PUBLIC_FILES['index.html']!);
  });

  app.get('/assets/*', async (request, reply) => {
    const name = (request.params as { '*': string })['*'];
    const publicType = PUBLIC_FILES[name];
    if (publicType && name !== 'index.html' && publicDir) return sendFile(reply, join(publicDir, name), publicType);
    if (!SCRIPT.test(name)) throw new GatewayError('not_found', 'No such asset', { reason: 'not_found' });
    if (!assetsDir) throw new GatewayError('unavailable', 'The browser build is missing: run npm run build', { reason: 'assets_not_built' });
    return sendFile(reply, join(assetsDir, name), 'text/javascript; charset=utf-8');
  });

  app.get('/api/info', async () => info);

  app.get('/admin/users', { preHandler: app.requireCapability('manage_users') }, async (request) => {
    const parsed = usersQuery.safeParse(request.query ?? {});
    if (!parsed.success) throw new GatewayError('invalid_request', `query.${parsed.error.issues[0]?.path.join('.')}: ${parsed.error.issues[0]?.message}`);
    const { users } = app.services;
    const list = await users.list(parsed.data);
    const views = await Promise.all(list.map((u) => users.view(u.id)));
    return {
      data: views.map((v) => ({
        id: v.id,
        subject: v.subject,
        name: v.displayName,
        status: v.status,
        roles: v.roles,
        models: v.permissions.models,
        capabilities: v.permissions.capabilities,
        created_at: v.createdAt,
        last_login_at: v.lastLoginAt,
      })),
    };
  });
};
