/** `GET /metrics`: the app's Prometheus registry in the text exposition format. */
import type { FastifyInstance } from 'fastify';

export async function metricsRoutes(app: FastifyInstance): Promise<void> {
  app.get('/metrics', { logLevel: 'warn' }, async (_request, reply) => {
    const registry = app.services.metrics;
    return reply.header('content-type', registry.contentType).send(await registry.metrics());
  });
}
