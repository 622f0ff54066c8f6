/**
 * The columns of `usage_records` in the order a usage row's values are kept: the ledger makes
 * each row as an array of values in this order (usage.ts), the SQLite writer thread inserts it
 * with positional parameters (usage-worker.ts), the Kysely writer names them (usage-writer.ts).
 */
import type { Insertable } from 'kysely';
import type { UsageRecordsTable } from '../db/types.js';

export const USAGE_COLUMNS = [
  'id', 'request_id', 'user_id', 'session_id', 'personal_token_id', 'key_id', 'model', 'stream',
  'input_tokens', 'output_tokens', 'cache_creation_input_tokens', 'cache_read_input_tokens',
  'status', 'outcome', 'error_type', 'latency_ms', 'ttfb_ms', 'retries', 'fallback', 'created_at',
] as const satisfies ReadonlyArray<keyof UsageRecordsTable>;

/** One usage row as its values, in USAGE_COLUMNS order. */
export type UsageRowValues = ValuesOf<typeof USAGE_COLUMNS>;
type Row = Insertable<UsageRecordsTable>;
type ValuesOf<Columns extends ReadonlyArray<keyof Row>> = { -readonly [I in keyof Columns]: Row[Columns[I]] };
