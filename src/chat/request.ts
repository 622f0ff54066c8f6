/**
 * The gateway's view of a Messages request: only the fields it must check (model,
 * max_tokens, messages, stream). Everything else passes through untouched, so new API
 * features never need a gateway release. Messages mimic Anthropic's wording.
 */
import { z } from 'zod';
import { GatewayError } from '../errors/index.js';
import { anthropicIssueMessage } from '../errors/zod-wording.js';

const messagesBody = z.looseObject({
  model: z.string().min(1).max(256),
  max_tokens: z.number().int().min(1),
  messages: z.array(z.looseObject({ role: z.string(), content: z.unknown() })).min(1),
  stream: z.boolean().optional(),
});

const countTokensBody = z.looseObject({
  model: z.string().min(1).max(256),
  messages: z.array(z.looseObject({ role: z.string(), content: z.unknown() })).min(1),
});

export type MessagesBody = z.infer<typeof messagesBody>;
export type CountTokensBody = z.infer<typeof countTokensBody>;

function parseJson(raw: Buffer): unknown {
  if (raw.length === 0) throw new GatewayError('invalid_request', 'Request body is empty; expected a JSON object', { reason: 'invalid_json' });
  try {
    return JSON.parse(raw.toString('utf8'));
  } catch {
    throw new GatewayError('invalid_request', 'Request body is not valid JSON', { reason: 'invalid_json' });
  }
}

function describe(issue: z.core.$ZodIssue): string {
  return `${issue.path.map(String).join('.') || 'body'}: ${anthropicIssueMessage(issue)}`;
}

function validate<T>(schema: z.ZodType<T>, raw: Buffer): T {
  const value = parseJson(raw);
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new GatewayError('invalid_request', 'Request body must be a JSON object', { reason: 'invalid_json' });
  }
  const result = schema.safeParse(value, { reportInput: true });
  if (!result.success) {
    throw new GatewayError('invalid_request', result.error.issues.map(describe).join('; '), { reason: 'invalid_request_body' });
  }
  return result.data;
}

/**
 * The hot path (every request): plain checks of the few fields the gateway reads, well under
 * a microsecond per message; only a body failing them goes through zod, for its message.
 */
function looksLikeMessages(value: unknown): value is MessagesBody {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const v = value as Record<string, unknown>;
  if (typeof v.model !== 'string' || v.model.length < 1 || v.model.length > 256) return false;
  if (!Number.isSafeInteger(v.max_tokens) || (v.max_tokens as number) <= 0) return false;
  if (v.stream !== undefined && typeof v.stream !== 'boolean') return false;
  const messages = v.messages;
  if (!Array.isArray(messages) || messages.length < 1) return false;
  for (const m of messages) if (typeof m !== 'object' || m === null || Array.isArray(m) || typeof (m as { role?: unknown }).role !== 'string') return false;
  return true;
}

export function parseMessagesBody(raw: Buffer): MessagesBody {
  const value = parseJson(raw);
  if (looksLikeMessages(value)) return value;
  return validate(messagesBody, raw);
}

export function parseCountTokensBody(raw: Buffer): CountTokensBody {
  return validate(countTokensBody, raw);
}

/** What one base64 image block counts for admission: an image as Anthropic resizes it costs at most about 1,600 tokens. */
export const MEDIA_BLOCK_TOKENS = 1_600;

/**
 * A rough input-token estimate for admission (about 4 bytes a token), reconciled later with
 * real usage. Base64 images (in tool results too) do not count by their bytes, which say
 * little about their tokens (a 1 MB photo costs at most about 1,600 tokens, not the 330,000
 * its base64 would make): each counts MEDIA_BLOCK_TOKENS instead. Documents (PDFs, 1,500 to
 * 3,000 tokens a page) still count by their bytes: no cap can be told from them.
 */
export function estimateInputTokens(raw: Buffer, body?: MessagesBody): number {
  let bytes = raw.length;
  let blocks = 0;
  if (body) {
    for (const m of body.messages) {
      if (typeof m.content === 'string') continue;
      const media = mediaIn(m.content);
      bytes -= media.bytes;
      blocks += media.blocks;
    }
  }
  return Math.ceil(Math.max(0, bytes) / 4) + blocks * MEDIA_BLOCK_TOKENS;
}

/** The base64 image blocks of a message's content (and of the tool results in it): how many, and their data's length. */
function mediaIn(content: unknown, found = { bytes: 0, blocks: 0 }, depth = 0): { bytes: number; blocks: number } {
  if (!Array.isArray(content) || depth > 1) return found;
  for (const block of content as unknown[]) {
    if (typeof block !== 'object' || block === null) continue;
    const source = (block as { source?: { type?: unknown; data?: unknown } }).source;
    if ((block as { type?: unknown }).type === 'image' && source?.type === 'base64' && typeof source.data === 'string') {
      found.bytes += source.data.length;
      found.blocks += 1;
    } else {
      mediaIn((block as { content?: unknown }).content, found, depth + 1);
    }
  }
  return found;
}
