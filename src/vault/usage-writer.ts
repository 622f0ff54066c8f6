/**
 * Where the usage ledger's batches go. On PostgreSQL (and an in-memory SQLite) through Kysely
 * on the main thread: the database works elsewhere, the event loop only waits. On a SQLite
 * file, SQLite does the work in the calling thread (B-tree inserts into the table and four
 * indexes, the changed pages appended to the write-ahead log at each commit: about 20 µs of
 * the event loop per request under load), so a worker thread with its own connection writes
 * instead, and the event loop only posts the rows. WAL mode lets the main thread's
 * connection read and write beside it.
 */
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { Insertable } from 'kysely';
import type { Db } from '../db/index.js';
import type { UsageRecordsTable } from '../db/types.js';
import { USAGE_VALUE_COLUMNS, nextUsageId } from './usage-columns.js';
import type { UsageRowValues } from './usage-columns.js';

export interface UsageRowWriter {
  /** Resolves once every row (its values in USAGE_VALUE_COLUMNS order) is committed with an id of its own; rejects when the batch failed. */
  write(rows: UsageRowValues[]): Promise<void>;
  /** Waits for writes in flight, then frees what the writer holds. */
  close(): Promise<void>;
}

/** A write's promise with the two functions that settle it (Promise.withResolvers, which Node 20 lacks). */
export interface PendingWrite {
  written: Promise<void>;
  resolve: () => void;
  reject: (err: unknown) => void;
}

export function pendingWrite(): PendingWrite {
  let resolve!: () => void;
  let reject!: (err: unknown) => void;
  const written = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { written, resolve, reject };
}

/** Kysely, on the calling thread: one multi-row INSERT per batch. */
export function kyselyUsageWriter(db: Db): UsageRowWriter {
  return {
    async write(rows) {
      const named = rows.map((values) => ({ id: nextUsageId(), ...Object.fromEntries(USAGE_VALUE_COLUMNS.map((column, i) => [column, values[i]])) }) as Insertable<UsageRecordsTable>);
      await db.insertInto('usage_records').values(named).execute();
    },
    async close() {},
  };
}

/** The worker thread: dist/vault/usage-worker.js when built; from the sources (tests, tsx), the .ts file with tsx registered in the thread first. */
function startWorker(path: string): Worker {
  if (!import.meta.url.endsWith('.ts')) return new Worker(new URL('./usage-worker.js', import.meta.url), { workerData: { path } });
  // tsx's ESM API (its package exports map `tsx/esm/api` → dist/esm/api/index.mjs).
  const tsx = pathToFileURL(join(dirname(createRequire(import.meta.url).resolve('tsx/package.json')), 'dist/esm/api/index.mjs')).href;
  const source = new URL('./usage-worker.ts', import.meta.url).href;
  const boot = `import(${JSON.stringify(tsx)}).then((tsx) => { tsx.register(); return import(${JSON.stringify(source)}); });`;
  return new Worker(boot, { eval: true, workerData: { path } });
}

/**
 * A worker thread writing into the SQLite file at `path` (usage-worker.ts). Should the
 * worker die, the batches it held are rejected and later ones go through `fallback`.
 */
export function sqliteWorkerUsageWriter(path: string, fallback: UsageRowWriter): UsageRowWriter {
  const worker = startWorker(path);
  worker.unref(); // a forgotten close() must not keep the process alive
  /** Batches posted and not yet answered: how to settle each, and its promise (for close). */
  const waiting = new Map<number, PendingWrite>();
  let nextId = 0;
  let dead: Error | undefined;
  const fail = (err: Error) => {
    dead ??= err;
    for (const w of waiting.values()) w.reject(err);
    waiting.clear();
  };
  worker.on('message', (m: { id: number; error?: string }) => {
    const w = waiting.get(m.id);
    if (!w) return;
    waiting.delete(m.id);
    if (m.error === undefined) w.resolve();
    else w.reject(new Error(`usage write failed: ${m.error}`));
  });
  worker.on('error', (err) => fail(err));
  worker.on('exit', (code) => fail(new Error(`usage writer thread exited (code ${code})`)));
  return {
    write(rows) {
      if (dead) return fallback.write(rows);
      const id = nextId++;
      const pending = pendingWrite();
      waiting.set(id, pending);
      // The arrays as they are: the structured clone of arrays of plain values costs about
      // a microsecond a row here, a third of JSON.stringify's (rows as objects cost about a
      // microsecond per field). No column names repeated per row; bound by position there.
      worker.postMessage({ id, rows });
      return pending.written;
    },
    async close() {
      worker.ref(); // the thread's answers must keep the process alive until it has exited
      await Promise.allSettled([...waiting.values()].map((w) => w.written));
      if (dead) return;
      const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
      worker.postMessage({ close: true });
      await exited;
    },
  };
}
