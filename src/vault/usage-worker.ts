/**
 * The usage writer's worker thread (see usage-writer.ts): its own connection to the SQLite
 * file, one prepared INSERT, one transaction (one commit, one fsync) per batch. The main
 * thread posts `{ id, rows }` (the rows as one JSON string) and gets `{ id }` back once the
 * batch is committed, or `{ id, error }` when it could not be.
 */
import { parentPort, workerData } from 'node:worker_threads';
import SQLite from 'better-sqlite3';

const USAGE_COLUMNS = [
  'id', 'request_id', 'user_id', 'session_id', 'personal_token_id', 'key_id', 'model', 'stream',
  'input_tokens', 'output_tokens', 'cache_creation_input_tokens', 'cache_read_input_tokens',
  'status', 'outcome', 'error_type', 'latency_ms', 'ttfb_ms', 'retries', 'fallback', 'created_at',
] as const;

if (parentPort) {
  const port = parentPort;
  const db = new SQLite((workerData as { path: string }).path);
  db.pragma('busy_timeout = 5000');
  const insert = db.prepare(`insert into usage_records (${USAGE_COLUMNS.join(', ')}) values (${USAGE_COLUMNS.map((c) => `@${c}`).join(', ')})`);
  const insertAll = db.transaction((rows: Record<string, unknown>[]) => {
    for (const row of rows) insert.run(row);
  });
  port.on('message', (message: { id: number; rows: string } | { close: true }) => {
    if ('close' in message) {
      db.close();
      port.close();
      return;
    }
    try {
      insertAll(JSON.parse(message.rows) as Record<string, unknown>[]);
      port.postMessage({ id: message.id });
    } catch (err) {
      port.postMessage({ id: message.id, error: err instanceof Error ? err.message : String(err) });
    }
  });
}
