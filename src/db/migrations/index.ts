/**
 * The one list of migrations, applied in name order on SQLite and PostgreSQL alike.
 * A migration uses only types both understand: text, integer, bigint.
 */
import type { Migration } from 'kysely';
import * as m0001 from './0001_users.js';
import * as m0002 from './0002_sessions.js';

export const migrations: Record<string, Migration> = {
  '0001_users': m0001,
  '0002_sessions': m0002,
};
