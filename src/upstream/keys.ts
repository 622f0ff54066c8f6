/**
 * What the upstream caller (resilient.ts) needs of the key vault (vault/vault.ts implements
 * it; demo mode lends the simulator's key through it too).
 */
/** A decrypted upstream key lent for one attempt; release() exactly once when the attempt ends. */
export interface KeyLease {
  keyId: string;      // stable id of the key record, e.g. key_…
  name: string;       // operator's name for the key (logs, headers)
  secret: string;     // the decrypted API key: never log it
  release(): void;
}
/** Where the upstream caller gets keys. Implementations pick among enabled keys allowed for the model. */
export interface KeySource {
  /** A key for `model`, skipping ids in `exclude` and keys whose circuit is open (ask `isHealthy`). Undefined when none is left. */
  pick(model: string, exclude: ReadonlySet<string>, isHealthy: (keyId: string) => boolean): KeyLease | undefined;
  /** How many enabled keys exist at all (0 means "not configured", distinct from "all unhealthy"). */
  count(): number;
}
