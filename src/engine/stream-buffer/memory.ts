import { notifyListeners } from './port.js';
import type { StreamBuffer, StreamEntry, StreamListener, StreamRead } from './port.js';

interface Stream {
  entries: StreamEntry[];
  /** Seq of entries[0] minus one when older entries were dropped; -1 when none were. */
  droppedThrough: number;
  ended: boolean;
  ttlMs: number;
  expiresAt: number;
  listeners: Set<StreamListener>;
}

export interface MemoryStreamBufferOptions {
  /** Entries kept per stream; older ones are dropped (resume from before them fails). */
  maxEvents?: number;
  now?: () => number;
  /** How often expired streams are swept. Default 5 s. */
  sweepIntervalMs?: number;
  /** A listener that threw (it is skipped; the others and the write go on), as in the Redis buffer. */
  onError?: (err: unknown) => void;
}

/** The in-process ring buffer: one array per stream, swept for expiry on a timer. */
export class MemoryStreamBuffer implements StreamBuffer {
  private readonly streams = new Map<string, Stream>();
  private readonly maxEvents: number;
  private readonly now: () => number;
  private readonly sweeper: NodeJS.Timeout;
  private readonly onError: (err: unknown) => void;

  constructor(options: MemoryStreamBufferOptions = {}) {
    this.maxEvents = options.maxEvents ?? 10_000;
    this.now = options.now ?? Date.now;
    this.onError = options.onError ?? (() => {});
    this.sweeper = setInterval(() => this.sweep(), options.sweepIntervalMs ?? 5_000);
    this.sweeper.unref();
  }

  async open(key: string, ttlMs: number): Promise<void> {
    const old = this.streams.get(key);
    this.streams.set(key, { entries: [], droppedThrough: -1, ended: false, ttlMs, expiresAt: this.now() + ttlMs, listeners: old?.listeners ?? new Set() });
  }

  async append(key: string, entry: StreamEntry): Promise<void> {
    const stream = this.live(key);
    if (!stream || stream.ended) return;
    this.push(stream, entry);
    stream.expiresAt = this.now() + stream.ttlMs;
    notifyListeners(stream.listeners, entry, false, this.onError);
  }

  async end(key: string, last: StreamEntry, ttlMs: number): Promise<void> {
    const stream = this.live(key);
    if (!stream || stream.ended) return;
    this.push(stream, last);
    stream.ended = true;
    stream.expiresAt = this.now() + ttlMs;
    notifyListeners(stream.listeners, last, true, this.onError);
  }

  async read(key: string, afterSeq: number): Promise<StreamRead | null> {
    const stream = this.live(key);
    if (!stream) return null;
    if (afterSeq < stream.droppedThrough) return null;
    return { entries: stream.entries.filter((e) => e.seq > afterSeq), ended: stream.ended };
  }

  async last(key: string): Promise<{ seq: number; ended: boolean } | null> {
    const stream = this.live(key);
    if (!stream) return null;
    return { seq: stream.entries.at(-1)?.seq ?? stream.droppedThrough, ended: stream.ended };
  }

  async subscribe(key: string, listener: StreamListener): Promise<() => void> {
    let stream = this.streams.get(key);
    if (!stream) {
      // Listening before the stream opens is allowed; the placeholder expires like any stream.
      stream = { entries: [], droppedThrough: -1, ended: false, ttlMs: 0, expiresAt: this.now(), listeners: new Set() };
      this.streams.set(key, stream);
    }
    const own: StreamListener = (entry, ended) => listener(entry, ended);
    stream.listeners.add(own);
    return () => {
      this.streams.get(key)?.listeners.delete(own);
    };
  }

  async delete(key: string): Promise<void> {
    this.streams.delete(key);
  }

  async close(): Promise<void> {
    clearInterval(this.sweeper);
    this.streams.clear();
  }

  /** How many streams are held (tests, metrics). */
  size(): number {
    return this.streams.size;
  }

  private push(stream: Stream, entry: StreamEntry): void {
    stream.entries.push(entry);
    if (stream.entries.length > this.maxEvents) {
      const dropped = stream.entries.splice(0, stream.entries.length - this.maxEvents);
      stream.droppedThrough = dropped[dropped.length - 1]!.seq;
    }
  }

  private live(key: string): Stream | undefined {
    const stream = this.streams.get(key);
    if (!stream || stream.expiresAt > this.now()) return stream;
    // Expired: forget it unless someone still listens (a placeholder awaiting `open`).
    if (stream.listeners.size === 0) this.streams.delete(key);
    return undefined;
  }

  private sweep(): void {
    const now = this.now();
    for (const [key, stream] of this.streams) {
      if (stream.expiresAt <= now && stream.listeners.size === 0) this.streams.delete(key);
    }
  }
}
