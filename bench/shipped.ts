/**
 * Benchmarks measure the gateway as it ships: the compiled build in dist/ (what `npm start`
 * runs), not the TypeScript sources run through tsx. tsx's transform wraps every function
 * it creates in a naming helper, which made the gateway (many closures per request) pay
 * several percent more CPU than the build does, and the bare proxy (few closures) almost none.
 *
 * A benchmark's parent process calls `buildShipped()` once; every process then loads the
 * modules it needs with `shipped()` (typed from the sources, loaded from dist/).
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type * as App from '../src/app.js';
import type * as ConfigModule from '../src/config/index.js';
import type * as EngineModule from '../src/engine/index.js';
import type * as SimulatorModule from '../src/simulator/index.js';
import type * as UpstreamModule from '../src/upstream/index.js';
import type * as RateLimitModule from '../src/ratelimit/index.js';
import type * as RuntimeModule from '../src/runtime.js';

const root = fileURLToPath(new URL('..', import.meta.url));
/** BENCH_DIST=<dir> loads another build instead (a copy of dist/ inside this checkout, so its
 * packages resolve): how bench/proxy/ab.ts compares two versions of the code. */
const dist = process.env.BENCH_DIST ? pathToFileURL(`${process.env.BENCH_DIST.replace(/\/+$/, '')}/`) : new URL('../dist/', import.meta.url);

let built = false;

/** Compiles src/ into dist/ (`npm run build`), once per process. */
export function buildShipped(): void {
  if (built) return;
  execFileSync('npm', ['run', 'build', '--silent'], { cwd: root, stdio: 'inherit' });
  built = true;
}

export interface Shipped {
  buildApp: typeof App.buildApp;
  logDestination: typeof App.logDestination;
  loadConfig: typeof ConfigModule.loadConfig;
  createEngine: typeof EngineModule.createEngine;
  buildSimulator: typeof SimulatorModule.buildSimulator;
  /** What bench/proxy/components.ts calls directly. */
  upstreamRequestHeaders: typeof UpstreamModule.upstreamRequestHeaders;
  responseHeadersForClient: typeof UpstreamModule.responseHeadersForClient;
  SseTap: typeof UpstreamModule.SseTap;
  usageFromMessage: typeof UpstreamModule.usageFromMessage;
  rateLimitHeaders: typeof RateLimitModule.rateLimitHeaders;
  /** The V8 settings main.ts applies (src/runtime.ts). */
  tuneV8: typeof RuntimeModule.tuneV8;
}

/** The compiled modules a benchmark needs; throws when dist/ was not built. */
export async function shipped(): Promise<Shipped> {
  if (!existsSync(new URL('app.js', dist))) throw new Error('dist/ is missing: call buildShipped() (npm run build) first');
  const load = <T>(path: string): Promise<T> => import(new URL(path, dist).href) as Promise<T>;
  const [app, config, engine, simulator, upstream, ratelimit, runtime] = await Promise.all([
    load<typeof App>('app.js'),
    load<typeof ConfigModule>('config/index.js'),
    load<typeof EngineModule>('engine/index.js'),
    load<typeof SimulatorModule>('simulator/index.js'),
    load<typeof UpstreamModule>('upstream/index.js'),
    load<typeof RateLimitModule>('ratelimit/index.js'),
    load<typeof RuntimeModule>('runtime.js'),
  ]);
  return {
    buildApp: app.buildApp,
    logDestination: app.logDestination,
    loadConfig: config.loadConfig,
    createEngine: engine.createEngine,
    buildSimulator: simulator.buildSimulator,
    upstreamRequestHeaders: upstream.upstreamRequestHeaders,
    responseHeadersForClient: upstream.responseHeadersForClient,
    SseTap: upstream.SseTap,
    usageFromMessage: upstream.usageFromMessage,
    rateLimitHeaders: ratelimit.rateLimitHeaders,
    tuneV8: runtime.tuneV8,
  };
}
