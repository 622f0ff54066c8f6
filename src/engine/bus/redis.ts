/**
 * The bus on Redis pub/sub (socket.io's ClusterAdapter idea: the cross-instance logic lives
 * in the callers, written once; this class only publishes and subscribes). Commands go on
 * the shared client, subscriptions on a dedicated connection (a subscribed connection can run
 * nothing else). Every instance, the publisher included, receives each message once from
 * Redis, so local and remote subscribers see the same thing, in the same order.
 *
 * While Redis is down, `publish` rejects (the caller reports it) and messages are lost, as
 * the port allows; the subscriber connection resubscribes by itself when Redis returns.
 */
import type { Redis } from 'ioredis';
import type { Bus, BusHandler } from './port.js';

export interface RedisBusOptions {
  /** Commands (PUBLISH). */
  redis: Redis;
  /** Channel prefix, e.g. `portcullis:bus:`. */
  prefix: string;
  onHandlerError?: (err: unknown, topic: string) => void;
}

export class RedisBus implements Bus {
  private readonly subscriber: Redis;
  private readonly topics = new Map<string, Set<BusHandler>>();
  private readonly onHandlerError: (err: unknown, topic: string) => void;

  constructor(private readonly options: RedisBusOptions) {
    this.onHandlerError = options.onHandlerError ?? (() => {});
    // No ready check: its INFO would be queued behind SUBSCRIBE when the first subscriptions
    // are issued while connecting, which Redis refuses in subscriber mode.
    this.subscriber = options.redis.duplicate({ enableOfflineQueue: true, maxRetriesPerRequest: null, enableReadyCheck: false, enableAutoPipelining: false });
    this.subscriber.on('error', () => {
      // Reported by the shared client's readiness probe; reconnects on its own.
    });
    this.subscriber.on('messageBuffer', (channel: Buffer, message: Buffer) => this.deliver(channel.toString(), message));
  }

  /** The Redis channel a topic travels on (scripts that publish in one round trip use it). */
  channel(topic: string): string {
    return `${this.options.prefix}${topic}`;
  }

  async publish(topic: string, payload: unknown): Promise<void> {
    await this.options.redis.publish(this.channel(topic), JSON.stringify(payload));
  }

  async subscribe(topic: string, handler: BusHandler): Promise<() => void> {
    let handlers = this.topics.get(topic);
    if (!handlers) {
      this.topics.set(topic, (handlers = new Set()));
      await this.subscriber.subscribe(this.channel(topic));
    }
    const own: BusHandler = (payload) => handler(payload);
    handlers.add(own);
    return () => {
      const set = this.topics.get(topic);
      if (!set?.delete(own) || set.size > 0) return;
      this.topics.delete(topic);
      void this.subscriber.unsubscribe(this.channel(topic)).catch(() => {});
    };
  }

  async close(): Promise<void> {
    this.topics.clear();
    this.subscriber.disconnect();
  }

  private deliver(channel: string, message: Buffer): void {
    const topic = channel.slice(this.options.prefix.length);
    const handlers = this.topics.get(topic);
    if (!handlers) return;
    for (const handler of [...handlers]) {
      try {
        // A fresh parse per handler: no subscriber can mutate what another sees.
        handler(JSON.parse(message.toString('utf8')));
      } catch (err) {
        this.onHandlerError(err, topic);
      }
    }
  }
}
