import type { Kysely } from 'kysely';

/** Users, roles, role membership and per-user grants; seeds the admin and member roles. */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('users')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('issuer', 'text', (c) => c.notNull())
    .addColumn('subject', 'text', (c) => c.notNull())
    .addColumn('display_name', 'text', (c) => c.notNull())
    .addColumn('email', 'text')
    .addColumn('wallet_address', 'text')
    .addColumn('status', 'text', (c) => c.notNull().defaultTo('active'))
    .addColumn('max_output_tokens', 'integer')
    .addColumn('rate_tier', 'text')
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('updated_at', 'bigint', (c) => c.notNull())
    .addColumn('last_login_at', 'bigint')
    .addUniqueConstraint('users_issuer_subject_unique', ['issuer', 'subject'])
    .execute();
  await db.schema.createIndex('users_subject_idx').on('users').column('subject').execute();

  await db.schema
    .createTable('roles')
    .addColumn('name', 'text', (c) => c.primaryKey())
    .addColumn('description', 'text', (c) => c.notNull())
    .addColumn('capabilities', 'text', (c) => c.notNull())
    .addColumn('models', 'text', (c) => c.notNull())
    .addColumn('max_output_tokens', 'integer')
    .addColumn('rate_tier', 'text')
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .execute();

  await db.schema
    .createTable('user_roles')
    .addColumn('user_id', 'text', (c) => c.notNull().references('users.id').onDelete('cascade'))
    .addColumn('role', 'text', (c) => c.notNull().references('roles.name').onDelete('cascade'))
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addPrimaryKeyConstraint('user_roles_pk', ['user_id', 'role'])
    .execute();

  await db.schema
    .createTable('user_grants')
    .addColumn('user_id', 'text', (c) => c.notNull().references('users.id').onDelete('cascade'))
    .addColumn('kind', 'text', (c) => c.notNull())
    .addColumn('value', 'text', (c) => c.notNull())
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addPrimaryKeyConstraint('user_grants_pk', ['user_id', 'kind', 'value'])
    .execute();

  const now = Date.now();
  await (db as Kysely<{ roles: Record<string, unknown> }>)
    .insertInto('roles')
    .values([
      {
        name: 'admin',
        description: 'Every model and every admin capability',
        capabilities: JSON.stringify(['manage_users', 'manage_keys', 'read_usage', 'broadcast']),
        models: JSON.stringify(['*']),
        max_output_tokens: null,
        rate_tier: null,
        created_at: now,
      },
      {
        name: 'member',
        description: 'Claude models, no admin capabilities',
        capabilities: JSON.stringify([]),
        models: JSON.stringify(['claude-*']),
        max_output_tokens: null,
        rate_tier: null,
        created_at: now,
      },
    ])
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  for (const table of ['user_grants', 'user_roles', 'roles', 'users']) await db.schema.dropTable(table).execute();
}
