import type { Bus, BusHandler } from './port.js';

/** The in-process bus: one instance, delivery on the next microtask. */
export class MemoryBus implements Bus {
  private readonly topics = new Map<string, Set<BusHandler>>();

  constructor(private readonly onHandlerError: (err: unknown, topic: string) => void = () => {}) {}

  async publish(topic: string, payload: unknown): Promise<void> {
    const handlers = this.topics.get(topic);
    if (!handlers || handlers.size === 0) return;
    // A copy per publish, as a remote transport would deliver it.
    const copy = structuredClone(payload);
    await Promise.resolve();
    for (const handler of [...handlers]) {
      try {
        handler(copy);
      } catch (err) {
        this.onHandlerError(err, topic);
      }
    }
  }

  async subscribe(topic: string, handler: BusHandler): Promise<() => void> {
    let handlers = this.topics.get(topic);
    if (!handlers) this.topics.set(topic, (handlers = new Set()));
    const own = (payload: unknown) => handler(payload);
    handlers.add(own);
    return () => {
      const set = this.topics.get(topic);
      set?.delete(own);
      if (set && set.size === 0) this.topics.delete(topic);
    };
  }

  async close(): Promise<void> {
    this.topics.clear();
  }
}
