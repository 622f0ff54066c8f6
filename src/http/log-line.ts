/**
 * A log line of flat fields, made as pino itself makes `logger[level](fields, msg)` (the same
 * level, time, bindings and message, in the same order) but serialized by one
 * `JSON.stringify` instead of pino's key-by-key serialization, and written when the caller
 * chooses. For the line every chat request writes when it settles (chat/settle.ts), the
 * busiest line there is: under the proxy bench's load, pino's serialization of its 18 fields
 * cost several times its price in a loop of its own (docs/benchmarks.md, session 9).
 *
 * Pino's serializers, redaction, mixins and hooks do not run: only for fields that are never
 * secret and need no serializer. A logger that is not a pino instance gets a plain call.
 * test/foundation/log-line.test.ts holds it to pino's own output with the app's options.
 */
import pino from 'pino';
import type { FastifyBaseLogger } from 'fastify';
import type { Logger } from 'pino';

const symbols = pino.symbols as unknown as Record<string, symbol>;
const STREAM = symbols.streamSym!;
const LEVEL_PREFIXES = symbols.lsCacheSym!;
const TIME = symbols.timeSym!;
const BINDINGS = symbols.chindingsSym!;
const END = symbols.endSym!;
const MSG_PREFIX = symbols.msgPrefixSym!;

type Level = 'error' | 'warn' | 'info' | 'debug';
export type FlatFields = Record<string, string | number | boolean | null | undefined>;

/**
 * The line, stamped now; call the function returned to write it (it holds the line's text,
 * not `fields`). Undefined when `level` is below the logger's. `members`, when given, writes
 * `fields` as JSON object members (what `JSON.stringify(fields).slice(1, -1)` gives) faster
 * than JSON.stringify does for fields it knows (chat/settle.ts).
 */
export function flatLine<F extends FlatFields>(logger: FastifyBaseLogger, level: Level, fields: F, msg: string, members?: (fields: F) => string): (() => void) | undefined {
  const p = logger as unknown as Record<symbol, unknown> & { levels?: { values: Record<string, number> } };
  const stream = p[STREAM] as { write(line: string): void } | undefined;
  if (stream === undefined || p[MSG_PREFIX] !== undefined || p.levels === undefined) {
    return () => logger[level](fields as FlatFields, msg);
  }
  if (!(logger as unknown as Logger).isLevelEnabled(level)) return undefined;
  // Undefined fields are left out by both; `{}` has no fields to add.
  const json = members ? members(fields) : JSON.stringify(fields).slice(1, -1);
  const props = json.length > 0 ? `,${json}` : '';
  const prefix = (p[LEVEL_PREFIXES] as Record<number, string>)[p.levels.values[level]!];
  const line = `${prefix}${(p[TIME] as () => string)()}${p[BINDINGS] as string}${props},"msg":${JSON.stringify(msg)}${p[END] as string}`;
  return () => stream.write(line);
}
