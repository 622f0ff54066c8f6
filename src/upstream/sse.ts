/**
 * The SSE tap: upstream's stream bytes go to the client exactly as received (no buffering, no
 * re-serialisation; each chunk is yielded the moment it arrives) while a parser reads the same
 * bytes alongside to learn usage, the stop reason and any mid-stream `event: error`.
 *
 * Usage rules (REFERENCE.md): input and cache tokens come from `message_start.message.usage`;
 * `message_delta.usage` is cumulative, gives the final output tokens and may also carry input
 * and cache tokens (which then win). Usage is read from parsed JSON, never matched by byte
 * layout. Unknown events pass through untouched and are ignored by the parser.
 */
import { StringDecoder } from 'node:string_decoder';
import { createParser } from 'eventsource-parser';
import type { EventSourceParser } from 'eventsource-parser';
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
 * Events the tap passes without reading their data (named by upstream's `event:` line), as
 * bytes: most of a stream's events, recognised without decoding them.
 */
const CONTENT_EVENTS = ['content_block_delta', 'ping', 'content_block_start', 'content_block_stop'];
/** Each content event's name line and the start of its data line, as bytes: one comparison reads both. */
const CONTENT_HEADS: readonly Uint8Array[] = CONTENT_EVENTS.map((name) => Buffer.from(`${name}\ndata: `));

const LF = 0x0a;
const CR = 0x0d;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const EVENT_FIELD = Buffer.from('event: ');
const DATA_FIELD = Buffer.from('data: ');
/** Longest event name the fast path reads (Anthropic's are under 32 bytes). */
const MAX_NAME = 64;
/** Bytes of an unfinished event kept between chunks before the tap hands the stream to the full parser. */
const MAX_PENDING = 64 * 1024;

/** `buf[at, at + bytes.length)` equals `bytes` (a few bytes: a loop beats a native call). */
function startsWith(buf: Uint8Array, at: number, bytes: Uint8Array): boolean {
  if (at + bytes.length > buf.length) return false;
  for (let i = 0; i < bytes.length; i++) if (buf[at + i] !== bytes[i]) return false;
  return true;
}

/**
 * Parses events from a stream's bytes; `summary()` is readable at any time.
 *
 * Events in the form Anthropic sends (`event: NAME\ndata: JSON\n\n`, LF line ends) are read
 * from the bytes as they are: a content event is recognised by its name's bytes and checked
 * for the shape of a JSON object by its data's first and last byte, so it costs no decoding
 * and no allocation; only the few other events have their data decoded and parsed. Any other
 * framing (comments, several data lines, other fields, a BOM) goes through eventsource-parser
 * one whole event at a time, and from the first CR on (CRLF or CR line ends), or an event
 * larger than MAX_PENDING, the rest of the stream does.
 */
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
  /** The bytes of an event not yet complete (a copy), read again with the next chunk. */
  private pending: Buffer | undefined;
  /** The full parser, made when the stream first needs it; with `decoder`, it reads everything from then on when `whole` is set. */
  private parser: EventSourceParser | undefined;
  private decoder: StringDecoder | undefined;
  private whole = false;

  /** Feeds raw bytes (any split, even mid UTF-8 character). */
  push(chunk: Uint8Array): void {
    let buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    if (this.whole) return this.feedWhole(buf);
    if (this.pending) {
      buf = Buffer.concat([this.pending, buf]);
      this.pending = undefined;
    }
    if (buf.indexOf(CR) !== -1) return this.feedWhole(buf);
    const end = this.read(buf);
    if (end === buf.length) return;
    if (buf.length - end > MAX_PENDING) return this.feedWhole(buf.subarray(end));
    this.pending = Buffer.from(buf.subarray(end));
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

  /** Reads the complete events of `buf` (LF line ends only); returns where the unfinished rest starts. */
  private read(buf: Buffer): number {
    let pos = 0;
    while (pos < buf.length) {
      if (buf[pos] === LF) {
        pos++; // a blank line between events
        continue;
      }
      const next = this.readCanonical(buf, pos);
      if (next > 0) {
        pos = next;
        continue;
      }
      if (next === 0) return pos; // unfinished
      // Another framing: this whole event through the full parser.
      const end = buf.indexOf('\n\n', pos);
      if (end === -1) return pos;
      this.feedParser(buf.toString('utf8', pos, end + 2));
      pos = end + 2;
    }
    return pos;
  }

  /**
   * Reads an `event: NAME\ndata: DATA\n\n` event at `pos`; returns the position after it,
   * 0 when the bytes end before it does, -1 when the event has another form.
   */
  private readCanonical(buf: Buffer, pos: number): number {
    if (!startsWith(buf, pos, EVENT_FIELD)) return buf.length - pos < EVENT_FIELD.length && EVENT_FIELD.subarray(0, buf.length - pos).equals(buf.subarray(pos)) ? 0 : -1;
    const nameStart = pos + EVENT_FIELD.length;
    // A content event's name line and data prefix in one comparison; any other name is scanned.
    let dataStart = -1;
    for (const head of CONTENT_HEADS) {
      if (startsWith(buf, nameStart, head)) {
        dataStart = nameStart + head.length;
        break;
      }
    }
    const content = dataStart !== -1;
    let nameEnd = nameStart;
    if (!content) {
      while (nameEnd < buf.length && buf[nameEnd] !== LF) if (++nameEnd - nameStart > MAX_NAME) return -1;
      if (nameEnd + 1 + DATA_FIELD.length > buf.length) return 0;
      if (nameEnd === nameStart || !startsWith(buf, nameEnd + 1, DATA_FIELD)) return -1;
      dataStart = nameEnd + 1 + DATA_FIELD.length;
    }
    const dataEnd = buf.indexOf(LF, dataStart);
    if (dataEnd === -1 || dataEnd + 1 >= buf.length) return 0;
    if (buf[dataEnd + 1] !== LF) return -1; // more lines in this event
    this.state.events += 1;
    // Empty data fails the check too: its first byte is the LF, its last the space of `data: `.
    if (content) this.checkContent(buf[dataStart], buf[dataEnd - 1]);
    else this.onEvent(buf.toString('utf8', nameStart, nameEnd), buf.toString('utf8', dataStart, dataEnd));
    return dataEnd + 2;
  }

  private feedParser(text: string): void {
    this.parser ??= createParser({
      onEvent: (e) => {
        this.state.events += 1;
        this.onEvent(e.event || undefined, e.data);
      },
    });
    this.parser.feed(text);
  }

  /** Everything from here on through the full parser. */
  private feedWhole(buf: Buffer): void {
    this.whole = true;
    this.decoder ??= new StringDecoder('utf8');
    this.feedParser(this.decoder.write(buf));
  }

  /**
   * Content events carry no usage or status: their data is only checked for the shape of a
   * whole JSON object, by its first and last character (a truncated event is still flagged).
   */
  private checkContent(first: number | undefined, last: number | undefined): void {
    if (first !== OPEN_BRACE || last !== CLOSE_BRACE) this.state.malformed = true;
  }

  /** A decoded event (content events arriving in another framing included). */
  private onEvent(name: string | undefined, data: string): void {
    if (name !== undefined && CONTENT_EVENTS.includes(name)) {
      this.checkContent(data.charCodeAt(0), data.charCodeAt(data.length - 1));
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
