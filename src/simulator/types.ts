/**
 * The simulator's public types: its options, the fault object and the log of what it served.
 * Schemas are zod so the CLI, the `x-sim-fault` header and the `<<sim:{…}>>` directive are all
 * validated the same way.
 */
import { z } from 'zod';
import type { AnthropicErrorType } from '../errors/index.js';

export const anthropicErrorTypes = [
  'invalid_request_error',
  'authentication_error',
  'billing_error',
  'permission_error',
  'not_found_error',
  'conflict_error',
  'request_too_large',
  'rate_limit_error',
  'api_error',
  'timeout_error',
  'overloaded_error',
] as const satisfies readonly AnthropicErrorType[];

const count = z.number().int().min(0);
const ms = z.number().min(0).max(600_000);

/**
 * A fault: what to do differently for one request. Every field is optional; an empty object
 * changes nothing. See docs/simulator.md for the reference.
 */
export const faultSchema = z.strictObject({
  /** Answer with this HTTP error status (before any body) instead of a reply. */
  status: z.number().int().min(400).max(599).optional(),
  /** Overrides the Anthropic error type derived from `status` (or of a mid-stream error). */
  type: z.enum(anthropicErrorTypes).optional(),
  /** Overrides the error message derived from the type. */
  message: z.string().max(10_000).optional(),
  /** Sent as `retry-after` (seconds). 429 sends `retry-after: 1` when neither is given. */
  retryAfter: z.number().min(0).optional(),
  /** Sent as `retry-after-ms` (and `retry-after` rounded up, unless `retryAfter` is given). */
  retryAfterMs: z.number().min(0).optional(),
  /** Sent as `x-should-retry` on an error status. */
  shouldRetry: z.boolean().optional(),
  /** Apply to the first `times` requests carrying this fault (counted per `id`). */
  times: z.number().int().min(1).optional(),
  /** Counter identity for `times`; defaults to the fault's JSON text. */
  id: z.string().min(1).max(200).optional(),
  /** Wait this long before sending any header. */
  latencyMs: ms.optional(),
  /** Wait this long before each content delta (streaming) or per delta in total (JSON). */
  deltaDelayMs: ms.optional(),
  /** Split the reply text into this many `text_delta`s. */
  deltas: z.number().int().min(1).max(10_000).optional(),
  /** The scripted reply text (instead of the echo). */
  text: z.string().max(1_000_000).optional(),
  /** Scripted thinking text; forces a thinking block even without `thinking` in the request. */
  thinking: z.string().max(100_000).optional(),
  /** Reply with a tool_use block (stop_reason tool_use) after the text. */
  toolUse: z
    .union([
      z.literal(true),
      z.strictObject({ name: z.string().min(1).optional(), id: z.string().min(1).optional(), input: z.record(z.string(), z.unknown()).optional() }),
    ])
    .optional(),
  /** Destroy the socket after this many content deltas (JSON: no answer at all). */
  resetAfterDeltas: count.optional(),
  /** With resetAfterDeltas on a stream: first write half of the next event, so the cut falls inside it. */
  resetMidEvent: z.boolean().optional(),
  /** Send `event: error` after this many content deltas (JSON: the matching error status). */
  errorAfterDeltas: count.optional(),
  /** The mid-stream error's type; `overloaded_error` by default. */
  errorType: z.enum(anthropicErrorTypes).optional(),
  /** Write an unparsable SSE event after this many content deltas, then end (JSON: a truncated body). */
  malformedAfterDeltas: count.optional(),
  /** Reported as `cache_read_input_tokens`. */
  cacheReadTokens: count.optional(),
  /** Reported as `cache_creation_input_tokens`. */
  cacheCreationTokens: count.optional(),
});

export type SimulatedFault = z.infer<typeof faultSchema>;

export const modelSchema = z.strictObject({
  id: z.string().min(1),
  display_name: z.string().min(1),
  /** RFC 3339; the epoch when omitted. */
  created_at: z.string().optional(),
  /** Other ids answering to this model (e.g. `claude-sonnet-4-5` for a dated id). */
  aliases: z.array(z.string().min(1)).optional(),
});

export type SimulatedModel = z.infer<typeof modelSchema>;

export const optionsSchema = z.strictObject({
  /** When given, only these keys are accepted; any other gets 401 "invalid x-api-key". */
  keys: z.array(z.string().min(1)).optional(),
  /** The catalogue served by /v1/models and accepted by /v1/messages. */
  models: z.array(modelSchema).min(1).optional(),
  /** Fastify's logger; off by default (the simulator is a benchmark baseline). */
  logger: z.boolean().optional(),
  /** Text deltas per reply when a request does not say; 5 by default. */
  deltas: z.number().int().min(1).max(10_000).optional(),
  /** Milliseconds before each delta when a request does not say; 0 by default. */
  deltaDelayMs: ms.optional(),
  /** How many requests `requests` keeps (oldest dropped first); 1000 by default. */
  maxLoggedRequests: z.number().int().min(1).max(1_000_000).optional(),
  /** Largest accepted body in bytes; 32 MiB (Anthropic's limit) by default. */
  bodyLimit: z.number().int().min(1024).optional(),
});

export type SimulatorOptions = z.input<typeof optionsSchema>;

/** Usage exactly as the simulator reported it to the client. */
export interface SimulatedUsage {
  input_tokens: number;
  output_tokens: number;
  cache_creation_input_tokens: number;
  cache_read_input_tokens: number;
}

export type SimulatedOutcome = 'complete' | 'error' | 'reset' | 'aborted' | 'malformed';

/** One served request, newest last in `Simulator.requests`. */
export interface SimulatedRequest {
  /** The `request-id` header sent back. */
  requestId: string;
  method: string;
  /** Path without the query string. */
  path: string;
  /** The credential presented (x-api-key or Bearer), or null when none. */
  key: string | null;
  model: string | null;
  stream: boolean;
  status: number;
  /**
   * The last usage the client was told: the final usage of a complete answer, the
   * `message_start` usage of a stream cut short, null when no usage was sent (errors,
   * count_tokens, models).
   */
  usage: SimulatedUsage | null;
  outcome: SimulatedOutcome;
  /** The `id` of every fault applied to this request. */
  faultIds: string[];
  /** Epoch ms when the request arrived. */
  at: number;
}
