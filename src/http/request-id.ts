/**
 * The gateway's request ids (`req_` and 32 hex digits), for every door: the HTTP API (when the
 * client sent no usable x-request-id), WebSocket upgrades and WebSocket chats. This process's
 * 64 random bits, then a counter: unique across instances and restarts. An id names a request
 * in logs, headers and usage records and grants nothing, so it need not be unguessable. A
 * client may send its own x-request-id (app.ts keeps it), so nothing finds a request by its id
 * alone (realtime/orphans.ts also matches the user). A counter costs no random bytes and no
 * string replacing per request (`randomUUID()` with its dashes removed cost about a
 * microsecond of each proxied request; docs/benchmarks.md, session 11).
 */
import { randomBytes } from 'node:crypto';

const instance = `req_${randomBytes(8).toString('hex')}`;
let counter = 0;

export function newRequestId(): string {
  counter += 1;
  return `${instance}${counter.toString(16).padStart(16, '0')}`;
}
