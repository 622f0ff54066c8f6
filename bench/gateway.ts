/**
 * A gateway for benchmarks (the compiled build, see shipped.ts), in the calling process:
 * SQLite in a temporary folder, quiet logs, listening on 127.0.0.1 port 0; `settings` add to
 * or override those defaults.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { Environment } from '../src/config/index.js';
import { shipped } from './shipped.js';

export async function startBenchGateway(name: string, settings: Environment): Promise<{ app: FastifyInstance; url: string; close(): Promise<void> }> {
  const { buildApp, loadConfig, createEngine } = await shipped();
  const dir = mkdtempSync(join(tmpdir(), `portcullis-bench-${name}-`));
  const config = loadConfig({
    PORT: '0',
    HOST: '127.0.0.1',
    LOG_LEVEL: 'silent',
    NODE_ENV: 'test',
    DATA_DIR: dir,
    DATABASE_URL: `sqlite:${join(dir, 'bench.db')}`,
    ...settings,
  });
  const engine = await createEngine(config);
  const app = await buildApp(config, engine);
  await app.listen({ port: 0, host: '127.0.0.1' });
  const address = app.server.address();
  if (!address || typeof address === 'string') throw new Error('no address');
  return {
    app,
    url: `http://127.0.0.1:${address.port}`,
    async close() {
      await app.close();
      await engine.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
