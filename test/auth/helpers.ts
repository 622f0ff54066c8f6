/** Shared set-up for the auth suites: an app on the suite's database and a few users. */
import type { FastifyInstance } from 'fastify';
import type { DestinationStream } from 'pino';
import { buildApp } from '../../src/app.js';
import type { User } from '../../src/auth/users.js';
import type { DatabaseContext } from '../helpers/env.js';

export const PUBLIC_URL = 'http://127.0.0.1:8080';

export async function authApp(db: DatabaseContext, options: { logStream?: DestinationStream; env?: Record<string, string> } = {}): Promise<FastifyInstance> {
  const extra = { PUBLIC_URL, ...(options.env ?? {}) };
  const engine = await db.engine(extra);
  const app = await buildApp(db.config(extra), engine, { logStream: options.logStream });
  await app.ready();
  return app;
}

let counter = 0;
export async function makeUser(app: FastifyInstance, roles: string[] = ['member']): Promise<User> {
  counter += 1;
  return app.services.users.create({ issuer: 'https://idp.test', subject: `user${counter}-${Date.now()}.crypto`, roles });
}

export function bearer(token: string): Record<string, string> {
  return { authorization: `Bearer ${token}` };
}

/** The error reason (our machine-readable code) of an error answer. */
export function reason(res: { json(): unknown }): string | undefined {
  return (res.json() as { error?: { code?: string } }).error?.code;
}
