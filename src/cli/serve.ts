/** `portcullis serve`: run the gateway until SIGTERM/SIGINT, then shut down gracefully. */
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../app.js';
import { loadConfig } from '../config/index.js';
import { createEngine } from '../engine/index.js';
import { cliIo } from './io.js';

export async function serve(): Promise<void> {
  const config = loadConfig(cliIo().env);
  // Until the app's logger exists, warnings about the engine go to stderr as JSON lines.
  const early = (message: string, err: Error) =>
    process.stderr.write(`${JSON.stringify({ level: 'warn', time: new Date().toISOString(), msg: message, err: err.message })}\n`);
  const holder: { app?: FastifyInstance } = {};
  const engine = await createEngine(config, { migrate: true, onWarning: (m, e) => (holder.app ? holder.app.log.warn({ err: e }, m) : early(m, e)) });
  const app = await buildApp(config, engine);
  holder.app = app;
  await app.listen({ port: config.port, host: config.host });
  app.log.info(
    { engine: engine.kind, database: config.database.kind, redis: Boolean(engine.redis), public_url: config.publicUrl },
    `Portcullis listening on ${config.publicUrl}`,
  );

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    const instance = app;
    instance.services.lifecycle.draining = true;
    instance.log.info({ signal }, 'shutting down');
    const force = setTimeout(() => {
      instance.log.error({ timeout_ms: config.shutdownTimeoutMs }, 'shutdown timed out; exiting');
      process.exit(1);
    }, config.shutdownTimeoutMs);
    force.unref();
    try {
      await instance.close();
      await engine.close();
      instance.log.info('stopped');
      process.exit(0);
    } catch (err) {
      instance.log.error({ err }, 'shutdown failed');
      process.exit(1);
    }
  };
  process.once('SIGTERM', () => void stop('SIGTERM'));
  process.once('SIGINT', () => void stop('SIGINT'));
}
