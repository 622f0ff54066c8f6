/**
 * The columns of `usage_records` and the order a usage row's values are kept in: the ledger
 * makes each row as an array of values in USAGE_VALUE_COLUMNS order (usage.ts); a writer adds
 * the row's id in front (`nextUsageId`) and inserts the values by position (the SQLite writer
 * thread, usage-worker.ts) or names them (the Kysely writer, usage-writer.ts).
 */
import { randomBytes } from 'node:crypto';
import type { Insertable } from 'kysely';
import type { UsageRecordsTable } from '../db/types.js';

/** Every column but the id, which the writer assigns. */
export const USAGE_VALUE_COLUMNS = [
  'request_id', 'user_id', 'session_id', 'personal_token_id', 'key_id', 'model', 'stream',
  'input_tokens', 'output_tokens', 'cache_creation_input_tokens', 'cache_read_input_tokens',
  'status', 'outcome', 'error_type', 'latency_ms', 'ttfb_ms', 'retries', 'fallback', 'created_at',
] as const satisfies ReadonlyArray<keyof UsageRecordsTable>;

/** The columns an INSERT names: the id, then the row's values. */
export const USAGE_COLUMNS = ['id', ...USAGE_VALUE_COLUMNS] as const;

/** One usage row as its values, in USAGE_VALUE_COLUMNS order. */
export type UsageRowValues = ValuesOf<typeof USAGE_VALUE_COLUMNS>;
type Row = Insertable<UsageRecordsTable>;
type ValuesOf<Columns extends ReadonlyArray<keyof Row>> = { -readonly [I in keyof Columns]: Row[Columns[I]] };

/** This thread's part of usage ids (40 random bits), and a counter after it. */
const idInstance = randomBytes(5).toString('hex');
let idCounter = 0;

/**
 * `use_` + 32 hex digits: the time (ms, 12 digits), this thread (10), a counter (10). Ids
 * grow with time, so each insert appends to the primary-key index instead of landing on a
 * random page (about a third less work per row on SQLite); unique across instances and
 * threads. Made by the writer as it writes, not on the request path.
 */
export function nextUsageId(): string {
  // Wraps at 16^10 (an integer comparison: `%` on a number this size calls C's fmod).
  idCounter = idCounter === 0xffffffffff ? 0 : idCounter + 1;
  return `use_${Date.now().toString(16).padStart(12, '0')}${idInstance}${idCounter.toString(16).padStart(10, '0')}`;
}
