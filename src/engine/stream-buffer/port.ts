/**
 * The stream buffer: every event of a running chat, numbered, kept for a short while so a
 * client that lost its socket can resume from the last sequence number it saw.
 *
 * Guarantees (every implementation):
 * - Entries of one stream are kept in `seq` order; `append` takes strictly increasing seqs
 *   (the single producer of a stream numbers them).
 * - `read(key, afterSeq)` is all or nothing: either every entry with seq > afterSeq that was
 *   ever appended, or `null` (stream unknown, expired, or older entries already dropped
 *   because the stream outgrew `maxEvents`). Never a silent gap.
 * - `subscribe` delivers every entry appended after it returns, in order. A reader that
 *   subscribes first, then reads, then drops entries with seq ≤ the last one it handled
 *   sees every entry exactly once (the recipe `realtime/chats.ts` follows).
 * - A stream lives until `end`, then `ttlMs` more; a stream never ended expires
 *   `ttlMs` after its last append (its producer died).
 */
export interface StreamEntry {
  seq: number;
  /** The frame to send, as JSON-serialisable data. */
  frame: Record<string, unknown>;
}

export interface StreamRead {
  entries: StreamEntry[];
  /** True once the producer called `end`: no entry will follow. */
  ended: boolean;
}

export type StreamListener = (entry: StreamEntry, ended: boolean) => void;

/** Calls each listener with an entry; one that throws is reported to `onError` and stops neither the others nor the write that called them. */
export function notifyListeners(listeners: Iterable<StreamListener>, entry: StreamEntry, ended: boolean, onError: (err: unknown) => void): void {
  for (const listener of [...listeners]) {
    try {
      listener(entry, ended);
    } catch (err) {
      onError(err);
    }
  }
}

export interface StreamBuffer {
  /** Starts (or restarts, dropping old entries) a stream. */
  open(key: string, ttlMs: number): Promise<void>;
  append(key: string, entry: StreamEntry): Promise<void>;
  /** Appends the last entry and marks the stream ended; it is kept `ttlMs` more. */
  end(key: string, last: StreamEntry, ttlMs: number): Promise<void>;
  read(key: string, afterSeq: number): Promise<StreamRead | null>;
  /**
   * The seq of the last entry appended (-1 before any) and whether the stream ended, even
   * when older entries were dropped; null when the stream is unknown or expired.
   */
  last(key: string): Promise<{ seq: number; ended: boolean } | null>;
  /** Listens to entries appended from now on; the function returned unsubscribes. */
  subscribe(key: string, listener: StreamListener): Promise<() => void>;
  /** Forgets a stream at once. */
  delete(key: string): Promise<void>;
  close(): Promise<void>;
}
