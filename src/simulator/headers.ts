/**
 * Response headers and ids, built cheaply: the simulator is the baseline in proxy benchmarks.
 * The rate-limit reset timestamp is formatted at most once per second.
 */
import { randomBytes } from 'node:crypto';

const LIMITS = { requests: 4000, tokens: 2_000_000, 'input-tokens': 2_000_000, 'output-tokens': 400_000 } as const;

/** Ids shaped like Anthropic's (`req_011…`, `msg_011…`, `toolu_011…`), unique per simulator. */
export class IdSource {
  private readonly prefix = `011Sim${randomBytes(6).toString('hex')}`;
  private n = 0;

  next(kind: 'req' | 'msg' | 'toolu'): string {
    this.n += 1;
    return `${kind}_${this.prefix}${this.n.toString(36).padStart(8, '0')}`;
  }
}

export class HeaderSource {
  private second = -1;
  private reset = '';

  private resetTime(): string {
    const now = Date.now();
    const second = Math.floor(now / 1000);
    if (second !== this.second) {
      this.second = second;
      this.reset = new Date((second + 60) * 1000).toISOString().replace('.000Z', 'Z');
    }
    return this.reset;
  }

  /**
   * The headers every answer carries: `request-id` and the four
   * `anthropic-ratelimit-*-{limit,remaining,reset}` triples. A 429 reports no requests left.
   */
  common(requestId: string, contentType: string, limited = false): Record<string, string> {
    const reset = this.resetTime();
    return {
      'content-type': contentType,
      'request-id': requestId,
      'anthropic-organization-id': '00000000-0000-4000-8000-000000000000',
      'anthropic-ratelimit-requests-limit': '4000',
      'anthropic-ratelimit-requests-remaining': limited ? '0' : String(LIMITS.requests - 1),
      'anthropic-ratelimit-requests-reset': reset,
      'anthropic-ratelimit-tokens-limit': '2000000',
      'anthropic-ratelimit-tokens-remaining': limited ? '0' : '2000000',
      'anthropic-ratelimit-tokens-reset': reset,
      'anthropic-ratelimit-input-tokens-limit': '2000000',
      'anthropic-ratelimit-input-tokens-remaining': limited ? '0' : '2000000',
      'anthropic-ratelimit-input-tokens-reset': reset,
      'anthropic-ratelimit-output-tokens-limit': '400000',
      'anthropic-ratelimit-output-tokens-remaining': limited ? '0' : '400000',
      'anthropic-ratelimit-output-tokens-reset': reset,
    };
  }
}

export const JSON_TYPE = 'application/json';
export const SSE_TYPE = 'text/event-stream; charset=utf-8';
