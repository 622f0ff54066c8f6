/**
 * Master key rotation: re-wraps every sealed column under the ring's current master key.
 *
 * Online and restartable: rows are visited in id order, in batches, and each row is
 * re-wrapped in its own short transaction with a compare-and-set on the old value, so a row
 * changed meanwhile (a key rotated by an admin) is left alone, and a second run only touches
 * what the first did not finish. Only the small data key is re-sealed; secrets stay as they
 * are. Once a run reports `failed: 0`, the previous master keys can be removed from
 * PORTCULLIS_MASTER_KEY_PREVIOUS.
 */
import { sql } from 'kysely';
import type { Db } from '../db/index.js';
import type { MasterKeyRing } from '../security/envelope.js';
import { rewrap, sealedKeyId } from '../security/envelope.js';
import { keyContext } from './key-records.js';

/** A column holding envelope-sealed values, and how each row's sealing context is formed. */
export interface SealedColumn {
  table: string;
  idColumn: string;
  column: string;
  context(id: string): string;
}

/**
 * Every sealed column of the schema. Features that store sealed values add themselves here
 * (JWT signing keys will, after merge).
 */
export const sealedColumns: readonly SealedColumn[] = [
  { table: 'upstream_keys', idColumn: 'id', column: 'secret_sealed', context: keyContext },
  { table: 'upstream_keys', idColumn: 'id', column: 'previous_sealed', context: keyContext },
  { table: 'signing_keys', idColumn: 'kid', column: 'private_sealed', context: (kid) => `signing_key:${kid}` },
];

export interface ColumnRotationResult {
  table: string;
  column: string;
  /** Non-null values seen. */
  scanned: number;
  /** Values re-wrapped by this run. */
  rewrapped: number;
  /** Values already under the current master key. */
  current: number;
  /** Values changed by someone else during the run (left as they are). */
  skipped: number;
  /** Values that could not be opened (unknown master key, tampered); their ids, never their content. */
  failed: string[];
}

export interface MasterKeyRotationResult {
  masterKeyId: string;
  columns: ColumnRotationResult[];
  rewrapped: number;
  failed: number;
}

const BATCH = 200;

/** Re-wraps every value of `targets` (default: the whole registry) under `ring.current`. */
export async function rotateMasterKey(db: Db, ring: MasterKeyRing, targets: readonly SealedColumn[] = sealedColumns): Promise<MasterKeyRotationResult> {
  const columns: ColumnRotationResult[] = [];
  for (const target of targets) columns.push(await rotateColumn(db, ring, target));
  return {
    masterKeyId: ring.current.id,
    columns,
    rewrapped: columns.reduce((n, c) => n + c.rewrapped, 0),
    failed: columns.reduce((n, c) => n + c.failed.length, 0),
  };
}

async function rotateColumn(db: Db, ring: MasterKeyRing, target: SealedColumn): Promise<ColumnRotationResult> {
  const result: ColumnRotationResult = { table: target.table, column: target.column, scanned: 0, rewrapped: 0, current: 0, skipped: 0, failed: [] };
  const table = sql.table(target.table);
  const id = sql.ref(target.idColumn);
  const column = sql.ref(target.column);
  let after = '';
  for (let round = 0; round < 10_000_000; round++) {
    const { rows } = await sql<{ id: string; value: string }>`
      select ${id} as id, ${column} as value from ${table}
      where ${column} is not null and ${id} > ${after}
      order by ${id} limit ${BATCH}`.execute(db);
    if (rows.length === 0) break;
    for (const row of rows) {
      result.scanned += 1;
      let next: string;
      try {
        if (sealedKeyId(row.value) === ring.current.id) {
          result.current += 1;
          continue;
        }
        next = rewrap(ring, row.value, target.context(row.id));
      } catch {
        result.failed.push(row.id);
        continue;
      }
      const updated = await db.transaction().execute(async (trx) => {
        const res = await sql`update ${table} set ${column} = ${next} where ${id} = ${row.id} and ${column} = ${row.value}`.execute(trx);
        return Number(res.numAffectedRows ?? 0);
      });
      if (updated === 1) result.rewrapped += 1;
      else result.skipped += 1;
    }
    after = rows[rows.length - 1]!.id;
  }
  return result;
}
