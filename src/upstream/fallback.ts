/**
 * The fallback model chain (FALLBACK_MODELS): `pattern=replacement` rules, comma-separated,
 * where a pattern is a model id with `*` wildcards. When every key failed for a model, the
 * first rule whose pattern matches gives the next model to try; the chain follows rules from
 * there (opus → sonnet → haiku) and stops at a model seen before or with no rule.
 * Only the `model` field of the JSON body is rewritten.
 */
import { z } from 'zod';
import type { ValueParser } from '../config/parsers.js';

export interface FallbackRule {
  pattern: string;
  replacement: string;
}

const MODEL = /^[A-Za-z0-9._:@/*-]+$/;

/** The settings parser for FALLBACK_MODELS. */
export function fallbackRules(): ValueParser<FallbackRule[]> {
  return {
    expected: 'comma-separated pattern=model pairs, e.g. claude-opus-*=claude-sonnet-4-5,claude-sonnet-*=claude-haiku-4-5',
    schema: z.string().transform((value, ctx) => {
      const rules: FallbackRule[] = [];
      for (const part of value.split(',').map((s) => s.trim()).filter(Boolean)) {
        const [pattern, replacement, extra] = part.split('=').map((s) => s.trim());
        if (!pattern || !replacement || extra !== undefined || !MODEL.test(pattern) || !MODEL.test(replacement) || replacement.includes('*')) {
          ctx.addIssue({ code: 'custom', message: `not a pattern=model pair: ${JSON.stringify(part)}` });
          return z.NEVER;
        }
        rules.push({ pattern, replacement });
      }
      return rules;
    }),
  };
}

function globToRegExp(glob: string): RegExp {
  return new RegExp(`^${glob.split('*').map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`);
}

/** Compiled rules; immutable and shared. */
export class FallbackChain {
  private readonly rules: { match: RegExp; replacement: string }[];

  constructor(rules: readonly FallbackRule[] = []) {
    this.rules = rules.map((r) => ({ match: globToRegExp(r.pattern), replacement: r.replacement }));
  }

  /** The models to try after `model`, in order, without repeats (at most 8). */
  after(model: string): string[] {
    const seen = new Set([model]);
    const out: string[] = [];
    let current = model;
    while (out.length < 8) {
      const next = this.rules.find((r) => r.match.test(current))?.replacement;
      if (next === undefined || seen.has(next)) break;
      seen.add(next);
      out.push(next);
      current = next;
    }
    return out;
  }
}

/**
 * The body with only its `model` replaced; undefined when the body is not a JSON object with a
 * string `model` (nothing to rewrite, so no fallback).
 */
export function withModel(body: Buffer, model: string): Buffer | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch {
    return undefined;
  }
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed) || typeof (parsed as { model?: unknown }).model !== 'string') return undefined;
  return Buffer.from(JSON.stringify({ ...(parsed as object), model }), 'utf8');
}
