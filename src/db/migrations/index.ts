/**
 * The one list of migrations, applied in name order on SQLite and PostgreSQL alike.
 * A migration uses only types both understand: text, integer, bigint.
 */
import type { Migration } from 'kysely';
import * as m0001 from './0001_users.js';
import * as m0002 from './0002_sessions.js';
import * as m0003 from './0003_login_states.js';
import * as m0004 from './0004_upstream_keys.js';
import * as m0005 from './0005_usage.js';
import * as m0006 from './0006_user_rate_limits.js';
import * as m0007 from './0007_usage_key_index.js';

export const migrations: Record<string, Migration> = {
  '0001_users': m0001,
  '0002_sessions': m0002,
  '0003_login_states': m0003,
  '0004_upstream_keys': m0004,
  '0005_usage': m0005,
  '0006_user_rate_limits': m0006,
  '0007_usage_key_index': m0007,
};
