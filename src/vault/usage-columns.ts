/**
 * The columns of `usage_records` in the order the SQLite writer thread binds them: the main
 * thread posts each row as an array of values in this order (usage-writer.ts), the thread
 * inserts it with positional parameters (usage-worker.ts).
 */
import type { UsageRecordsTable } from '../db/types.js';

export const USAGE_COLUMNS = [
  'id', 'request_id', 'user_id', 'session_id', 'personal_token_id', 'key_id', 'model', 'stream',
  'input_tokens', 'output_tokens', 'cache_creation_input_tokens', 'cache_read_input_tokens',
  'status', 'outcome', 'error_type', 'latency_ms', 'ttfb_ms', 'retries', 'fallback', 'created_at',
] as const satisfies ReadonlyArray<keyof UsageRecordsTable>;
