/**
 * `GET /healthz`: the process is up. `GET /readyz`: every dependency answers (database,
 * Redis when configured) and the instance is not draining; otherwise 503 naming the part.
 */
import type { FastifyPluginAsync } from 'fastify';
import type { Engine } from '../engine/index.js';

export interface HealthOptions {
  engine: Engine;
  /** True once shutdown has begun: the load balancer should stop sending traffic. */
  isDraining: () => boolean;
}

export const healthRoutes: FastifyPluginAsync<HealthOptions> = async (app, { engine, isDraining }) => {
  app.get('/healthz', { logLevel: 'warn' }, async () => ({ status: 'ok' }));

  app.get('/readyz', { logLevel: 'warn' }, async (request, reply) => {
    const checks: Record<string, 'ok' | string> = {};
    const failing: string[] = [];
    await Promise.all(
      engine.probes.map(async (probe) => {
        try {
          await probe.check();
          checks[probe.name] = 'ok';
        } catch (err) {
          checks[probe.name] = (err as Error).message || 'unreachable';
          failing.push(probe.name);
        }
      }),
    );
    if (isDraining()) failing.push('draining');
    if (failing.length > 0) {
      request.log.warn({ failing }, 'not ready');
      return reply.code(503).send({ status: 'unavailable', failing: failing.sort(), checks });
    }
    return { status: 'ready', checks };
  });
};
