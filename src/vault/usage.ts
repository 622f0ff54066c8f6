/**
 * The usage ledger: one durable row per client request that reached the upstream step, and
 * summaries of those rows. The same SQL runs on SQLite and PostgreSQL; days are UTC and are
 * bucketed by integer division of the epoch milliseconds, which both databases do alike.
 */
import { sql } from 'kysely';
import { z } from 'zod';
import type { Db } from '../db/index.js';
import { GatewayError } from '../errors/index.js';
import { kyselyUsageWriter, pendingWrite } from './usage-writer.js';
import type { PendingWrite, UsageRowWriter } from './usage-writer.js';
import type { UsageRowValues } from './usage-columns.js';

export interface UsageRecord {
  requestId: string; userId: string; sessionId: string | null; personalTokenId: string | null;
  keyId: string | null; model: string; stream: boolean;
  inputTokens: number; outputTokens: number; cacheCreationInputTokens: number; cacheReadInputTokens: number;
  status: number;            // HTTP status given to the client (200 for streams that started)
  outcome: 'complete' | 'error' | 'cancelled' | 'failed_midstream';
  errorType: string | null; latencyMs: number; ttfbMs: number | null; retries: number; fallback: string | null;
  createdAt: number;
}

export type UsageGrouping = 'user' | 'key' | 'model' | 'day';

export interface UsageQuery {
  by: UsageGrouping;
  /** Inclusive lower bound, epoch ms. */
  since?: number;
  /** Exclusive upper bound, epoch ms. */
  until?: number;
  /** Only this user's records. */
  userId?: string;
}

/** Token and request totals; `errors` counts outcomes `error` and `failed_midstream`. */
export interface UsageTotals {
  requests: number;
  errors: number;
  inputTokens: number;
  outputTokens: number;
  cacheCreationInputTokens: number;
  cacheReadInputTokens: number;
}

export interface UsageSummaryRow extends UsageTotals {
  /** User subject, key name, model, or UTC date (YYYY-MM-DD). Falls back to the id when the user or key is gone; `(none)` for requests without a key. */
  group: string;
  /** The user or key id behind the group (null for model and day). */
  id: string | null;
  firstAt: number;
  lastAt: number;
}

/** Per key totals for the vault's `list()`. */
export interface KeyUsage extends UsageTotals {
  lastUsedAt: number | null;
}

const count = z.number().int().min(0);
/** The longest text field: at least the longest model name a request may carry (chat/request.ts, 256). */
const MAX_TEXT = 256;
const text = z.string().max(MAX_TEXT);
const recordSchema = z.object({
  requestId: text.min(1),
  userId: text.min(1),
  sessionId: text.nullable(),
  personalTokenId: text.nullable(),
  keyId: text.nullable(),
  model: text.min(1),
  stream: z.boolean(),
  inputTokens: count,
  outputTokens: count,
  cacheCreationInputTokens: count,
  cacheReadInputTokens: count,
  status: z.number().int().min(100).max(599),
  outcome: z.enum(['complete', 'error', 'cancelled', 'failed_midstream']),
  errorType: text.nullable(),
  latencyMs: count,
  ttfbMs: count.nullable(),
  retries: count,
  fallback: text.nullable(),
  createdAt: count,
});

const DAY_MS = 86_400_000;

// Aggregates shared by every query; sums are null over no rows, hence coalesce.
const totals = [
  sql<number>`count(*)`.as('requests'),
  sql<number>`coalesce(sum(case when u.outcome in ('error', 'failed_midstream') then 1 else 0 end), 0)`.as('errors'),
  sql<number>`coalesce(sum(u.input_tokens), 0)`.as('input'),
  sql<number>`coalesce(sum(u.output_tokens), 0)`.as('output'),
  sql<number>`coalesce(sum(u.cache_creation_input_tokens), 0)`.as('cacheCreation'),
  sql<number>`coalesce(sum(u.cache_read_input_tokens), 0)`.as('cacheRead'),
  sql<number>`min(u.created_at)`.as('first'),
  sql<number>`max(u.created_at)`.as('last'),
] as const;

