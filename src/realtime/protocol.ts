/**
 * The WebSocket protocol `portcullis.v1` (docs/protocol.md): close codes, the client
 * frames' schemas and the server frames' shapes. JSON text frames; every frame has `type`.
 */
import { z } from 'zod';

export const PROTOCOL = 'portcullis.v1';
/** Sec-WebSocket-Protocol entry carrying a token: `bearer.<token>`. */
export const BEARER_PREFIX = 'bearer.';

export const CloseCode = {
  normal: 1000,
  goingAway: 1001,
  policy: 1008,
  tooBig: 1009,
  internal: 1011,
  /** Session expired or revoked: sign in again. */
  unauthenticated: 4001,
  /** The client did not read fast enough: reconnect. */
  slowConsumer: 4008,
  tooManyConnections: 4029,
} as const;

const chatId = z.string().regex(/^[A-Za-z0-9_.:-]{1,128}$/, 'expected 1 to 128 letters, digits, _ . : -');

/** Client → server frames, by type. */
export const clientFrames = {
  chat: z.strictObject({ type: z.literal('chat'), id: chatId, request: z.record(z.string(), z.unknown()) }),
  'chat.cancel': z.strictObject({ type: z.literal('chat.cancel'), id: chatId }),
  'chat.resume': z.strictObject({ type: z.literal('chat.resume'), id: chatId, after_seq: z.number().int().min(-1) }),
  'auth.refresh': z.strictObject({ type: z.literal('auth.refresh'), token: z.string().min(1).max(8192) }),
  ping: z.looseObject({ type: z.literal('ping') }),
};

export type ClientFrameType = keyof typeof clientFrames;
export type ClientFrame<T extends ClientFrameType> = z.infer<(typeof clientFrames)[T]>;

export interface ErrorShape {
  type: string;
  message: string;
}

/** Server → client frames (documented in docs/protocol.md). */
export type ServerFrame =
  | {
      type: 'welcome';
      connection_id: string;
      protocol: string;
      user: { id: string; display_name: string | null; roles: string[] };
      heartbeat_ms: number;
      expires_at: number | null;
      limits: { max_message_bytes: number; max_connections: number; resume_window_ms: number; max_chats: number };
    }
  | { type: 'chat.event'; id: string; seq: number; event: unknown }
  | { type: 'chat.done'; id: string; outcome: 'complete' | 'cancelled'; usage: unknown; stop_reason: string | null }
  | { type: 'chat.error'; id: string; error: ErrorShape; retry_after_ms?: number; usage?: unknown }
  | { type: 'auth.ok'; expires_at: number | null }
  | { type: 'auth.expiring'; expires_at: number }
  | { type: 'pong' }
  | { type: 'broadcast'; channel: string; data: unknown }
  | { type: 'error'; error: ErrorShape; id?: string };

/** Describes a schema violation in one line, naming the field. */
export function describeIssues(error: z.ZodError): string {
  return error.issues
    .slice(0, 3)
    .map((issue) => {
      const path = issue.path.map(String).join('.') || 'frame';
      if (issue.code === 'invalid_type' && issue.input === undefined) return `${path}: Field required`;
      if (issue.code === 'unrecognized_keys') return `${path}: unknown field(s) ${issue.keys.join(', ')}`;
      return `${path}: ${issue.message}`;
    })
    .join('; ');
}
