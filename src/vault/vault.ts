/**
 * The key vault: upstream API keys, sealed at rest, decrypted only into this process's memory.
 *
 * Guarantees:
 * - `pick` never touches the database: it chooses among keys loaded by the last `reload()`
 *   (at `start()`, after every admin change made through this vault, and every
 *   `reloadIntervalMs` so instances sharing PostgreSQL see each other's changes).
 * - A lease keeps its secret usable until `release()`: rotating, disabling or removing a key
 *   stops new picks at once, while the replaced secret stays in memory until its last lease
 *   ends, and is then zeroed.
 * - Secrets are held as Buffers and zeroed when a key is disabled, removed, rotated or the
 *   vault closes. Limit: `KeyLease.secret` is a JS string (the upstream client needs a header
 *   value); strings are immutable, so those copies cannot be wiped and live until the garbage
 *   collector reuses their memory.
 * - Nothing here logs or returns a secret; admin views carry only the last four characters.
 */
import type { Config } from '../config/index.js';
import type { Db } from '../db/index.js';
import type { UpstreamKeyRow } from '../db/types.js';
import { GatewayError } from '../errors/index.js';
import { matchesGlob } from '../auth/permissions.js';
import type { MasterKeyRing } from '../security/envelope.js';
import type { KeyLease, KeySource } from '../upstream/keys.js';
import type { KeyRecord, NewKey } from './key-records.js';
import { KeyRecords, openKeySecret } from './key-records.js';
import { keyUsage } from './usage.js';
import type { KeyUsage } from './usage.js';

/** What the circuit breaker says about a key; `unknown` until it has seen traffic. */
export type KeyHealth = 'healthy' | 'unhealthy' | 'half_open' | 'unknown';

/** A key in `list()`: the record, its usage totals and its health. */
export interface KeyView extends KeyRecord {
  usage: KeyUsage;
  health: KeyHealth | string;
}

export interface KeyVaultOptions {
  db: Db;
  ring: MasterKeyRing;
  /** Health per key for `list()` (the upstream circuit breaker); default `unknown`. */
  healthOf?: (keyId: string) => KeyHealth | string;
  /** Periodic reload; 0 turns it off. Default 5000 ms. */
  reloadIntervalMs?: number;
  /** How long a rotated-out secret is kept in the database (and should stay valid upstream). Default 10 minutes. */
  previousGraceMs?: number;
  /** Reports reload failures and keys that cannot be opened (never with a secret). */
  onError?: (err: Error, keyName?: string) => void;
  /** Source of randomness in [0, 1) for weighted picks. */
  random?: () => number;
}

/** What `importFromEnv` did. */
export type ImportResult = 'unset' | 'added' | 'present' | 'name_taken';

interface Entry {
  id: string;
  name: string;
  weight: number;
  models: string[];
  fingerprint: string;
  secret: Buffer;
  leases: number;
  retired: boolean;
}

export class KeyVault implements KeySource {
  private readonly records: KeyRecords;
  private readonly options: KeyVaultOptions;
  private active = new Map<string, Entry>();
  /** Retired entries still lent out; zeroed and dropped when their last lease ends. */
  private readonly draining = new Set<Entry>();
  private timer: NodeJS.Timeout | undefined;
  private queue: Promise<void> = Promise.resolve();
  private started = false;
  private closed = false;

  constructor(options: KeyVaultOptions) {
    this.options = options;
    this.records = new KeyRecords(options.db, options.ring);
  }

  /** Loads the enabled keys and starts the periodic reload. */
  async start(): Promise<void> {
    if (this.closed) throw new Error('the key vault is closed');
    this.started = true;
    await this.reload();
    const every = this.options.reloadIntervalMs ?? 5000;
    if (every > 0 && !this.timer) {
      this.timer = setInterval(() => {
        this.reload().catch((err: Error) => this.options.onError?.(err));
      }, every);
      this.timer.unref();
    }
  }

