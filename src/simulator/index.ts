/**
 * A faithful stand-in for the Anthropic API (tests, benchmarks, the gateway's demo mode).
 *
 * Guarantees: the wire format of REFERENCE.md (headers, SSE event names and order, error
 * bodies and statuses); deterministic replies and token counts for the same request and
 * fault; per-key and per-request fault injection; a bounded log of every request served with
 * the usage the client was told. Nothing is logged per request unless `logger: true`.
 * Each simulator owns all its state: build as many as you like.
 */
import { setMaxListeners } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import Fastify from 'fastify';
import type { FastifyInstance } from 'fastify';
import { FaultBook } from './faults.js';
import { HeaderSource, IdSource } from './headers.js';
import { ModelCatalogue, defaultModels } from './models.js';
import { simulatorRoutes } from './routes.js';
import { optionsSchema } from './types.js';
import type { SimulatedFault, SimulatedRequest, SimulatorOptions } from './types.js';

export type { SimulatedFault, SimulatedModel, SimulatedOutcome, SimulatedRequest, SimulatedUsage, SimulatorOptions } from './types.js';
export { faultSchema } from './types.js';
export { defaultModels } from './models.js';

export interface Simulator {
  /** The Fastify app, not listening (use `app.inject` or `listen`). */
  app: FastifyInstance;
  /** Starts listening; resolves to the base URL, e.g. `http://127.0.0.1:41234`. */
  listen(options?: { port?: number; host?: string }): Promise<string>;
  /** Stops listening, cuts open connections, cancels pending delays. */
  close(): Promise<void>;
  /** What was served, newest last, at most `maxLoggedRequests` entries. */
  readonly requests: SimulatedRequest[];
  /**
   * Sets the fault every request with this key gets (undefined clears it) and restarts its
   * `times` count. Throws a ZodError when the fault is invalid.
   */
  setKeyFaults(key: string, faults: SimulatedFault | undefined): void;
  /** Clears the request log, every key fault and every `times` counter. */
  reset(): void;
}

/** Builds a simulator; options are validated here (a ZodError when invalid). */
export async function buildSimulator(options: SimulatorOptions = {}): Promise<Simulator> {
  const opts = optionsSchema.parse(options);
  const maxLogged = opts.maxLoggedRequests ?? 1000;
  const requests: SimulatedRequest[] = [];
  const faults = new FaultBook();
  const lifetime = new AbortController();
  // Every pending delay listens on it: one listener per concurrent stream is expected.
  setMaxListeners(0, lifetime.signal);

  const app = Fastify({
    logger: opts.logger ?? false,
    bodyLimit: opts.bodyLimit ?? 32 * 1024 * 1024,
    forceCloseConnections: true,
    return503OnClosing: false,
  });

  /** Resolves true after `ms`, or false at once when the simulator is closing. */
  const pause = async (ms: number): Promise<boolean> => {
    if (lifetime.signal.aborted) return false;
    try {
      await sleep(ms, undefined, { signal: lifetime.signal });
      return true;
    } catch {
      return false;
    }
  };

  // Registered on the root (not as an encapsulated plugin) so its hooks and 404 handler own every URL.
  await simulatorRoutes(app, {
    faults,
    models: new ModelCatalogue(opts.models ?? defaultModels),
    ids: new IdSource(),
    headers: new HeaderSource(),
    keys: opts.keys ? new Set(opts.keys) : null,
    deltas: opts.deltas ?? 5,
    deltaDelayMs: opts.deltaDelayMs ?? 0,
    record: (entry) => {
      requests.push(entry);
      if (requests.length > maxLogged) requests.shift();
    },
    pause,
  });

  return {
    app,
    requests,
    async listen({ port = 0, host = '127.0.0.1' } = {}) {
      await app.listen({ port, host });
      const address = app.server.address();
      if (address === null || typeof address === 'string') throw new Error('simulator: unexpected listen address');
      const shownHost = address.family === 'IPv6' ? `[${address.address}]` : address.address;
      return `http://${shownHost}:${address.port}`;
    },
    async close() {
      lifetime.abort();
      await app.close();
    },
    setKeyFaults(key, fault) {
      faults.setKeyFaults(key, fault);
    },
    reset() {
      requests.length = 0;
      faults.reset();
    },
  };
}
