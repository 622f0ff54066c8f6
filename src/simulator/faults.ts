/**
 * Fault resolution: per key (`setKeyFaults`), per request (`x-sim-fault` header) and per
 * message (`<<sim:{…}>>` in the last user text). Later sources override earlier ones field by
 * field: key, then header, then directive.
 *
 * `times`: a fault with `times: N` applies to the first N requests carrying it, counted by
 * this book under the fault's `id` (or, without an id, the key for key faults and the fault's
 * JSON text for request faults). Counting happens when a request resolves its faults, so
 * "fail twice then succeed" is two failures then success, whatever the endpoint.
 */
import { SimulatedHttpError } from './errors.js';
import { faultSchema } from './types.js';
import type { SimulatedFault } from './types.js';

const NONE: Readonly<SimulatedFault> = Object.freeze({});

export interface ResolvedFault {
  fault: SimulatedFault;
  /** Ids of the faults applied (explicit `id`s only). */
  ids: string[];
}

const EMPTY: ResolvedFault = Object.freeze({ fault: NONE, ids: Object.freeze([]) as unknown as string[] });

/** Parses a fault from JSON text; a 400 naming the source when it is not a valid fault. */
export function parseFault(json: string, source: string): SimulatedFault {
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch {
    throw new SimulatedHttpError(400, `${source}: invalid JSON`);
  }
  const result = faultSchema.safeParse(value);
  if (!result.success) {
    const issue = result.error.issues[0]!;
    throw new SimulatedHttpError(400, `${source}: ${issue.path.join('.') || 'fault'}: ${issue.message}`);
  }
  return result.data;
}

/** The faults of one simulator; owned by it, cleared by `reset()`. */
export class FaultBook {
  private readonly byKey = new Map<string, SimulatedFault>();
  private readonly counts = new Map<string, number>();

  /** Sets (or, with undefined, clears) the fault for a key and restarts its `times` count. */
  setKeyFaults(key: string, fault: SimulatedFault | undefined): void {
    if (fault === undefined) {
      this.byKey.delete(key);
      return;
    }
    const parsed = faultSchema.parse(fault);
    this.byKey.set(key, parsed);
    this.counts.delete(parsed.id ?? `key:${key}`);
  }

  reset(): void {
    this.byKey.clear();
    this.counts.clear();
  }

  /**
   * The merged fault for one request. Throws a 400 when the header or directive is invalid.
   * Consumes one use of every `times`-limited fault that applies.
   */
  resolve(key: string | null, header: string | undefined, directive: string | undefined): ResolvedFault {
    const keyFault = key === null || this.byKey.size === 0 ? undefined : this.byKey.get(key);
    if (keyFault === undefined && header === undefined && directive === undefined) return EMPTY;
    let fault: SimulatedFault = NONE;
    const ids: string[] = [];
    const apply = (f: SimulatedFault, counter: string) => {
      if (f.times !== undefined) {
        const used = this.counts.get(counter) ?? 0;
        if (used >= f.times) return;
        this.counts.set(counter, used + 1);
      }
      if (f.id !== undefined) ids.push(f.id);
      fault = { ...fault, ...f };
    };
    if (keyFault) apply(keyFault, keyFault.id ?? `key:${key}`);
    if (header !== undefined) {
      const f = parseFault(header, 'x-sim-fault');
      apply(f, f.id ?? header);
    }
    if (directive !== undefined) {
      const f = parseFault(directive, '<<sim:>> directive');
      apply(f, f.id ?? directive);
    }
    return { fault, ids };
  }
}
