/**
 * The bus: fire-and-forget messages between the parts of the gateway, across instances
 * when a shared implementation (Redis pub/sub) is used. Broadcasts, kicks and chat cancels
 * go through it so that the instance holding the socket (or running the chat) acts on them.
 *
 * Guarantees (every implementation):
 * - At most once: a message published while a subscriber is not yet subscribed, or while
 *   the transport is down, is lost. Nothing is persisted.
 * - Per publisher and topic, messages arrive in publish order.
 * - A subscriber that throws does not stop delivery to the others.
 * - Payloads must be JSON-serialisable; the memory bus delivers a structured copy so that
 *   no subscriber can mutate what another sees.
 */
export type BusHandler = (payload: unknown) => void;

export interface Bus {
  /** Delivers `payload` to every subscriber of `topic` (on every instance). */
  publish(topic: string, payload: unknown): Promise<void>;
  /** Subscribes; the returned function unsubscribes (idempotent). */
  subscribe(topic: string, handler: BusHandler): Promise<() => void>;
  close(): Promise<void>;
}
