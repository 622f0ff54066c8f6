/**
 * Parsers for environment values. Each pairs a zod schema with a human description of
 * the expected form, so a bad value stops the process with one line saying what was
 * wanted.
 */
import { z } from 'zod';

export interface ValueParser<T> {
  schema: z.ZodType<T, string>;
  /** How a valid value looks, for error messages and docs. */
  expected: string;
}

export function integer(min: number, max: number): ValueParser<number> {
  return {
    expected: `an integer from ${min} to ${max}`,
    schema: z
      .string()
      .trim()
      .regex(/^-?\d+$/, 'not an integer')
      .transform(Number)
      .pipe(z.number().int().min(min).max(max)),
  };
}

export function text(): ValueParser<string> {
  return { expected: 'a non-empty string', schema: z.string().trim().min(1) };
}

export function oneOf<const T extends readonly [string, ...string[]]>(values: T): ValueParser<T[number]> {
  return {
    expected: `one of ${values.join(', ')}`,
    schema: z.string().trim().pipe(z.enum(values)),
  };
}

export function boolean(): ValueParser<boolean> {
  return {
    expected: 'true or false',
    schema: z
      .string()
      .trim()
      .toLowerCase()
      .pipe(z.enum(['true', 'false', '1', '0', 'yes', 'no']))
      .transform((v) => v === 'true' || v === '1' || v === 'yes'),
  };
}

export function url(protocols: readonly string[]): ValueParser<string> {
  return {
    expected: `a URL starting with ${protocols.map((p) => `${p}//`).join(' or ')}`,
    schema: z
      .string()
      .trim()
      .refine((v) => {
        try {
          return protocols.includes(new URL(v).protocol);
        } catch {
          return false;
        }
      }, 'not a valid URL of that kind'),
  };
}

export function list(): ValueParser<string[]> {
  return {
    expected: 'a comma-separated list',
    schema: z.string().transform((v) => v.split(',').map((s) => s.trim()).filter(Boolean)),
  };
}

const units: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** Parses `500ms`, `30s`, `15m`, `1h`, `30d` (or a bare number of milliseconds) into milliseconds. */
export function parseDuration(value: string): number | undefined {
  const match = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?$/.exec(value.trim());
  if (!match) return undefined;
  const ms = Number(match[1]) * units[match[2] ?? 'ms']!;
  return Number.isFinite(ms) ? Math.round(ms) : undefined;
}

export function duration(minMs = 0): ValueParser<number> {
  return {
    expected: 'a duration such as 500ms, 30s, 15m, 1h or 30d',
    schema: z
      .string()
      .transform((v, ctx) => {
        const ms = parseDuration(v);
        if (ms === undefined) {
          ctx.addIssue({ code: 'custom', message: 'not a duration' });
          return z.NEVER;
        }
        return ms;
      })
      .pipe(z.number().min(minMs)),
  };
}

/** A base64 string that decodes to exactly `bytes` bytes (e.g. an AES-256 key). */
export function base64Key(bytes: number): ValueParser<string> {
  return {
    expected: `base64 of ${bytes} random bytes (openssl rand -base64 ${bytes})`,
    schema: z
      .string()
      .trim()
      .refine((v) => /^[A-Za-z0-9+/_-]+={0,2}$/.test(v) && Buffer.from(v, 'base64').length === bytes, 'wrong length or alphabet'),
  };
}

/** A JSON document checked against `schema`; `expected` describes its shape for messages and docs. */
export function json<T>(schema: z.ZodType<T>, expected: string): ValueParser<T> {
  return {
    expected,
    schema: z
      .string()
      .transform((v, ctx) => {
        try {
          return JSON.parse(v) as unknown;
        } catch {
          ctx.addIssue({ code: 'custom', message: 'not valid JSON' });
          return z.NEVER;
        }
      })
      .pipe(schema) as unknown as z.ZodType<T, string>,
  };
}
