/**
 * A gateway for the browser tests: demo mode (the in-process simulator), the development
 * identity provider, PUBLIC_URL on a fixed free loopback port (the OIDC redirect and the
 * WebSocket Origin check need it), and a fresh browser build of the page (tsc, no bundler).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../../src/app.js';
import { loadConfig } from '../../src/config/index.js';
import { createEngine } from '../../src/engine/index.js';
import { freePort } from '../helpers/cli.js';
import { baseEnv } from '../helpers/env.js';

export const CHROMIUM = '/usr/bin/chromium';
export const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
export const SHOTS = join(process.cwd(), 'test-results', 'browser');

/** Whether the browser suites run: chromium present, or required (then a missing one fails). */
export function browserAvailable(): boolean {
  if (existsSync(CHROMIUM)) return true;
  if (process.env.PORTCULLIS_REQUIRE_SERVICES === '1') throw new Error(`${CHROMIUM} is missing and PORTCULLIS_REQUIRE_SERVICES=1: install the chromium package`);
  console.warn(`skipping the browser tests: ${CHROMIUM} is not installed (apt-get install chromium)`);
  return false;
}

export interface PageGateway {
  app: FastifyInstance;
  url: string;
  close(): Promise<void>;
}

/** Compiles src/client and src/web/page into a temporary directory (what `npm run build` puts in dist/). */
export function buildAssets(): string {
  const out = mkdtempSync(join(tmpdir(), 'portcullis-web-'));
  execFileSync(process.execPath, [join('node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.web.json', '--outDir', out], { stdio: 'inherit' });
  return out;
}

export async function startPageGateway(assetsDir: string, env: Record<string, string> = {}): Promise<PageGateway> {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-page-'));
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const config = loadConfig({
    ...baseEnv(dir),
    DATABASE_URL: `sqlite:${join(dir, 'test.db')}`,
    PUBLIC_URL: url,
    RATE_LIMIT_IP_UPGRADE_PER_MIN: '0',
    RATE_LIMIT_AUTH_FAILURES_PER_MIN: '0',
    ...env,
  });
  const engine = await createEngine(config);
  const app = await buildApp(config, engine, { webAssetsDir: assetsDir });
  await app.listen({ port, host: '127.0.0.1' });
  mkdirSync(SHOTS, { recursive: true });
  return {
    app,
    url,
    async close() {
      await app.close();
      await engine.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A prompt whose demo reply streams in `deltas` pieces `delayMs` apart, and that reply. */
export function slowPrompt(label: string, deltas: number, delayMs: number): { prompt: string; reply: string } {
  const words = Array.from({ length: deltas * 2 }, (_, i) => `${label}${i}`).join(' ');
  return { prompt: `${words} <<sim:{"deltas":${deltas},"deltaDelayMs":${delayMs}}>>`, reply: `Echo: ${words}` };
}
