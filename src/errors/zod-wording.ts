/**
 * A zod issue worded as Anthropic words its own validation errors (`max_tokens: Field
 * required`, `Input should be a valid integer`, …), so a body the gateway refuses reads as
 * one Anthropic would have refused (Claude Code and the SDKs show these words). The schema
 * must be parsed with `{ reportInput: true }`: without the input, a field of the wrong type
 * cannot be told from a missing one.
 */
import type { z } from 'zod';

const TYPE_NAMES: Record<string, string> = { string: 'string', int: 'integer', number: 'number', array: 'list', object: 'dictionary', boolean: 'boolean' };

export function anthropicIssueMessage(issue: z.core.$ZodIssue): string {
  if (issue.code === 'invalid_type') {
    if (!('input' in issue) || issue.input === undefined) return 'Field required';
    return `Input should be a valid ${TYPE_NAMES[issue.expected] ?? issue.expected}`;
  }
  if (issue.code === 'too_small') {
    if (issue.origin === 'array') return issue.path[0] === 'messages' ? 'at least one message is required' : `List should have at least ${issue.minimum} items`;
    return `Input should be greater than or equal to ${issue.minimum}`;
  }
  if (issue.code === 'invalid_value') return `Input should be ${issue.values.map((v) => `'${String(v)}'`).join(' or ')}`;
  if (issue.code === 'invalid_union') return 'Input should be a valid string or a valid list';
  return issue.message;
}
