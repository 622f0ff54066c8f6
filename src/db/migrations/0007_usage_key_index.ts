import type { Kysely } from 'kysely';

/**
 * Drops `usage_records_key_id_idx`: no query selects usage rows by key (per-key totals read
 * every row, `keyUsage` in vault/usage.ts; summaries by key filter on time), and every usage
 * row paid for it on insert: about 2 µs of the SQLite writer thread's 8–10 µs a row
 * (docs/benchmarks.md, session 11).
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropIndex('usage_records_key_id_idx').execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.createIndex('usage_records_key_id_idx').on('usage_records').columns(['key_id', 'created_at']).execute();
}
