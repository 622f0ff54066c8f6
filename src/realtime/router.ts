/**
 * One router from frame `type` to handler; each handler comes with its zod schema, so adding
 * a frame type is adding one entry. Malformed input (invalid JSON, no type, unknown type,
 * schema violation, binary frames) is answered with an `error` frame naming the problem and
 * the connection stays open, until the client passes the abuse allowance (close 1008).
 */
import type { z } from 'zod';
import type { Connection } from './connection.js';
import { CloseCode, describeIssues } from './protocol.js';

export interface Route<S extends z.ZodType> {
  schema: S;
  handle(conn: Connection, frame: z.infer<S>): void | Promise<void>;
}

export interface RouterLogger {
  error(details: object, message: string): void;
}

export class Router {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  private readonly routes = new Map<string, Route<any>>();

  constructor(private readonly log: RouterLogger) {}

  /** Adds a frame type; a second entry for the same type is a programming error. */
  add<S extends z.ZodType>(type: string, route: Route<S>): this {
    if (this.routes.has(type)) throw new Error(`frame type ${type} is already routed`);
    this.routes.set(type, route);
    return this;
  }

  get types(): string[] {
    return [...this.routes.keys()];
  }

  /** Handles one frame from the client. Never throws; handler failures become `error` frames. */
  async dispatch(conn: Connection, data: Buffer | ArrayBuffer | Buffer[], isBinary: boolean, now: number): Promise<void> {
    if (isBinary) return this.malformed(conn, 'binary frames are not supported; send JSON text frames', now);
    const text = Array.isArray(data) ? Buffer.concat(data).toString('utf8') : Buffer.from(data as ArrayBuffer).toString('utf8');
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      return this.malformed(conn, 'invalid JSON', now);
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value)) return this.malformed(conn, 'a frame must be a JSON object', now);
    const type = (value as { type?: unknown }).type;
    if (typeof type !== 'string') return this.malformed(conn, 'type: Field required (a string)', now);
    const route = this.routes.get(type);
    if (!route) return this.malformed(conn, `unknown type ${JSON.stringify(type.slice(0, 64))}; expected one of ${this.types.join(', ')}`, now);
    const parsed = route.schema.safeParse(value, { reportInput: true });
    if (!parsed.success) {
      const id = (value as { id?: unknown }).id;
      return this.malformed(conn, `${type}: ${describeIssues(parsed.error)}`, now, typeof id === 'string' ? id.slice(0, 128) : undefined);
    }
    try {
      await route.handle(conn, parsed.data);
    } catch (err) {
      this.log.error({ err, type, connection_id: conn.meta.id }, 'websocket handler failed');
      conn.send({ type: 'error', error: { type: 'api_error', message: 'Internal server error' } });
    }
  }

  private malformed(conn: Connection, message: string, now: number, id?: string): void {
    const frame: Record<string, unknown> = { type: 'error', error: { type: 'invalid_request_error', message } };
    if (id !== undefined) frame.id = id;
    conn.send(frame);
    if (conn.recordAbuse(now)) conn.close(CloseCode.policy, 'too many malformed frames', 'policy');
  }
}
