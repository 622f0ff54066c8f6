/**
 * `flatLine` (src/http/log-line.ts) makes the line pino would write for the same call,
 * byte for byte, with the app's own logger options: level, time, the logger's bindings, the
 * fields in their order (undefined ones left out) and the message. It honours the level, and
 * a logger that is not pino gets a plain call. The line is stamped when made, written when asked.
 */
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { loggerOptions } from '../../src/app.js';
import { loadConfig } from '../../src/config/index.js';
import { flatLine } from '../../src/http/log-line.js';
import type { FlatFields } from '../../src/http/log-line.js';
import type { FastifyBaseLogger } from 'fastify';
import { baseEnv } from '../helpers/env.js';

function capture(level = 'info') {
  const lines: string[] = [];
  // The app's options, with a fixed clock so two calls write the same time.
  const options = { ...loggerOptions(loadConfig({ ...baseEnv('/tmp'), LOG_LEVEL: level })), timestamp: () => ',"time":"2026-11-28T00:00:00.000Z"' };
  const logger = pino(options, { write: (line: string) => void lines.push(line) });
  return { logger: logger as unknown as FastifyBaseLogger, lines };
}

const cases: FlatFields[] = [
  {
    request_id: 'req_1', user: 'alice.crypto', credential: 'personal_token', key: 'default', model: 'claude-sonnet-4-6', transport: 'http',
    stream: true, status: 200, outcome: 'complete', error_type: undefined, input_tokens: 12, output_tokens: 34, latency_ms: 5, ttfb_ms: null, fallback: undefined,
  },
  { model: 'quote " backslash \\ newline \n tab \t nul \u0000 ünïcødé ✓ emoji 🚀', status: 529, error_type: 'overloaded_error' },
  { nan: Number.NaN, inf: Number.POSITIVE_INFINITY, negative: -1.5, big: 2 ** 53, no: false },
  {},
];

describe('flatLine', () => {
  it.each(cases.map((fields, i) => [i, fields] as const))('writes what pino writes (case %i)', (_i, fields) => {
    const { logger, lines } = capture();
    logger.info(fields, 'chat request settled');
    flatLine(logger, 'info', fields, 'chat request settled')!();
    expect(lines).toHaveLength(2);
    expect(lines[1]).toBe(lines[0]);
    expect(JSON.parse(lines[1]!)).toMatchObject({ level: 'info', service: 'portcullis', msg: 'chat request settled' });
  });

  it("carries a child logger's bindings, and writes warnings at their level", () => {
    const { logger, lines } = capture();
    const child = logger.child({ instance: 'i-1' });
    child.warn({ a: 1 }, 'm');
    flatLine(child, 'warn', { a: 1 }, 'm')!();
    expect(lines[1]).toBe(lines[0]);
    expect(JSON.parse(lines[1]!)).toMatchObject({ level: 'warn', instance: 'i-1', a: 1 });
  });

  it('writes the line only when asked, with the time it was made', () => {
    const lines: string[] = [];
    let now = 1;
    const logger = pino({ base: null, timestamp: () => `,"time":${now}` }, { write: (line: string) => void lines.push(line) }) as unknown as FastifyBaseLogger;
    const write = flatLine(logger, 'info', { a: 1 }, 'm')!;
    now = 2;
    expect(lines).toEqual([]);
    write();
    expect(JSON.parse(lines[0]!)).toMatchObject({ time: 1, a: 1, msg: 'm' });
  });

  it('writes nothing below the logger level', () => {
    const { logger, lines } = capture('warn');
    expect(flatLine(logger, 'info', { a: 1 }, 'm')).toBeUndefined();
    expect(lines).toEqual([]);
  });

  it('calls a logger that is not pino the plain way', () => {
    const calls: unknown[][] = [];
    const plain = { info: (...args: unknown[]) => void calls.push(args) } as unknown as FastifyBaseLogger;
    const write = flatLine(plain, 'info', { a: 1 }, 'm')!;
    expect(calls).toEqual([]);
    write();
    expect(calls).toEqual([[{ a: 1 }, 'm']]);
  });
});
