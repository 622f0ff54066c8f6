/**
 * How the limiter names what it keeps in the store: each user's keys (`u:{id}:…`; the braces
 * keep a user's keys in one Redis Cluster slot), the key of a user's allowance, and the group
 * an IP address is limited by.
 */
import { isIPv6 } from 'node:net';
import type { TierLimits } from './tiers.js';

/** Users whose store keys are kept made (past it the cache starts again empty). */
const MAX_CACHED_USER_KEYS = 10_000;

export interface UserKeys {
  user: string;
  rpm: string;
  rpd: string;
  tpm: string;
  streams: string;
  /** The allowance key (user and limits) last made, and the limits it was made for. */
  leasable?: { key: string; rpm: number; rpd: number; tpm: number };
}

/**
 * Each user's store keys, made once: a key built afresh for every request has to be
 * flattened, hashed and compared again by every lookup (about a fifth of the in-process
 * store's time per check, measured in a CPU profile of the gateway).
 */
export class UserKeyCache {
  private readonly keys = new Map<string, UserKeys>();

  of(userId: string): UserKeys {
    let keys = this.keys.get(userId);
    if (keys === undefined) {
      const user = `u:{${userId}}`;
      keys = { user, rpm: `${user}:rpm`, rpd: `${user}:rpd`, tpm: `${user}:tpm`, streams: `${user}:streams` };
      if (this.keys.size >= MAX_CACHED_USER_KEYS) this.keys.clear();
      this.keys.set(userId, keys);
    }
    return keys;
  }
}

/** The allowances' key for a user under these limits (a change of limits starts a new allowance). */
export function leasableKey(keys: UserKeys, limits: TierLimits): string {
  const last = keys.leasable;
  if (last !== undefined && last.rpm === limits.rpm && last.rpd === limits.rpd && last.tpm === limits.tpm) return last.key;
  keys.leasable = { key: `${keys.user}|${limits.rpm}|${limits.rpd}|${limits.tpm}`, rpm: limits.rpm, rpd: limits.rpd, tpm: limits.tpm };
  return keys.leasable.key;
}

/** IPv4 as is; IPv6 by its /64 (one subscriber's allocation), IPv4-mapped IPv6 as IPv4. */
export function ipGroup(ip: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  if (mapped) return mapped[1]!;
  if (!isIPv6(ip)) return ip;
  const [head = '', tail = ''] = ip.split('::');
  const left = head ? head.split(':') : [];
  const right = tail ? tail.split(':') : [];
  const full = ip.includes('::') ? [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right] : left;
  return `${full.slice(0, 4).map((h) => parseInt(h, 16).toString(16)).join(':')}::/64`;
}
