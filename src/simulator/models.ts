/** The simulated model catalogue: lookup by id or alias, and `/v1/models` pagination. */
import { SimulatedHttpError } from './errors.js';
import type { SimulatedModel } from './types.js';

/**
 * Newest first, as `/v1/models` lists them. Aliases resolve in every endpoint. The 4.6 entries
 * use the undated ids the SDK knows; their creation dates are illustrative.
 */
export const defaultModels: SimulatedModel[] = [
  { id: 'claude-opus-4-6', display_name: 'Claude Opus 4.6', created_at: '2026-02-01T00:00:00Z' },
  { id: 'claude-sonnet-4-6', display_name: 'Claude Sonnet 4.6', created_at: '2026-02-01T00:00:00Z' },
  { id: 'claude-opus-4-5-20251101', display_name: 'Claude Opus 4.5', created_at: '2025-11-24T00:00:00Z', aliases: ['claude-opus-4-5'] },
  { id: 'claude-haiku-4-5-20251001', display_name: 'Claude Haiku 4.5', created_at: '2025-10-15T00:00:00Z', aliases: ['claude-haiku-4-5'] },
  { id: 'claude-sonnet-4-5-20250929', display_name: 'Claude Sonnet 4.5', created_at: '2025-09-29T00:00:00Z', aliases: ['claude-sonnet-4-5'] },
  { id: 'claude-opus-4-1-20250805', display_name: 'Claude Opus 4.1', created_at: '2025-08-05T00:00:00Z', aliases: ['claude-opus-4-1'] },
  { id: 'claude-sonnet-4-20250514', display_name: 'Claude Sonnet 4', created_at: '2025-05-22T00:00:00Z', aliases: ['claude-sonnet-4-0'] },
  { id: 'claude-3-5-haiku-20241022', display_name: 'Claude Haiku 3.5', created_at: '2024-10-22T00:00:00Z', aliases: ['claude-3-5-haiku-latest'] },
];

/**
 * A model as `/v1/models` describes it: every field the API always sends, the ones the
 * simulator has no real figure for (capabilities, token limits) as null, which the API allows.
 */
export interface ModelInfo {
  type: 'model';
  id: string;
  display_name: string;
  created_at: string;
  capabilities: null;
  deprecated_at: null;
  lifecycle: 'active';
  line: 'opus' | 'sonnet' | 'haiku' | null;
  max_input_tokens: null;
  max_tokens: null;
  retires_at: null;
}

/** The model line its display name names (`Claude Opus 4.5` → `opus`). */
function lineOf(displayName: string): ModelInfo['line'] {
  const word = /\b(Opus|Sonnet|Haiku)\b/.exec(displayName)?.[1];
  return word ? (word.toLowerCase() as ModelInfo['line']) : null;
}

export interface ModelPage {
  data: ModelInfo[];
  has_more: boolean;
  first_id: string | null;
  last_id: string | null;
}

/** An immutable catalogue built once per simulator. */
export class ModelCatalogue {
  private readonly list: ModelInfo[];
  private readonly byId = new Map<string, ModelInfo>();

  constructor(models: SimulatedModel[]) {
    this.list = models.map((m) => ({
      type: 'model',
      id: m.id,
      display_name: m.display_name,
      created_at: m.created_at ?? '1970-01-01T00:00:00Z',
      capabilities: null,
      deprecated_at: null,
      lifecycle: 'active',
      line: lineOf(m.display_name),
      max_input_tokens: null,
      max_tokens: null,
      retires_at: null,
    }));
    models.forEach((m, i) => {
      const info = this.list[i]!;
      this.byId.set(m.id, info);
      for (const alias of m.aliases ?? []) this.byId.set(alias, info);
    });
  }

  /** The model for an id or alias, or undefined. */
  find(id: string): ModelInfo | undefined {
    return this.byId.get(id);
  }

  /**
   * One page: `after_id` lists what follows that id, `before_id` what precedes it (the page
   * nearest to it), `limit` 1..1000 (20 by default). Unknown cursor ids are a 400.
   */
  page(query: { limit?: string; after_id?: string; before_id?: string }): ModelPage {
    let limit = 20;
    if (query.limit !== undefined) {
      limit = Number(query.limit);
      if (!Number.isInteger(limit) || limit < 1 || limit > 1000) {
        throw new SimulatedHttpError(400, 'limit: Input should be an integer between 1 and 1000');
      }
    }
    if (query.after_id !== undefined && query.before_id !== undefined) {
      throw new SimulatedHttpError(400, 'Only one of after_id and before_id may be given');
    }
    let start = 0;
    let end = this.list.length;
    if (query.after_id !== undefined) start = this.indexOf(query.after_id, 'after_id') + 1;
    if (query.before_id !== undefined) end = this.indexOf(query.before_id, 'before_id');
    let data: ModelInfo[];
    let hasMore: boolean;
    if (query.before_id !== undefined) {
      const from = Math.max(0, end - limit);
      data = this.list.slice(from, end);
      hasMore = from > 0;
    } else {
      data = this.list.slice(start, start + limit);
      hasMore = start + limit < end;
    }
    return { data, has_more: hasMore, first_id: data[0]?.id ?? null, last_id: data[data.length - 1]?.id ?? null };
  }

  private indexOf(id: string, field: string): number {
    const info = this.byId.get(id);
    const index = info ? this.list.indexOf(info) : -1;
    if (index === -1) throw new SimulatedHttpError(400, `${field}: unknown model id ${JSON.stringify(id)}`);
    return index;
  }
}