  /** Stops the periodic reload and zeroes every secret held (leases keep their string copies). */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.queue.catch(() => {});
    for (const entry of [...this.active.values(), ...this.draining]) entry.secret.fill(0);
    this.active = new Map();
    this.draining.clear();
  }

  /**
   * Re-reads the enabled keys; decrypts only new or rotated ones. A key that fails to open
   * (its master key is missing, its row was tampered with) is skipped and reported to
   * `onError`; the others stay usable. Calls are serialized.
   */
  reload(): Promise<void> {
    const run = this.queue.then(() => this.load());
    this.queue = run.catch(() => {});
    return run;
  }

  private async load(): Promise<void> {
    if (this.closed) return;
    await this.records.dropRetiredPrevious();
    const rows = await this.records.enabledRows();
    if (this.closed) return;
    const next = new Map<string, Entry>();
    for (const row of rows) {
      const entry = this.entryFor(row);
      if (entry) next.set(row.id, entry);
    }
    for (const [id, old] of this.active) if (next.get(id) !== old) this.retire(old);
    this.active = next;
  }

  private entryFor(row: UpstreamKeyRow): Entry | undefined {
    const models = JSON.parse(row.models) as string[];
    const existing = this.active.get(row.id);
    if (existing && existing.fingerprint === row.fingerprint) {
      existing.name = row.name;
      existing.weight = Number(row.weight);
      existing.models = models;
      return existing;
    }
    try {
      const secret = openKeySecret(this.options.ring, row);
      return { id: row.id, name: row.name, weight: Number(row.weight), models, fingerprint: row.fingerprint, secret, leases: 0, retired: false };
    } catch (err) {
      this.options.onError?.(
        new GatewayError('internal', `upstream key ${row.name} (${row.id}) cannot be opened; it is not used`, { reason: 'key_unreadable', cause: err }),
        row.name,
      );
      return undefined;
    }
  }

  private retire(entry: Entry): void {
    entry.retired = true;
    if (entry.leases === 0) entry.secret.fill(0);
    else this.draining.add(entry);
  }

  /** Weighted random choice among enabled, allowed, non-excluded, healthy keys. Weight-0 keys are used only when no other key qualifies. */
  pick(model: string, exclude: ReadonlySet<string>, isHealthy: (keyId: string) => boolean): KeyLease | undefined {
    const candidates: Entry[] = [];
    for (const entry of this.active.values()) {
      if (exclude.has(entry.id)) continue;
      if (entry.models.length > 0 && !entry.models.some((glob) => matchesGlob(glob, model))) continue;
      if (!isHealthy(entry.id)) continue;
      candidates.push(entry);
    }
    if (candidates.length === 0) return undefined;
    const weighted = candidates.filter((c) => c.weight > 0);
    const pool = weighted.length > 0 ? weighted : candidates;
    const total = pool.reduce((sum, c) => sum + Math.max(c.weight, 1), 0);
    let r = (this.options.random ?? Math.random)() * total;
    let chosen = pool[pool.length - 1]!;
    for (const c of pool) {
      r -= Math.max(c.weight, 1);
      if (r < 0) {
        chosen = c;
        break;
      }
    }
    return this.lend(chosen);
  }

  private lend(entry: Entry): KeyLease {
    entry.leases += 1;
    let released = false;
    return {
      keyId: entry.id,
      name: entry.name,
      secret: entry.secret.toString('utf8'),
      release: () => {
        if (released) return;
        released = true;
        entry.leases -= 1;
        if (entry.retired && entry.leases === 0) {
          entry.secret.fill(0);
          this.draining.delete(entry);
        }
      },
    };
  }

  /** Enabled keys currently loaded (a key that cannot be opened does not count). */
  count(): number {
    return this.active.size;
  }

  /** Leases not yet released, per key id, retired secrets included (for metrics and tests). */
  inFlight(): Map<string, number> {
    const out = new Map<string, number>();
    for (const e of [...this.active.values(), ...this.draining]) out.set(e.id, (out.get(e.id) ?? 0) + e.leases);
    return out;
  }

  private async changed<T>(value: T): Promise<T> {
    if (this.started && !this.closed) await this.reload();
    return value;
  }

  /** Adds a key; validates name (`[a-z0-9_-]{1,64}`), secret (no whitespace, looks like an API key), weight (0–1000) and model globs. */
  async add(input: NewKey): Promise<KeyRecord> {
    return this.changed(await this.records.add(input));
  }

  /** Every key with its usage totals (from usage_records) and health; never a secret. */
  async list(): Promise<KeyView[]> {
    const [records, usage] = await Promise.all([this.records.list(), keyUsage(this.options.db)]);
    const health = this.options.healthOf ?? (() => 'unknown');
    return records.map((r) => ({ ...r, usage: usage.get(r.id) ?? emptyUsage(), health: health(r.id) }));
  }

  /** Replaces a key's secret; new picks use it at once, in-flight leases finish on the old one. */
  async rotate(name: string, newSecret: string): Promise<KeyRecord> {
    return this.changed(await this.records.rotate(name, newSecret, this.options.previousGraceMs ?? 600_000));
  }

  async disable(name: string): Promise<KeyRecord> {
    return this.changed(await this.records.setState(name, 'disabled'));
  }

  async enable(name: string): Promise<KeyRecord> {
    return this.changed(await this.records.setState(name, 'enabled'));
  }

  /** Deletes a key; its usage records stay (they name the key id). */
  async remove(name: string): Promise<KeyRecord> {
    return this.changed(await this.records.remove(name));
  }

  /**
   * Imports `ANTHROPIC_API_KEY` as the key `default` unless a key with the same secret
   * exists in any state (compared by SHA-256 fingerprint, nothing is decrypted). So a key
   * disabled or renamed by an operator is not brought back, and several instances starting
   * together add it once. When the name `default` holds another secret (it was rotated),
   * nothing is imported and `name_taken` is returned: the caller should warn.
   */
  async importFromEnv(config: Pick<Config, 'anthropicApiKey'>): Promise<ImportResult> {
    const secret = config.anthropicApiKey;
    if (!secret) return 'unset';
    if (await this.records.hasSecret(secret)) return 'present';
    try {
      await this.add({ name: 'default', secret });
      return 'added';
    } catch (err) {
      if (err instanceof GatewayError && err.reason === 'key_exists') return (await this.records.hasSecret(secret)) ? 'present' : 'name_taken';
      throw err;
    }
  }
}

function emptyUsage(): KeyUsage {
  return { requests: 0, errors: 0, inputTokens: 0, outputTokens: 0, cacheCreationInputTokens: 0, cacheReadInputTokens: 0, lastUsedAt: null };
}
