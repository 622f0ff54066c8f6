/**
 * One chat: an async iterable of Anthropic stream events, callbacks, the accumulated final
 * message and cancel. The client feeds it frames; it guarantees each seq reaches the
 * caller at most once and in order (frames at or below the last seq are dropped, which
 * makes a replay after `chat.resume` invisible).
 */
import type { PortcullisError } from './errors.js';
import type { Message, StreamEvent, Usage } from './message.js';
import { MessageAccumulator } from './message.js';

/** How a chat ended without error. */
export interface ChatResult {
  outcome: 'complete' | 'cancelled';
  usage: Usage | null;
  stopReason: string | null;
}

export interface ChatCallbacks {
  /** Every Anthropic event, in order. */
  onEvent?(event: StreamEvent): void;
  /** Each text delta, with the text so far. */
  onText?(delta: string, snapshot: string): void;
  /** The chat ended (complete or cancelled) with its accumulated message (null if none started). */
  onDone?(result: ChatResult, message: Message | null): void;
  /** The chat failed. */
  onError?(error: PortcullisError): void;
}

type Ending = { kind: 'done'; result: ChatResult } | { kind: 'error'; error: PortcullisError };

export class ChatStream implements AsyncIterable<StreamEvent> {
  /** Highest seq delivered to the caller; -1 before the first event. */
  lastSeq = -1;
  /** Whether the server has been sent this chat (so a reconnect resumes instead of starting). */
  sent = false;
  /** Whether the chat was sent again after an empty resume (at most once). */
  restarted = false;
  /** Set by cancel(); the client sends `chat.cancel` when it can. */
  cancelRequested = false;
  private readonly events: StreamEvent[] = [];
  private readonly accumulator = new MessageAccumulator();
  private ending: Ending | null = null;
  private wake: (() => void) | null = null;
  private readonly settled: Promise<Ending>;
  private resolveSettled!: (e: Ending) => void;

  constructor(
    readonly id: string,
    readonly request: Record<string, unknown>,
    private readonly callbacks: ChatCallbacks,
    private readonly onCancel: (chat: ChatStream) => void,
  ) {
    this.settled = new Promise((resolve) => (this.resolveSettled = resolve));
  }

  /** Whether the chat has ended (done or error). */
  get finished(): boolean {
    return this.ending !== null;
  }

  /** The message accumulated so far (null before `message_start`). */
  get currentMessage(): Message | null {
    return this.accumulator.message;
  }

  /** The text accumulated so far. */
  get text(): string {
    return this.accumulator.text();
  }

  /** @internal Delivers one event frame; returns false when it was a duplicate. */
  pushEvent(seq: number, event: StreamEvent): boolean {
    if (this.ending || seq <= this.lastSeq) return false;
    this.lastSeq = seq;
    this.events.push(event);
    const text = this.accumulator.apply(event);
    this.callbacks.onEvent?.(event);
    if (text !== null) this.callbacks.onText?.(text, this.accumulator.text());
    this.notify();
    return true;
  }

  /** @internal Ends the chat successfully. */
  finish(result: ChatResult): void {
    if (this.ending) return;
    this.ending = { kind: 'done', result };
    this.resolveSettled(this.ending);
    this.callbacks.onDone?.(result, this.accumulator.message);
    this.notify();
  }

  /** @internal Ends the chat with an error. */
  fail(error: PortcullisError): void {
    if (this.ending) return;
    this.ending = { kind: 'error', error };
    this.resolveSettled(this.ending);
    this.callbacks.onError?.(error);
    this.notify();
  }

  /** Asks the server to stop the reply; the chat then ends with outcome `cancelled`. */
  cancel(): void {
    if (this.ending || this.cancelRequested) return;
    this.cancelRequested = true;
    this.onCancel(this);
  }

  /** Resolves with how the chat ended; rejects with the chat's typed error. */
  async done(): Promise<ChatResult> {
    const ending = await this.settled;
    if (ending.kind === 'error') throw ending.error;
    return ending.result;
  }

  /**
   * The message accumulated from every event, like the SDK's `finalMessage()`. A cancelled
   * chat resolves with what arrived before it stopped; a failed chat rejects.
   */
  async finalMessage(): Promise<Message> {
    await this.done();
    const message = this.accumulator.message;
    if (!message) throw new Error(`chat ${this.id} ended before message_start`);
    return message;
  }

  /** The final message's text blocks joined. */
  async finalText(): Promise<string> {
    await this.finalMessage();
    return this.accumulator.text();
  }

  /** Every event from the first, in order; throws the chat's error after the last event. */
  async *[Symbol.asyncIterator](): AsyncIterator<StreamEvent> {
    let index = 0;
    for (;;) {
      while (index < this.events.length) yield this.events[index++]!;
      if (this.ending) {
        if (this.ending.kind === 'error') throw this.ending.error;
        return;
      }
      await new Promise<void>((resolve) => {
        const previous = this.wake;
        this.wake = () => {
          previous?.();
          resolve();
        };
      });
    }
  }

  private notify(): void {
    const wake = this.wake;
    this.wake = null;
    wake?.();
  }
}
