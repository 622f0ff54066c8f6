/**
 * The chat pipeline as the WebSocket server uses it (CHAT-CONTRACT). Mirrors
 * `src/chat/pipeline.ts`, which the integrator lands on main; once it has, this file
 * re-exports from there.
 */
import type { AuthContext } from '../auth/authenticate.js';

export interface ChatEvent {
  event: string;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  data: any;
}

export interface ChatSummary {
  outcome: 'complete' | 'error' | 'cancelled' | 'failed_midstream';
  usage: { input_tokens: number; output_tokens: number; cache_creation_input_tokens: number; cache_read_input_tokens: number };
  stopReason: string | null;
  error?: { type: string; message: string };
}

export interface ChatRun {
  events: AsyncIterable<ChatEvent>;
  done: Promise<ChatSummary>;
}

export interface ChatPipeline {
  start(options: { auth: AuthContext; request: Record<string, unknown>; requestId: string; signal: AbortSignal; ip?: string; transport: 'http' | 'ws' }): Promise<ChatRun>;
}
