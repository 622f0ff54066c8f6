/**
 * Request bodies: validation with Anthropic's wording, the prompt text the echo answers, the
 * `<<sim:{…}>>` directive, and the deterministic input token count.
 */
import { z } from 'zod';
import { anthropicIssueMessage } from '../errors/zod-wording.js';
import { SimulatedHttpError } from './errors.js';

const block = z.looseObject({ type: z.string() });
const content = z.union([z.string(), z.array(block)]);
const message = z.looseObject({ role: z.enum(['user', 'assistant']), content });

const promptFields = {
  model: z.string(),
  messages: z.array(message).min(1),
  system: content.optional(),
  tools: z.array(z.looseObject({ name: z.string() })).optional(),
};

/** `/v1/messages`; unknown fields are accepted and ignored. */
export const messagesBodySchema = z.looseObject({
  model: promptFields.model,
  max_tokens: z.number().int().min(1),
  messages: promptFields.messages,
  system: promptFields.system,
  tools: promptFields.tools,
  stream: z.boolean().optional(),
  stop_sequences: z.array(z.string()).optional(),
  thinking: z.looseObject({ type: z.string() }).optional(),
});

/** `/v1/messages/count_tokens` (no max_tokens). */
export const countTokensBodySchema = z.looseObject(promptFields);

export type MessagesBody = z.infer<typeof messagesBodySchema>;
export type PromptBody = z.infer<typeof countTokensBodySchema>;
type Block = z.infer<typeof block>;

/** Fields Anthropic itself refuses under anthropic-version 2026-10-21. */
const refusedIn20261021 = ['temperature', 'top_p', 'top_k'] as const;

/**
 * Validates a body; throws a 400 invalid_request_error naming the first bad field the way
 * Anthropic does (`max_tokens: Field required`).
 */
export function parseBody<T>(schema: z.ZodType<T>, body: unknown, version: string): T {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new SimulatedHttpError(400, 'Input should be a valid dictionary');
  const result = schema.safeParse(body, { reportInput: true });
  if (!result.success) {
    const issue = result.error.issues[0]!;
    throw new SimulatedHttpError(400, `${issue.path.join('.')}: ${anthropicIssueMessage(issue)}`);
  }
  if (version === '2026-10-21') {
    for (const field of refusedIn20261021) {
      if (field in body) throw new SimulatedHttpError(400, `${field}: Extra inputs are not permitted`);
    }
  }
  return result.data;
}

function blockText(b: Block): string {
  if (b.type === 'text' && typeof b.text === 'string') return b.text;
  return '';
}

/** The text of the last user message (its text blocks joined with a newline). */
export function lastUserText(body: PromptBody): string {
  for (let i = body.messages.length - 1; i >= 0; i--) {
    const m = body.messages[i]!;
    if (m.role !== 'user') continue;
    if (typeof m.content === 'string') return m.content;
    return m.content.map(blockText).filter((t) => t.length > 0).join('\n');
  }
  return '';
}

const DIRECTIVE = /<<sim:(\{.*?\})>>/s;

/**
 * Finds a `<<sim:{JSON}>>` directive in the text. Returns the JSON (unparsed) and the text
 * with the directive removed (and trimmed), or null when there is none.
 */
export function extractDirective(text: string): { json: string; rest: string } | null {
  if (!text.includes('<<sim:')) return null;
  const match = DIRECTIVE.exec(text);
  if (!match) return null;
  return { json: match[1]!, rest: (text.slice(0, match.index) + text.slice(match.index + match[0].length)).trim() };
}

function contentChars(c: string | Block[] | undefined): number {
  if (c === undefined) return 0;
  if (typeof c === 'string') return c.length;
  let n = 0;
  for (const b of c) {
    if (b.type === 'text' && typeof b.text === 'string') n += b.text.length;
    else if (b.type === 'thinking' && typeof b.thinking === 'string') n += b.thinking.length;
    else if (b.type === 'tool_result') n += typeof b.content === 'string' ? b.content.length : contentChars(b.content as Block[] | undefined);
    else n += JSON.stringify(b).length;
  }
  return n;
}

/**
 * The deterministic input token count: `4 + ceil(C / 4) + 2 × M`, where M is the number of
 * messages and C the characters of the system prompt, of every text/thinking block (string
 * contents count whole), of tool_result contents, of the JSON of any other block, and of the
 * JSON of `tools`. Cache tokens are reported separately and never subtracted.
 */
export function countInputTokens(body: PromptBody): number {
  let chars = contentChars(body.system);
  for (const m of body.messages) chars += contentChars(m.content);
  if (body.tools) chars += JSON.stringify(body.tools).length;
  return 4 + Math.ceil(chars / 4) + 2 * body.messages.length;
}
