/**
 * The streaming answer. Order, exactly as upstream: message_start (output_tokens 1),
 * content_block_start, ping (after the first block start), content_block_delta…,
 * content_block_stop (per block), message_delta (cumulative usage, input and cache included),
 * message_stop. Each event is `event: NAME\ndata: JSON\n\n`.
 *
 * Mid-stream faults fire after exactly N content deltas (N counts every content_block_delta,
 * thinking and tool deltas included; N beyond the last delta fires after the last delta).
 */
import type { ServerResponse } from 'node:http';
import { defaultMessage, streamErrorData } from './errors.js';
import type { ReplyPlan } from './reply.js';
import type { SimulatedFault, SimulatedOutcome, SimulatedUsage } from './types.js';

export interface StreamInput {
  res: ServerResponse;
  headers: Record<string, string>;
  messageId: string;
  model: string;
  plan: ReplyPlan;
  usage: SimulatedUsage;
  fault: SimulatedFault;
  deltaDelayMs: number;
  /** Resolves false when the simulator closed while waiting. */
  pause: (ms: number) => Promise<boolean>;
}

export interface StreamResult {
  outcome: SimulatedOutcome;
  /** The last usage the client received. */
  usage: SimulatedUsage;
}

function event(name: string, data: string): string {
  return `event: ${name}\ndata: ${data}\n\n`;
}

const PING = event('ping', '{"type": "ping"}');
const STOP = event('message_stop', '{"type":"message_stop"}');
const MALFORMED = 'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_de\n\n';

/** Builds every event of a complete answer, and the indexes of the content deltas. */
export function buildEvents(input: Pick<StreamInput, 'messageId' | 'model' | 'plan' | 'usage'>): { events: string[]; deltaAt: number[]; startUsage: SimulatedUsage } {
  const { plan, usage } = input;
  const startUsage: SimulatedUsage = {
    input_tokens: usage.input_tokens,
    cache_creation_input_tokens: usage.cache_creation_input_tokens,
    cache_read_input_tokens: usage.cache_read_input_tokens,
    output_tokens: 1,
  };
  const message = { id: input.messageId, type: 'message', role: 'assistant', model: input.model, content: [], stop_reason: null, stop_sequence: null, usage: startUsage };
  const events = [event('message_start', JSON.stringify({ type: 'message_start', message }))];
  const deltaAt: number[] = [];
  plan.blocks.forEach((block, index) => {
    events.push(event('content_block_start', JSON.stringify({ type: 'content_block_start', index, content_block: block.start })));
    if (index === 0) events.push(PING);
    for (const delta of block.deltas) {
      deltaAt.push(events.length);
      events.push(event('content_block_delta', JSON.stringify({ type: 'content_block_delta', index, delta })));
    }
    events.push(event('content_block_stop', `{"type":"content_block_stop","index":${index}}`));
  });
  const finalUsage = {
    input_tokens: usage.input_tokens,
    cache_creation_input_tokens: usage.cache_creation_input_tokens,
    cache_read_input_tokens: usage.cache_read_input_tokens,
    output_tokens: usage.output_tokens,
  };
  events.push(event('message_delta', JSON.stringify({ type: 'message_delta', delta: { stop_reason: plan.stopReason, stop_sequence: plan.stopSequence }, usage: finalUsage })));
  events.push(STOP);
  return { events, deltaAt, startUsage };
}

type Failure = { kind: 'reset' | 'error' | 'malformed'; after: number };

function failureOf(fault: SimulatedFault): Failure | null {
  const candidates: Failure[] = [];
  if (fault.resetAfterDeltas !== undefined) candidates.push({ kind: 'reset', after: fault.resetAfterDeltas });
  if (fault.errorAfterDeltas !== undefined) candidates.push({ kind: 'error', after: fault.errorAfterDeltas });
  if (fault.malformedAfterDeltas !== undefined) candidates.push({ kind: 'malformed', after: fault.malformedAfterDeltas });
  if (candidates.length === 0) return null;
  return candidates.reduce((a, b) => (b.after < a.after ? b : a));
}

/** Writes the stream (or its faulty variant) and reports how it ended. Never throws. */
export async function writeStream(input: StreamInput): Promise<StreamResult> {
  const { res, fault } = input;
  const { events, deltaAt, startUsage } = buildEvents(input);
  const failure = failureOf(fault);
  let cut = events.length;
  if (failure) {
    if (failure.after < deltaAt.length) cut = deltaAt[failure.after]!;
    else if (deltaAt.length > 0) cut = deltaAt[deltaAt.length - 1]! + 1;
    else cut = 2 + (events[2] === PING ? 1 : 0);
  }

  let closed = false;
  res.writeHead(200, input.headers);
  if (input.deltaDelayMs <= 0) {
    res.write(cut === events.length ? events.join('') : events.slice(0, cut).join(''));
  } else {
    res.on('close', () => (closed = true));
    const isDelta = new Set(deltaAt);
    for (let i = 0; i < cut; i++) {
      if (isDelta.has(i)) {
        const alive = await input.pause(input.deltaDelayMs);
        if (!alive || closed || res.destroyed) {
          res.destroy();
          return { outcome: 'aborted', usage: startUsage };
        }
      }
      res.write(events[i]);
    }
  }

  if (!failure) {
    res.end();
    return { outcome: 'complete', usage: input.usage };
  }
  if (failure.kind === 'reset') {
    const next = events[cut];
    if (fault.resetMidEvent && next !== undefined) res.write(next.slice(0, Math.floor(next.length / 2)));
    // Let what was written reach the client first, then cut the connection.
    await new Promise<void>((resolve) => res.write('', () => resolve()));
    res.socket?.destroy();
    res.destroy();
    return { outcome: 'reset', usage: startUsage };
  }
  if (failure.kind === 'error') {
    const type = fault.errorType ?? 'overloaded_error';
    res.end(event('error', streamErrorData(type, fault.message ?? defaultMessage(type))));
    return { outcome: 'error', usage: startUsage };
  }
  res.end(MALFORMED);
  return { outcome: 'malformed', usage: startUsage };
}
