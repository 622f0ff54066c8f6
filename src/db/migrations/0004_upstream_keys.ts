import type { Kysely } from 'kysely';

/**
 * Upstream (Anthropic) API keys, sealed with envelope encryption (context `upstream_key:<id>`).
 * `fingerprint` is the hex SHA-256 of the secret: finds duplicates without decrypting.
 * `previous_sealed` keeps the secret replaced by the last rotation until
 * `previous_retire_after`, then any instance clears it.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('upstream_keys')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('name', 'text', (c) => c.notNull().unique())
    .addColumn('secret_sealed', 'text', (c) => c.notNull())
    .addColumn('fingerprint', 'text', (c) => c.notNull().unique())
    .addColumn('last4', 'text', (c) => c.notNull())
    .addColumn('weight', 'integer', (c) => c.notNull().defaultTo(1))
    .addColumn('models', 'text', (c) => c.notNull().defaultTo('[]'))
    .addColumn('state', 'text', (c) => c.notNull().defaultTo('enabled'))
    .addColumn('previous_sealed', 'text')
    .addColumn('previous_last4', 'text')
    .addColumn('previous_retire_after', 'bigint')
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('updated_at', 'bigint', (c) => c.notNull())
    .addColumn('rotated_at', 'bigint')
    .addColumn('disabled_at', 'bigint')
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('upstream_keys').execute();
}
