import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.js';
import { FallbackChain, withModel } from '../../src/upstream/fallback.js';
import { createUpstream } from '../../src/upstream/index.js';
import { responseHeadersForClient, upstreamRequestHeaders } from '../../src/upstream/headers.js';

describe('upstream header policy', () => {
  it('forwards Anthropic and unknown headers, drops credentials, cookies, hop-by-hop and forwarding headers', () => {
    const out = upstreamRequestHeaders(
      {
        'anthropic-version': '2026-10-21',
        'anthropic-beta': 'a-2025,b-2026',
        'x-claude-code-session-id': 's1',
        'x-brand-new-header': 'kept',
        'user-agent': 'Anthropic/JS 1.14.0',
        'content-type': 'application/json',
        authorization: 'Bearer client-secret',
        'x-api-key': 'client-key',
        cookie: 'portcullis_session=zzz',
        host: 'gateway.example',
        'content-length': '12',
        connection: 'keep-alive, x-hop',
        'x-hop': 'named in Connection',
        'keep-alive': 'timeout=5',
        'transfer-encoding': 'chunked',
        upgrade: 'websocket',
        'proxy-authorization': 'Basic x',
        te: 'trailers',
        trailer: 'x',
        'x-forwarded-for': '10.0.0.1',
        'x-forwarded-proto': 'https',
        forwarded: 'for=10.0.0.1',
        'x-request-id': 'client-chosen',
        'x-portcullis-debug': '1',
        'accept-encoding': 'gzip',
        origin: 'https://app.example',
        'sec-fetch-mode': 'cors',
        'x-multi': ['a', 'b'],
      },
      { apiKey: 'sk-lease', requestId: 'req_ours' },
    );
    expect(out).toEqual({
      'anthropic-version': '2026-10-21',
      'anthropic-beta': 'a-2025,b-2026',
      'x-claude-code-session-id': 's1',
      'x-brand-new-header': 'kept',
      'user-agent': 'Anthropic/JS 1.14.0',
      'content-type': 'application/json',
      'x-multi': 'a, b',
      'x-api-key': 'sk-lease',
      'x-request-id': 'req_ours',
    });
  });

  it('gives clients only the allowlisted response headers; upstream rate-limit headers only when asked', () => {
    const upstream = {
      'content-type': 'text/event-stream; charset=utf-8',
      'request-id': 'req_1',
      'retry-after': '3',
      'retry-after-ms': '2500',
      'x-should-retry': 'true',
      'anthropic-ratelimit-requests-remaining': '10',
      'anthropic-organization-id': 'org',
      'content-length': '99',
      'transfer-encoding': 'chunked',
      connection: 'keep-alive',
      'set-cookie': ['a=b'],
    };
    expect(responseHeadersForClient(upstream)).toEqual({
      'content-type': 'text/event-stream; charset=utf-8',
      'request-id': 'req_1',
      'retry-after': '3',
      'retry-after-ms': '2500',
      'x-should-retry': 'true',
    });
    expect(responseHeadersForClient(upstream, { rateLimit: true })).toHaveProperty('anthropic-ratelimit-requests-remaining', '10');
  });
});

describe('fallback models', () => {
  it('follows the chain, stops at cycles and unmatched models', () => {
    const chain = new FallbackChain([
      { pattern: 'claude-opus-*', replacement: 'claude-sonnet-4-5' },
      { pattern: 'claude-sonnet-*', replacement: 'claude-haiku-4-5' },
      { pattern: 'claude-haiku-*', replacement: 'claude-sonnet-4-5' },
    ]);
    expect(chain.after('claude-opus-4-6')).toEqual(['claude-sonnet-4-5', 'claude-haiku-4-5']);
    expect(chain.after('gpt-x')).toEqual([]);
    expect(new FallbackChain().after('claude-opus-4-6')).toEqual([]);
  });

  it('rewrites only the model field', () => {
    const body = Buffer.from('{"model":"claude-opus-4-6","max_tokens":5,"messages":[{"role":"user","content":"x"}],"future_field":{"a":[1,2]}}');
    expect(withModel(body, 'claude-sonnet-4-5')!.toString()).toBe(
      '{"model":"claude-sonnet-4-5","max_tokens":5,"messages":[{"role":"user","content":"x"}],"future_field":{"a":[1,2]}}',
    );
    expect(withModel(Buffer.from('not json'), 'm')).toBeUndefined();
    expect(withModel(Buffer.from('{"messages":[]}'), 'm')).toBeUndefined();
  });

  it('FALLBACK_MODELS and the other upstream settings parse, and bad pairs are refused by name', () => {
    const config = loadConfig({ FALLBACK_MODELS: 'claude-opus-*=claude-sonnet-4-5, claude-sonnet-*=claude-haiku-4-5', UPSTREAM_MAX_RETRIES: '3' });
    expect(config.fallbackModels).toEqual([
      { pattern: 'claude-opus-*', replacement: 'claude-sonnet-4-5' },
      { pattern: 'claude-sonnet-*', replacement: 'claude-haiku-4-5' },
    ]);
    expect(config).toMatchObject({ upstreamMaxRetries: 3, upstreamDeadlineMs: 60_000, upstreamTimeoutMs: 600_000, circuitFailureThreshold: 5, circuitCooldownMs: 30_000 });
    expect(loadConfig({}).fallbackModels).toBeUndefined();
    expect(() => loadConfig({ FALLBACK_MODELS: 'claude-opus-*' })).toThrow(/FALLBACK_MODELS/);
    expect(() => loadConfig({ FALLBACK_MODELS: 'a=b*' })).toThrow(/FALLBACK_MODELS/);
  });
});

describe('createUpstream', () => {
  it('builds the parts from the settings', async () => {
    const config = loadConfig({ UPSTREAM_MAX_RETRIES: '4', CIRCUIT_FAILURE_THRESHOLD: '1', FALLBACK_MODELS: 'a-*=b' });
    const upstream = createUpstream(config, { baseUrl: 'http://127.0.0.1:9' });
    expect(upstream.retry.maxRetries).toBe(4);
    expect(upstream.fallbacks.after('a-1')).toEqual(['b']);
    upstream.circuits.recordFailure('k', 'x');
    expect(upstream.circuits.state('k')).toBe('open');
    await upstream.client.close();
  });
});
