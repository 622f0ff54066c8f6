/**
 * The settled line's fields are written by `settledMembers` (src/chat/settle.ts) instead of
 * JSON.stringify: it must write exactly what JSON.stringify writes, for every value a field
 * can take, and the whole line must stay what pino writes.
 */
import pino from 'pino';
import type { FastifyBaseLogger } from 'fastify';
import { describe, expect, it } from 'vitest';
import { settledMembers } from '../../src/chat/settle.js';
import type { SettledFields } from '../../src/chat/settle.js';
import { flatLine } from '../../src/http/log-line.js';

const base: SettledFields = {
  request_id: 'req_0123456789abcdef0000000000000001',
  user: 'alice.crypto',
  credential: 'personal_token',
  key: 'default',
  model: 'claude-sonnet-4-6',
  transport: 'http',
  stream: false,
  status: 200,
  outcome: 'complete',
  error_type: undefined,
  input_tokens: 12,
  output_tokens: 34,
  cache_creation_input_tokens: 0,
  cache_read_input_tokens: 5,
  latency_ms: 7,
  ttfb_ms: 3,
  retries: 0,
  fallback: undefined,
};

const awkward = 'quote " backslash \\ newline \n tab \t nul \u0000 line sep \u2028 ünïcødé ✓ emoji 🚀 lone surrogate \ud800';

const cases: SettledFields[] = [
  base,
  { ...base, key: null, ttfb_ms: null, stream: true, transport: 'ws', credential: 'access_token' },
  { ...base, status: 529, outcome: 'error', error_type: 'overloaded_error', retries: 3, fallback: 'claude-haiku-4-5', credential: 'cookie' },
  { ...base, outcome: 'failed_midstream', error_type: awkward, user: awkward, key: awkward, model: awkward, fallback: awkward },
  { ...base, outcome: 'cancelled', request_id: 'trace-42.a:b', input_tokens: 2 ** 53, output_tokens: -0, latency_ms: 1.5 },
  { ...base, status: Number.NaN, latency_ms: Number.POSITIVE_INFINITY, ttfb_ms: Number.NEGATIVE_INFINITY, user: '', model: '' },
];

describe('settledMembers', () => {
  it.each(cases.map((fields, i) => [i, fields] as const))('writes what JSON.stringify writes (case %i)', (_i, fields) => {
    expect(settledMembers(fields)).toBe(JSON.stringify(fields).slice(1, -1));
  });

  it('makes, through flatLine, the line pino writes', () => {
    const lines: string[] = [];
    const logger = pino({ base: { service: 'portcullis' }, timestamp: () => ',"time":1' }, { write: (line: string) => void lines.push(line) });
    const fields = cases[3]!;
    logger.info(fields, 'chat request settled');
    flatLine(logger as unknown as FastifyBaseLogger, 'info', fields, 'chat request settled', settledMembers)!();
    expect(lines).toHaveLength(2);
    expect(lines[1]).toBe(lines[0]);
  });
});
