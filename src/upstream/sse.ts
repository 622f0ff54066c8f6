/**
 * The SSE tap: upstream's stream bytes go to the client exactly as received (no buffering, no
 * re-serialisation; each chunk is yielded the moment it arrives) while a parser reads the same
 * bytes alongside to learn usage, the stop reason and any mid-stream `event: error`.
 *
 * Usage rules (REFERENCE.md): input and cache tokens come from `message_start.message.usage`;
 * `message_delta.usage` is cumulative, gives the final output tokens and may also carry input
 * and cache tokens (which then win). JSON is parsed, never matched by byte layout. Unknown
 * events pass through untouched and are ignored by the parser.
 */
import { StringDecoder } from 'node:string_decoder';
import { createParser } from 'eventsource-parser';
import type { AnthropicErrorType } from '../errors/index.js';

export interface TokenUsage {
  inputTokens: number;
  outputTokens: number;
  cacheCreationInputTokens: number;
  cacheReadInputTokens: number;
}

export interface StreamSummary {
  usage: TokenUsage;
  messageId: string | null;
  model: string | null;
  stopReason: string | null;
  /** An `event: error` sent by upstream mid-stream, as sent. */
  error: { type: string; message: string } | null;
  /** `message_stop` was seen. */
  complete: boolean;
  /** Some event's data was not valid JSON (upstream sent a broken event). */
  malformed: boolean;
  events: number;
}

export function emptyUsage(): TokenUsage {
  return { inputTokens: 0, outputTokens: 0, cacheCreationInputTokens: 0, cacheReadInputTokens: 0 };
}

type RawUsage = Partial<Record<'input_tokens' | 'output_tokens' | 'cache_creation_input_tokens' | 'cache_read_input_tokens', unknown>>;

const count = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : undefined);

/** Copies the counts present in an Anthropic `usage` object onto `into`. */
function mergeUsage(into: TokenUsage, raw: unknown): void {
  if (!raw || typeof raw !== 'object') return;
  const u = raw as RawUsage;
  into.inputTokens = count(u.input_tokens) ?? into.inputTokens;
  into.outputTokens = count(u.output_tokens) ?? into.outputTokens;
  into.cacheCreationInputTokens = count(u.cache_creation_input_tokens) ?? into.cacheCreationInputTokens;
  into.cacheReadInputTokens = count(u.cache_read_input_tokens) ?? into.cacheReadInputTokens;
}

/** Usage of a non-streaming Messages answer (parsed JSON); zeros for what is missing. */
export function usageFromMessage(json: unknown): TokenUsage {
  const usage = emptyUsage();
  if (json && typeof json === 'object') mergeUsage(usage, (json as { usage?: unknown }).usage);
  return usage;
}

/**
 * Events the tap passes without reading their data (named by upstream's `event:` line).
 * Compared with `===`, not looked up in a Set: each name is a fresh substring of the stream,
 * which a Set would hash first, and these are most of a stream's events.
 */
function isContentEvent(name: string): boolean {
  return name === 'content_block_delta' || name === 'ping' || name === 'content_block_start' || name === 'content_block_stop';
}

/** Parses events from a stream's bytes; `summary()` is readable at any time. */
export class SseTap {
  private readonly state: StreamSummary = {
    usage: emptyUsage(),
    messageId: null,
    model: null,
    stopReason: null,
    error: null,
    complete: false,
    malformed: false,
    events: 0,
  };
  private readonly decoder = new StringDecoder('utf8');
  private readonly parser = createParser({ onEvent: (e) => this.onEvent(e.event, e.data) });

  /** Feeds raw bytes (any split, even mid UTF-8 character). */
  push(chunk: Uint8Array): void {
    this.parser.feed(this.decoder.write(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength)));
  }

  /** A copy of what has been learnt so far. */
  summary(): StreamSummary {
    return { ...this.state, usage: { ...this.state.usage }, error: this.state.error ? { ...this.state.error } : null };
  }

  /**
   * Yields every chunk of `source` unchanged, the moment it arrives, parsing it alongside.
   * Errors of the source (upstream reset, body timeout) are rethrown to the consumer after
   * the bytes before them were yielded; the summary stays readable.
   */
  async *pipe(source: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array, StreamSummary, undefined> {
    for await (const chunk of source) {
      this.push(chunk);
      yield chunk;
    }
    return this.summary();
  }

  private onEvent(name: string | undefined, data: string): void {
    this.state.events += 1;
    // Content events carry no usage or status, and are most of a stream: not parsed, only
    // checked for the shape of a whole JSON object (a truncated event is still flagged).
    if (name !== undefined && isContentEvent(name)) {
      if (data.charCodeAt(0) !== 123 || data.charCodeAt(data.length - 1) !== 125) this.state.malformed = true;
      return;
    }
    let json: Record<string, unknown>;
    try {
      const parsed: unknown = JSON.parse(data);
      if (!parsed || typeof parsed !== 'object') return;
      json = parsed as Record<string, unknown>;
    } catch {
      this.state.malformed = true;
      return;
    }
    const type = name ?? (typeof json.type === 'string' ? json.type : undefined);
    switch (type) {
      case 'message_start': {
        const message = json.message as { id?: unknown; model?: unknown; usage?: unknown } | undefined;
        if (message && typeof message === 'object') {
          if (typeof message.id === 'string') this.state.messageId = message.id;
          if (typeof message.model === 'string') this.state.model = message.model;
          mergeUsage(this.state.usage, message.usage);
        }
        break;
      }
      case 'message_delta': {
        mergeUsage(this.state.usage, json.usage);
        const delta = json.delta as { stop_reason?: unknown } | undefined;
        if (delta && typeof delta.stop_reason === 'string') this.state.stopReason = delta.stop_reason;
        break;
      }
      case 'message_stop':
        this.state.complete = true;
        break;
      case 'error': {
        const error = json.error as { type?: unknown; message?: unknown } | undefined;
        this.state.error = {
          type: typeof error?.type === 'string' ? error.type : 'api_error',
          message: typeof error?.message === 'string' ? error.message : '',
        };
        break;
      }
      default:
        break;
    }
  }
}

/**
 * A clean SSE error event, for when the stream to the client has started and upstream fails
 * (connection reset, body timeout, malformed event): `event: error` + Anthropic's error data.
 */
export function sseErrorEvent(type: AnthropicErrorType, message: string): string {
  return `event: error\ndata: ${JSON.stringify({ type: 'error', error: { type, message } })}\n\n`;
}
