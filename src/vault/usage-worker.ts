/**
 * The usage writer's worker thread (see usage-writer.ts): its own connection to the SQLite
 * file, one prepared INSERT, one transaction (one commit) per batch. The main thread posts
 * `{ id, rows }` (an array of arrays of values in USAGE_VALUE_COLUMNS order; this thread
 * gives each row its id) and gets `{ id }` back once the batch is committed, or
 * `{ id, error }` when it could not be.
 */
import { parentPort, workerData } from 'node:worker_threads';
import SQLite from 'better-sqlite3';
import { USAGE_COLUMNS, nextUsageId } from './usage-columns.js';

if (parentPort) {
  const port = parentPort;
  const db = new SQLite((workerData as { path: string }).path);
  db.pragma('busy_timeout = 5000');
  const insert = db.prepare(`insert into usage_records (${USAGE_COLUMNS.join(', ')}) values (${USAGE_COLUMNS.map(() => '?').join(', ')})`);
  const insertAll = db.transaction((rows: unknown[][]) => {
    for (const row of rows) insert.run(nextUsageId(), row);
  });
  port.on('message', (message: { id: number; rows: unknown[][] } | { close: true }) => {
    if ('close' in message) {
      db.close();
      port.close();
      return;
    }
    try {
      insertAll(message.rows);
      port.postMessage({ id: message.id });
    } catch (err) {
      port.postMessage({ id: message.id, error: err instanceof Error ? err.message : String(err) });
    }
  });
}
