import type { Kysely } from 'kysely';

/**
 * Per-user numeric rate limits set by an admin: a JSON object with any of `rpm`, `rpd`,
 * `tpm`, `concurrent` (0 = unlimited), replacing the tier's values; null inherits the tier.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('users').addColumn('rate_limits', 'text').execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('users').dropColumn('rate_limits').execute();
}
