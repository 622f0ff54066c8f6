/**
 * The stream buffer on Redis Streams. Per stream key K (hash-tagged so both keys share a
 * Redis Cluster slot): `PREFIX{K}` a Stream whose entry ids are `0-(seq+1)` (so XRANGE by
 * seq needs no index) trimmed with an exact MAXLEN, and `PREFIX{K}:m` a hash
 * `{ttl, ended}`. Both carry PEXPIRE: the stream's ttl after each append, the end ttl after
 * `end`, so a stream whose producer died expires by itself.
 *
 * One Lua script per write appends, refreshes the expiry and PUBLISHes the entry on the bus
 * channel of the stream (atomically, so a tail never sees an entry the stream lacks).
 * Writes are batched without waiting: while one pipeline is on the wire, the next writes
 * (of every stream on this instance) queue up and leave together when it returns; a lone
 * write leaves at once. Listeners on this instance are called when their write is
 * acknowledged, in order, and skip the Redis echo of their own entries; listeners on other
 * instances get the published copy, and what pub/sub lost (it delivers at most once) is read
 * from the stream when the next copy's seq skips it. Reads wait for this instance's pending
 * writes first.
 */
import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { RedisBus } from '../bus/redis.js';
import { notifyListeners } from './port.js';
import type { StreamBuffer, StreamEntry, StreamListener, StreamRead } from './port.js';

export interface RedisStreamBufferOptions {
  redis: Redis;
  /** The bus carrying live entries to listeners on other instances. */
  bus: RedisBus;
  /** Key prefix, e.g. `portcullis:sb:`. */
  prefix: string;
  /** Entries kept per stream (exact MAXLEN). */
  maxEvents?: number;
  /** A listener that threw (it is skipped; the others and later writes go on). */
  onError?: (err: unknown) => void;
}

/** KEYS: stream, meta. ARGV: mode(open|append|end), seq, frame, ttl, maxlen, channel, message. */
const WRITE = `
local mode, ttl = ARGV[1], tonumber(ARGV[4])
if mode == 'open' then
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[2], 'ttl', ttl, 'ended', 0)
  redis.call('PEXPIRE', KEYS[2], ttl)
  return 1
end
if redis.call('HGET', KEYS[2], 'ended') ~= '0' then return 0 end
redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[5], '0-' .. (tonumber(ARGV[2]) + 1), 'f', ARGV[3])
if mode == 'end' then redis.call('HSET', KEYS[2], 'ended', 1) end
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
redis.call('PUBLISH', ARGV[6], ARGV[7])
return 1
`;

interface Write {
  key: string;
  args: (string | number)[];
  /** Delivered to this instance's listeners once written. */
  entry: StreamEntry | null;
  ended: boolean;
  resolve: () => void;
  reject: (err: unknown) => void;
}

interface TailMessage {
  origin: string;
  entry: StreamEntry;
  ended: boolean;
}

/** A stream tailed from another instance: the last seq passed on, and the messages held while a gap is read back. */
interface TailState {
  last: number | undefined;
  held: TailMessage[] | null;
}

export class RedisStreamBuffer implements StreamBuffer {
  private readonly origin = randomBytes(8).toString('hex');
  private readonly maxEvents: number;
  private readonly listeners = new Map<string, Set<StreamListener>>();
  private readonly unsubscribers = new Map<string, Promise<() => void>>();
  /** The ttl of each stream this instance opened, for its appends. */
  private readonly ttls = new Map<string, number>();
  /**
   * Per stream tailed from another instance: the last seq passed to the listeners, and the
   * messages held while a gap is filled from the stream (pub/sub delivers at most once: a
   * subscriber connection that dropped and came back missed what was published meanwhile).
   */
  private readonly tails = new Map<string, TailState>();
  private readonly onError: (err: unknown) => void;
  private queue: Write[] = [];
  private flushing: Promise<void> | null = null;

  constructor(private readonly options: RedisStreamBufferOptions) {
    this.maxEvents = options.maxEvents ?? 10_000;
    this.onError = options.onError ?? (() => {});
    options.redis.defineCommand('portcullisStreamWrite', { numberOfKeys: 2, lua: WRITE });
  }

  private keys(key: string): [string, string] {
    const base = `${this.options.prefix}{${key}}`;
    return [base, `${base}:m`];
  }

  private topic(key: string): string {
    return `sb:${key}`;
  }

  async open(key: string, ttlMs: number): Promise<void> {
    await this.write({ key, args: ['open', 0, '', ttlMs, 0, '', ''], entry: null, ended: false });
  }

  async append(key: string, entry: StreamEntry): Promise<void> {
    await this.write(this.entryWrite(key, entry, false, 0));
  }

  async end(key: string, last: StreamEntry, ttlMs: number): Promise<void> {
    await this.write(this.entryWrite(key, last, true, ttlMs));
  }

  private entryWrite(key: string, entry: StreamEntry, ended: boolean, ttlMs: number): Omit<Write, 'resolve' | 'reject'> {
    const message = JSON.stringify({ origin: this.origin, entry, ended } satisfies TailMessage);
    const channel = this.options.bus.channel(this.topic(key));
    // ttl 0 on append means "the stream's own ttl": resolved in the batch below.
    return { key, args: [ended ? 'end' : 'append', entry.seq, JSON.stringify(entry.frame), ttlMs, this.maxEvents, channel, message], entry, ended };
  }

