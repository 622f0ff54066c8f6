/**
 * Anthropic stream events and the accumulator that turns them into the final message, the
 * way the official SDK's `MessageStream.finalMessage()` does: text, thinking and signatures
 * concatenated, tool inputs parsed from their JSON deltas, `message_delta` applied last.
 */

/** One Anthropic stream event as the gateway relays it (`message_start`, `content_block_delta`, …). */
export interface StreamEvent {
  type: string;
  [key: string]: unknown;
}

export interface Usage {
  input_tokens: number;
  output_tokens: number;
  cache_creation_input_tokens?: number | null;
  cache_read_input_tokens?: number | null;
  [key: string]: unknown;
}

export interface ContentBlock {
  type: string;
  text?: string;
  thinking?: string;
  signature?: string;
  input?: unknown;
  citations?: unknown[];
  [key: string]: unknown;
}

export interface Message {
  id: string;
  type: 'message';
  role: 'assistant';
  model: string;
  content: ContentBlock[];
  stop_reason: string | null;
  stop_sequence: string | null;
  usage: Usage;
  [key: string]: unknown;
}

function clone<T>(value: T): T {
  return JSON.parse(JSON.stringify(value)) as T;
}

/** Folds stream events into a message; `message` is null until `message_start`. */
export class MessageAccumulator {
  message: Message | null = null;
  private readonly json = new Map<number, string>();

  /** Applies one event; returns the text it added (for `text` callbacks), if any. */
  apply(event: StreamEvent): string | null {
    switch (event.type) {
      case 'message_start':
        this.message = clone(event.message as Message);
        this.message.content ??= [];
        return null;
      case 'content_block_start': {
        const index = event.index as number;
        const block = clone(event.content_block as ContentBlock);
        if (block.type === 'tool_use' || block.type === 'server_tool_use') this.json.set(index, '');
        if (this.message) this.message.content[index] = block;
        return null;
      }
      case 'content_block_delta':
        return this.delta(event.index as number, event.delta as Record<string, unknown>);
      case 'content_block_stop': {
        const index = event.index as number;
        const raw = this.json.get(index);
        const block = this.message?.content[index];
        if (raw !== undefined && block) block.input = raw.trim() === '' ? {} : JSON.parse(raw);
        this.json.delete(index);
        return null;
      }
      case 'message_delta': {
        if (!this.message) return null;
        const delta = (event.delta ?? {}) as { stop_reason?: string | null; stop_sequence?: string | null };
        if ('stop_reason' in delta) this.message.stop_reason = delta.stop_reason ?? null;
        if ('stop_sequence' in delta) this.message.stop_sequence = delta.stop_sequence ?? null;
        const usage = (event.usage ?? {}) as Record<string, unknown>;
        for (const [k, v] of Object.entries(usage)) if (v !== null && v !== undefined) this.message.usage[k] = v;
        return null;
      }
      default:
        return null;
    }
  }

  private delta(index: number, delta: Record<string, unknown>): string | null {
    const block = this.message?.content[index];
    if (!block) return null;
    switch (delta.type) {
      case 'text_delta':
        block.text = (block.text ?? '') + String(delta.text);
        return String(delta.text);
      case 'thinking_delta':
        block.thinking = (block.thinking ?? '') + String(delta.thinking);
        return null;
      case 'signature_delta':
        block.signature = String(delta.signature);
        return null;
      case 'input_json_delta':
        this.json.set(index, (this.json.get(index) ?? '') + String(delta.partial_json));
        return null;
      case 'citations_delta':
        block.citations = [...(block.citations ?? []), delta.citation];
        return null;
      default:
        return null;
    }
  }

  /** Every text block's text, joined. */
  text(): string {
    return (this.message?.content ?? []).filter((b) => b.type === 'text').map((b) => b.text ?? '').join('');
  }
}
