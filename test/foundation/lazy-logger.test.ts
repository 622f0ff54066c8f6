import { Writable } from 'node:stream';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { LazyChildLogger } from '../../src/http/lazy-logger.js';

function capture() {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(JSON.parse(chunk.toString('utf8')) as Record<string, unknown>);
      done();
    },
  });
  const parent = pino({ level: 'info' }, stream);
  // Counts children made of `parent` itself (pino's children inherit this method).
  let children = 0;
  const original = parent.child;
  parent.child = function (this: typeof parent, ...args: Parameters<typeof original>) {
    if (this === parent) children++;
    return original.apply(this, args);
  } as typeof parent.child;
  return { parent, lines, children: () => children };
}

describe('LazyChildLogger (each request’s logger)', () => {
  it('makes no pino child until a line is logged, then logs with the request’s bindings', async () => {
    const { parent, lines, children } = capture();
    const log = new LazyChildLogger(parent, { request_id: 'req_1' }, {});
    expect(log.level).toBe('info');
    log.debug('below the level');
    expect(children()).toBe(1); // a call materializes it (pino then drops the debug line)
    const quiet = new LazyChildLogger(parent, { request_id: 'req_2' }, {});
    expect(quiet.level).toBe('info');
    expect(children()).toBe(1);
    log.info({ status: 200 }, 'done');
    log.warn('careful');
    expect(children()).toBe(1);
    await new Promise((resolve) => setImmediate(resolve));
    expect(lines).toMatchObject([
      { request_id: 'req_1', status: 200, msg: 'done', level: 30 },
      { request_id: 'req_1', msg: 'careful', level: 40 },
    ]);
    log.child({ user: 'alice' }).error('nested');
    await new Promise((resolve) => setImmediate(resolve));
    expect(lines[2]).toMatchObject({ request_id: 'req_1', user: 'alice', msg: 'nested', level: 50 });
  });
});
