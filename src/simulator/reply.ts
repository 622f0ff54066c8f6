/**
 * The deterministic reply: which blocks, which deltas, which stop reason, how many output
 * tokens. Pure: the same request and fault always give the same plan.
 *
 * Output tokens: text is cut into "tokens", each a run of non-space characters with the
 * whitespace before it (`/\s*\S+/g`), so `Echo: hello world` is 3 tokens. Thinking counts the
 * same way; a tool_use block counts `5 + ceil(json chars / 4)`. `output_tokens` is the sum
 * (at least 1). `max_tokens` caps thinking + text tokens; stop sequences are checked after
 * every token and the matched sequence is not part of the text.
 */
import { createHash } from 'node:crypto';
import type { MessagesBody } from './request.js';
import type { SimulatedFault } from './types.js';

export type ContentBlock =
  | { type: 'text'; text: string }
  | { type: 'thinking'; thinking: string; signature: string }
  | { type: 'tool_use'; id: string; name: string; input: Record<string, unknown> };

export type Delta =
  | { type: 'text_delta'; text: string }
  | { type: 'thinking_delta'; thinking: string }
  | { type: 'signature_delta'; signature: string }
  | { type: 'input_json_delta'; partial_json: string };

export interface PlannedBlock {
  /** The block as `content_block_start` announces it (empty text/input). */
  start: Record<string, unknown>;
  deltas: Delta[];
  /** The block as the JSON answer carries it. */
  final: ContentBlock;
}

export interface ReplyPlan {
  blocks: PlannedBlock[];
  stopReason: 'end_turn' | 'max_tokens' | 'stop_sequence' | 'tool_use';
  stopSequence: string | null;
  outputTokens: number;
}

export interface PlanInput {
  body: MessagesBody;
  /** The last user text with any directive removed. */
  prompt: string;
  fault: SimulatedFault;
  /** Text deltas when the fault does not say. */
  deltas: number;
  /** Id for a tool_use block when the fault does not give one. */
  toolUseId: string;
}

const TOKEN = /\s*\S+/g;

export function tokenize(text: string): string[] {
  return text.match(TOKEN) ?? [];
}

/** Groups tokens into at most `n` deltas of near-equal token counts, in order. */
export function chunk(tokens: string[], n: number): string[] {
  const parts = Math.min(n, tokens.length);
  const out: string[] = [];
  for (let i = 0; i < parts; i++) {
    out.push(tokens.slice(Math.floor((i * tokens.length) / parts), Math.floor(((i + 1) * tokens.length) / parts)).join(''));
  }
  return out;
}

/** Takes tokens while the budget lasts and no stop sequence has appeared. */
function generate(tokens: string[], budget: number, stops: string[]): { text: string; used: number; stop: 'max_tokens' | 'stop_sequence' | null; sequence: string | null } {
  let text = '';
  for (let used = 0; used < tokens.length; used++) {
    if (used >= budget) return { text, used, stop: 'max_tokens', sequence: null };
    text += tokens[used];
    if (stops.length > 0) {
      let best = -1;
      let which: string | null = null;
      for (const s of stops) {
        const at = s.length > 0 ? text.indexOf(s) : -1;
        if (at !== -1 && (best === -1 || at < best)) {
          best = at;
          which = s;
        }
      }
      if (which !== null) return { text: text.slice(0, best), used: used + 1, stop: 'stop_sequence', sequence: which };
    }
  }
  return { text, used: tokens.length, stop: null, sequence: null };
}

function thinkingText(input: PlanInput): string | null {
  if (input.fault.thinking !== undefined) return input.fault.thinking;
  const t = input.body.thinking?.type;
  if (t !== 'enabled' && t !== 'adaptive') return null;
  const gist = input.prompt.length > 80 ? `${input.prompt.slice(0, 80)}…` : input.prompt;
  return `The user wrote: ${JSON.stringify(gist)}. I will echo it back.`;
}

export function planReply(input: PlanInput): ReplyPlan {
  const { body, fault } = input;
  const blocks: PlannedBlock[] = [];
  let budget = body.max_tokens;
  let outputTokens = 0;
  let stopReason: ReplyPlan['stopReason'] = 'end_turn';
  let stopSequence: string | null = null;

  const thinking = thinkingText(input);
  if (thinking !== null) {
    const gen = generate(tokenize(thinking), budget, []);
    budget -= gen.used;
    outputTokens += gen.used;
    const signature = createHash('sha256').update(gen.text).digest('base64');
    const deltas: Delta[] = chunk(tokenize(gen.text), 2).map((t) => ({ type: 'thinking_delta', thinking: t }));
    deltas.push({ type: 'signature_delta', signature });
    blocks.push({ start: { type: 'thinking', thinking: '', signature: '' }, deltas, final: { type: 'thinking', thinking: gen.text, signature } });
    if (gen.stop === 'max_tokens') stopReason = 'max_tokens';
  }

  if (stopReason !== 'max_tokens') {
    const reply = fault.text ?? `Echo: ${input.prompt}`;
    const gen = generate(tokenize(reply), budget, body.stop_sequences ?? []);
    outputTokens += gen.used;
    if (gen.stop) stopReason = gen.stop;
    stopSequence = gen.sequence;
    // The text keeps its exact characters (spaces included); deltas split it on token bounds.
    const deltas: Delta[] = chunk(tokenize(gen.text), fault.deltas ?? input.deltas).map((t) => ({ type: 'text_delta', text: t }));
    // A stop sequence can cut inside a token and leave trailing spaces the tokenizer skips.
    const joined = deltas.reduce((n, d) => n + (d.type === 'text_delta' ? d.text.length : 0), 0);
    if (joined < gen.text.length) {
      const last = deltas.pop();
      deltas.push({ type: 'text_delta', text: (last?.type === 'text_delta' ? last.text : '') + gen.text.slice(joined) });
    }
    blocks.push({ start: { type: 'text', text: '' }, deltas, final: { type: 'text', text: gen.text } });
  }

  if (fault.toolUse !== undefined && stopReason === 'end_turn') {
    const spec = fault.toolUse === true ? {} : fault.toolUse;
    const name = spec.name ?? body.tools?.[0]?.name ?? 'get_weather';
    const toolInput = spec.input ?? {};
    const json = JSON.stringify(toolInput);
    const half = Math.ceil(json.length / 2);
    const parts = ['', json.slice(0, half), json.slice(half)].filter((p, i) => i === 0 || p.length > 0);
    const id = spec.id ?? input.toolUseId;
    blocks.push({
      start: { type: 'tool_use', id, name, input: {} },
      deltas: parts.map((p) => ({ type: 'input_json_delta', partial_json: p })),
      final: { type: 'tool_use', id, name, input: toolInput },
    });
    outputTokens += 5 + Math.ceil(json.length / 4);
    stopReason = 'tool_use';
  }

  return { blocks, stopReason, stopSequence, outputTokens: Math.max(1, outputTokens) };
}