  async read(key: string, afterSeq: number): Promise<StreamRead | null> {
    await this.settled();
    const [stream, meta] = this.keys(key);
    const start = afterSeq < 0 ? '-' : `(0-${afterSeq + 1}`;
    const result = await this.options.redis
      .multi()
      .hget(meta, 'ended')
      .xrange(stream, '-', '+', 'COUNT', 1)
      .xrange(stream, start, '+')
      .exec();
    if (!result) return null;
    for (const [err] of result) if (err) throw err;
    const ended = result[0]![1] as string | null;
    if (ended === null) return null;
    const first = result[1]![1] as [string, string[]][];
    if (first.length > 0 && afterSeq < idSeq(first[0]![0]) - 1) return null;
    const entries = (result[2]![1] as [string, string[]][]).map(([id, fields]) => ({ seq: idSeq(id), frame: JSON.parse(fields[1]!) as Record<string, unknown> }));
    return { entries, ended: ended === '1' };
  }

  async last(key: string): Promise<{ seq: number; ended: boolean } | null> {
    await this.settled();
    const [stream, meta] = this.keys(key);
    const result = await this.options.redis.multi().hget(meta, 'ended').xrevrange(stream, '+', '-', 'COUNT', 1).exec();
    if (!result) return null;
    for (const [err] of result) if (err) throw err;
    const ended = result[0]![1] as string | null;
    if (ended === null) return null;
    const newest = result[1]![1] as [string, string[]][];
    return { seq: newest.length > 0 ? idSeq(newest[0]![0]) : -1, ended: ended === '1' };
  }

  async subscribe(key: string, listener: StreamListener): Promise<() => void> {
    let set = this.listeners.get(key);
    if (!set) {
      this.listeners.set(key, (set = new Set()));
      this.unsubscribers.set(
        key,
        this.options.bus
          .subscribe(this.topic(key), (payload) => {
            const message = payload as TailMessage;
            if (message.origin !== this.origin) this.tail(key, message);
          })
          .catch(() => () => {}),
      );
    }
    const own: StreamListener = (entry, ended) => listener(entry, ended);
    set.add(own);
    await this.unsubscribers.get(key);
    return () => {
      const current = this.listeners.get(key);
      if (!current?.delete(own) || current.size > 0) return;
      this.listeners.delete(key);
      this.tails.delete(key);
      const off = this.unsubscribers.get(key);
      this.unsubscribers.delete(key);
      void off?.then((f) => f());
    };
  }

  async delete(key: string): Promise<void> {
    await this.settled();
    this.ttls.delete(key);
    await this.options.redis.del(...this.keys(key));
  }

  async close(): Promise<void> {
    await this.settled().catch(() => {});
    for (const off of this.unsubscribers.values()) void off.then((f) => f());
    this.unsubscribers.clear();
    this.listeners.clear();
  }

  /**
   * An entry published by another instance: passed on in order, each once; when its seq
   * skips some (messages lost), the missing entries are read from the stream first.
   */
  private tail(key: string, message: TailMessage): void {
    let state = this.tails.get(key);
    if (!state) this.tails.set(key, (state = { last: undefined, held: null }));
    if (state.held) {
      state.held.push(message);
      return;
    }
    const { last } = state;
    if (last !== undefined && message.entry.seq > last + 1) {
      state.held = [message];
      void this.refill(key, state, last);
      return;
    }
    this.pass(key, state, message.entry, message.ended);
  }

  private pass(key: string, state: TailState, entry: StreamEntry, ended: boolean): void {
    if (state.last !== undefined && entry.seq <= state.last) return;
    state.last = entry.seq;
    this.notify(key, entry, ended);
  }

  private async refill(key: string, state: TailState, after: number): Promise<void> {
    try {
      const missed = await this.read(key, after);
      missed?.entries.forEach((entry, i) => this.pass(key, state, entry, missed.ended && i === missed.entries.length - 1));
    } catch (err) {
      this.onError(err); // the gap stays; what follows is still passed on
    }
    const held = state.held ?? [];
    state.held = null;
    for (const m of held) this.pass(key, state, m.entry, m.ended);
  }

  /** Tells this instance's listeners of `key`; one that throws neither stops the others nor the writes after it. */
  private notify(key: string, entry: StreamEntry, ended: boolean): void {
    notifyListeners(this.listeners.get(key) ?? [], entry, ended, this.onError);
  }

  private write(w: Omit<Write, 'resolve' | 'reject'>): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ ...w, resolve, reject });
      this.flushing ??= this.flush();
    });
  }

  /** Resolves once every write queued so far has been answered. */
  private async settled(): Promise<void> {
    while (this.flushing) await this.flushing;
  }

  private async flush(): Promise<void> {
    while (this.queue.length > 0) {
      const batch = this.queue;
      this.queue = [];
      const pipeline = this.options.redis.pipeline();
      for (const w of batch) {
        if (w.args[0] === 'open') this.ttls.set(w.key, Number(w.args[3]));
        if (w.args[0] === 'append') w.args[3] = this.ttls.get(w.key) ?? 60_000;
        if (w.args[0] === 'end') this.ttls.delete(w.key);
        (pipeline as unknown as Record<string, (...a: unknown[]) => unknown>).portcullisStreamWrite!(...this.keys(w.key), ...w.args);
      }
      let results: [Error | null, unknown][] | null = null;
      let failure: unknown = null;
      try {
        results = await pipeline.exec();
      } catch (err) {
        failure = err;
      }
      batch.forEach((w, i) => {
        const err = failure ?? results?.[i]?.[0] ?? (results ? null : new Error('redis pipeline aborted'));
        if (err) {
          if (w.args[0] === 'open') this.ttls.delete(w.key); // never opened: nothing will end it
          return w.reject(err);
        }
        if (w.entry && results?.[i]?.[1] === 1) this.notify(w.key, w.entry, w.ended);
        w.resolve();
      });
    }
    this.flushing = null;
  }

}

function idSeq(id: string): number {
  return Number(id.slice(id.indexOf('-') + 1)) - 1;
}
