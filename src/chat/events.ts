/** Turns the relayed SSE bytes into Anthropic stream events, for doors that speak JSON frames. */
import { createParser } from 'eventsource-parser';

export interface ChatEvent {
  event: string;
  // The Anthropic stream event exactly as upstream sent it.
  data: Record<string, unknown>;
}

export const ChatEvents = {
  /** Yields each complete event in order; unparseable data is skipped (the tap logs it). */
  async *parse(chunks: AsyncIterable<Uint8Array>): AsyncGenerator<ChatEvent> {
    const ready: ChatEvent[] = [];
    const decoder = new TextDecoder();
    const parser = createParser({
      onEvent: (e) => {
        try {
          const data = JSON.parse(e.data) as Record<string, unknown>;
          ready.push({ event: e.event ?? String(data.type ?? 'message'), data });
        } catch {
          // Malformed upstream data: not forwarded as an event.
        }
      },
    });
    for await (const chunk of chunks) {
      parser.feed(decoder.decode(chunk, { stream: true }));
      while (ready.length > 0) yield ready.shift()!;
    }
  },
};
