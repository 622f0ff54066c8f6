/**
 * A finished answer is not kept in memory while its usage record is being written. Settling
 * runs beside the answer (chat/pipeline.ts): the record can take tens of milliseconds to
 * commit under load, and whatever the waiting settlement holds lives that long. It must hold
 * the settlement's values only, not the request (the upstream body, the client's response,
 * their buffers), which would otherwise stay alive meanwhile and be copied by every
 * young-generation collection.
 */
import { PassThrough } from 'node:stream';
import { setImmediate as turn } from 'node:timers/promises';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ChatPipeline } from '../../src/chat/pipeline.js';
import { Aborter } from '../../src/upstream/client.js';
import { UsageLedger } from '../../src/vault/usage.js';
import { kyselyUsageWriter } from '../../src/vault/usage-writer.js';
import type { Gateway } from './helpers.js';
import { messageBody, startGateway } from './helpers.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

/** Collects garbage until `ref` is cleared (WeakRefs clear only between jobs), or gives up. */
async function collected(ref: WeakRef<object>): Promise<boolean> {
  for (let i = 0; i < 5 && ref.deref() !== undefined; i++) {
    await turn();
    gc();
  }
  return ref.deref() === undefined;
}

describe('settling beside the answer', () => {
  let gw: Gateway;
  beforeAll(async () => {
    gw = await startGateway();
  });
  afterAll(async () => {
    await gw?.close();
  });

  it('lets the finished response go while its usage record waits to be written', async () => {
    const db = gw.engine.database.db;
    // A writer that holds every batch until the test lets it through.
    let open!: () => void;
    const gate = new Promise<void>((resolve) => (open = resolve));
    const inner = kyselyUsageWriter(db);
    const usage = new UsageLedger(db, { flushIntervalMs: 1, writer: { write: async (rows) => (await gate, inner.write(rows)), close: async () => {} } });
    const { upstream, vault, limiter } = gw.app.services;
    const chat = new ChatPipeline({ upstream, keys: vault, limiter, usage, log: gw.app.log });
    const requestId = 'req_retention_1';

    // In a function of its own, so that nothing of the request stays on this test's stack.
    const answer = async (): Promise<{ response: WeakRef<PassThrough>; text: string }> => {
      const auth = await gw.app.services.authenticate({ apiKey: gw.token });
      const result = await chat.messages({
        auth,
        path: '/v1/messages',
        headers: { 'anthropic-version': '2023-06-01', 'content-type': 'application/json' },
        body: Buffer.from(JSON.stringify(messageBody('hello there', { stream: true }))),
        requestId,
        signal: new Aborter(),
      });
      if (result.kind !== 'stream') throw new Error(`expected a stream, got ${result.status}`);
      const response = new PassThrough();
      let text = '';
      response.on('data', (chunk: Buffer) => (text += chunk.toString('utf8')));
      await result.pipeTo(response);
      return { response: new WeakRef(response), text };
    };
    const { response, text } = await answer();
    expect(text).toContain('event: message_stop');

    await new Promise((r) => setTimeout(r, 20)); // the batch reaches the writer and waits there
    const written = () => db.selectFrom('usage_records').select('request_id').where('request_id', '=', requestId).execute();
    expect(await written()).toHaveLength(0);
    expect(await collected(response)).toBe(true);

    open();
    await chat.drain();
    expect(await written()).toHaveLength(1);
    await usage.close();
  });
});
