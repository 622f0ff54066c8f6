import type { Kysely } from 'kysely';

/**
 * One row per client request that reached the upstream step: tokens (cache included),
 * outcome, latency. No foreign keys: usage outlives deleted users and keys.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('usage_records')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('request_id', 'text', (c) => c.notNull())
    .addColumn('user_id', 'text', (c) => c.notNull())
    .addColumn('session_id', 'text')
    .addColumn('personal_token_id', 'text')
    .addColumn('key_id', 'text')
    .addColumn('model', 'text', (c) => c.notNull())
    .addColumn('stream', 'integer', (c) => c.notNull())
    .addColumn('input_tokens', 'bigint', (c) => c.notNull())
    .addColumn('output_tokens', 'bigint', (c) => c.notNull())
    .addColumn('cache_creation_input_tokens', 'bigint', (c) => c.notNull())
    .addColumn('cache_read_input_tokens', 'bigint', (c) => c.notNull())
    .addColumn('status', 'integer', (c) => c.notNull())
    .addColumn('outcome', 'text', (c) => c.notNull())
    .addColumn('error_type', 'text')
    .addColumn('latency_ms', 'integer', (c) => c.notNull())
    .addColumn('ttfb_ms', 'integer')
    .addColumn('retries', 'integer', (c) => c.notNull())
    .addColumn('fallback', 'text')
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .execute();
  await db.schema.createIndex('usage_records_created_at_idx').on('usage_records').column('created_at').execute();
  await db.schema.createIndex('usage_records_user_id_idx').on('usage_records').columns(['user_id', 'created_at']).execute();
  await db.schema.createIndex('usage_records_key_id_idx').on('usage_records').columns(['key_id', 'created_at']).execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('usage_records').execute();
}
