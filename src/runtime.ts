/**
 * The V8 settings the gateway process runs with: applied by the process entry (main.ts)
 * before any request is served, and by the benchmarks' gateway (bench/proxy/server.ts), so
 * that what is measured is what runs.
 *
 * `--no-allocation-site-pretenuring`: V8 watches each place that creates objects, and when
 * nearly all of one place's objects survive a young-generation collection it starts creating
 * them directly in the old generation. A request's objects live exactly as long as the
 * request, so under steady load places on the request path cross that line; their objects,
 * dead or not, then keep everything they point to (the rest of the request: headers,
 * buffers, closures) alive until the next full collection, and every young collection copies
 * and promotes it. Measured with the proxy bench (docs/benchmarks.md, session 7): 1.8 MB
 * promoted per young collection with it, 0.08 MB without, streaming.
 */
import { setFlagsFromString } from 'node:v8';

/** Applies these settings to this process (once is enough; applying them again changes nothing). */
export function tuneV8(): void {
  setFlagsFromString('--no-allocation-site-pretenuring');
}