interface TotalsRow {
  requests: number; errors: number; input: number; output: number; cacheCreation: number; cacheRead: number; first: number; last: number;
}

function toTotals(r: TotalsRow): UsageTotals {
  return {
    requests: Number(r.requests),
    errors: Number(r.errors),
    inputTokens: Number(r.input),
    outputTokens: Number(r.output),
    cacheCreationInputTokens: Number(r.cacheCreation),
    cacheReadInputTokens: Number(r.cacheRead),
  };
}

/** Usage totals per key id, over all time. */
export async function keyUsage(db: Db): Promise<Map<string, KeyUsage>> {
  const rows = await db
    .selectFrom('usage_records as u')
    .select('u.key_id')
    .select(totals)
    .where('u.key_id', 'is not', null)
    .groupBy('u.key_id')
    .execute();
  const out = new Map<string, KeyUsage>();
  for (const r of rows) if (r.key_id !== null) out.set(r.key_id, { ...toTotals(r), lastUsedAt: Number(r.last) });
  return out;
}

/** Rows waiting for the next write; every record in it gets the same answer. */
interface Batch extends PendingWrite {
  rows: UsageRowValues[];
}

/** Largest batch written in one INSERT (bounded by SQLite's 32766 bound parameters at 20 a row). */
const MAX_BATCH = 500;

/** Plain checks costing well under a microsecond; zod only for a record that fails them (for its message). */
function looksValid(r: UsageRecord): boolean {
  const str = (v: unknown, min: number) => typeof v === 'string' && v.length >= min && v.length <= MAX_TEXT;
  const strOrNull = (v: unknown) => v === null || str(v, 0);
  const n = (v: unknown) => Number.isSafeInteger(v) && (v as number) >= 0;
  return (
    str(r.requestId, 1) && str(r.userId, 1) && strOrNull(r.sessionId) && strOrNull(r.personalTokenId) && strOrNull(r.keyId) && str(r.model, 1) &&
    typeof r.stream === 'boolean' && n(r.inputTokens) && n(r.outputTokens) && n(r.cacheCreationInputTokens) && n(r.cacheReadInputTokens) &&
    Number.isInteger(r.status) && r.status >= 100 && r.status <= 599 &&
    (r.outcome === 'complete' || r.outcome === 'error' || r.outcome === 'cancelled' || r.outcome === 'failed_midstream') &&
    strOrNull(r.errorType) && n(r.latencyMs) && (r.ttfbMs === null || n(r.ttfbMs)) && n(r.retries) && strOrNull(r.fallback) && n(r.createdAt)
  );
}

export interface UsageLedgerOptions {
  /**
   * How long a record may wait for the next write, in ms (default 10). Records arriving
   * within that time are written together in one INSERT and one commit.
   */
  flushIntervalMs?: number;
  /** Where batches are written; Kysely on this thread by default (see usage-writer.ts). */
  writer?: UsageRowWriter;
}

export class UsageLedger {
  /** Records waiting for the next write. */
  private batch: Batch | undefined;
  private timer: NodeJS.Timeout | undefined;
  private readonly flushIntervalMs: number;
  private readonly writer: UsageRowWriter;

  constructor(
    private readonly db: Db,
    options: UsageLedgerOptions = {},
  ) {
    this.flushIntervalMs = options.flushIntervalMs ?? 10;
    this.writer = options.writer ?? kyselyUsageWriter(db);
  }

  /** Writes what is pending, then closes the writer (call after the last `record`). */
  async close(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.flush();
    await this.writer.close();
  }

  /**
   * Inserts one record; resolves once the database has it (durable as the database is).
   * Records are written in batches, one multi-row INSERT (and one commit, the expensive
   * part: a round trip on PostgreSQL, the write-ahead log on SQLite) every
   * `flushIntervalMs` at most, so a busy gateway pays one commit per interval, not per
   * request. A failed write rejects every record of its batch.
   * A process killed in between loses at most the records of that interval, which the
   * callers have not yet been told are written.
   */
  record(r: UsageRecord): Promise<void> {
    if (!looksValid(r)) {
      const parsed = recordSchema.safeParse(r);
      const issue = parsed.success ? undefined : parsed.error.issues[0];
      return Promise.reject(new GatewayError('internal', `usage record: ${issue ? `${issue.path.join('.')}: ${issue.message}` : 'invalid'}`, { reason: 'invalid_usage_record' }));
    }
    // The row as its values, in USAGE_VALUE_COLUMNS order (what the writers take; they add the id).
    const row: UsageRowValues = [
      r.requestId, r.userId, r.sessionId, r.personalTokenId, r.keyId, r.model, r.stream ? 1 : 0,
      r.inputTokens, r.outputTokens, r.cacheCreationInputTokens, r.cacheReadInputTokens,
      r.status, r.outcome, r.errorType, r.latencyMs, r.ttfbMs, r.retries, r.fallback, r.createdAt,
    ];
    // One promise per batch, shared by its records: none made per record.
    const batch = (this.batch ??= { rows: [], ...pendingWrite() });
    batch.rows.push(row);
    if (batch.rows.length >= MAX_BATCH) {
      clearTimeout(this.timer);
      this.timer = undefined;
      void this.flush();
    } else {
      this.timer ??= setTimeout(() => {
        this.timer = undefined;
        void this.flush();
      }, this.flushIntervalMs);
    }
    return batch.written;
  }

  private async flush(): Promise<void> {
    const batch = this.batch;
    this.batch = undefined;
    if (!batch) return;
    try {
      await this.writer.write(batch.rows);
      batch.resolve();
    } catch (err) {
      batch.reject(err);
    }
  }

  /**
   * Totals grouped by user (subject), key (name), model or UTC day, over `[since, until)`.
   * Days come out oldest first; other groupings by total tokens, largest first.
   */
  async summary(q: UsageQuery): Promise<UsageSummaryRow[]> {
    let query = this.db
      .selectFrom('usage_records as u')
      .leftJoin('users', 'users.id', 'u.user_id')
      .leftJoin('upstream_keys', 'upstream_keys.id', 'u.key_id')
      .select(totals);
    if (q.since !== undefined) query = query.where('u.created_at', '>=', q.since);
    if (q.until !== undefined) query = query.where('u.created_at', '<', q.until);
    if (q.userId !== undefined) query = query.where('u.user_id', '=', q.userId);

    let rows: Array<TotalsRow & { label: string | number | null; id: string | null }>;
    if (q.by === 'user') {
      rows = (await query.select(['u.user_id as id', 'users.subject as label']).groupBy(['u.user_id', 'users.subject']).execute()) as typeof rows;
    } else if (q.by === 'key') {
      rows = (await query.select(['u.key_id as id', 'upstream_keys.name as label']).groupBy(['u.key_id', 'upstream_keys.name']).execute()) as typeof rows;
    } else if (q.by === 'model') {
      rows = (await query.select([sql<null>`null`.as('id'), 'u.model as label']).groupBy('u.model').execute()) as typeof rows;
    } else {
      const day = sql<number>`u.created_at / ${sql.lit(DAY_MS)}`;
      rows = (await query.select([sql<null>`null`.as('id'), day.as('label')]).groupBy(day).execute()) as typeof rows;
    }

    const out = rows.map((r) => {
      const group =
        q.by === 'day' ? new Date(Number(r.label) * DAY_MS).toISOString().slice(0, 10)
        : (r.label === null ? (r.id ?? '(none)') : String(r.label));
      return { group, id: r.id ?? null, ...toTotals(r), firstAt: Number(r.first), lastAt: Number(r.last) };
    });
    const tokens = (r: UsageSummaryRow) => r.inputTokens + r.outputTokens + r.cacheCreationInputTokens + r.cacheReadInputTokens;
    return q.by === 'day' ? out.sort((a, b) => a.group.localeCompare(b.group)) : out.sort((a, b) => tokens(b) - tokens(a) || a.group.localeCompare(b.group));
  }
}
