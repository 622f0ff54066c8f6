/**
 * Must-show 2: two gateway instances sharing PostgreSQL and Redis, 20 concurrent clients of
 * one user hitting both alternately; together they admit exactly the limit.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { buildSimulator } from '../../src/simulator/index.js';
import type { Simulator } from '../../src/simulator/index.js';
import { TEST_DATABASE_URL, baseEnv, describeWithRedis, uniqueName } from '../helpers/env.js';
import { SIM_KEY, messagesBody, postMessages, startGateway } from './helpers.js';
import type { TestGateway } from './helpers.js';

const LIMIT = 7;
const CLIENTS = 20;

describeWithRedis('two gateway instances share one limit', ({ url, prefix }) => {
  if (!TEST_DATABASE_URL) {
    if (process.env.PORTCULLIS_REQUIRE_SERVICES === '1') it('needs TEST_DATABASE_URL', () => expect.fail('TEST_DATABASE_URL is not set but PORTCULLIS_REQUIRE_SERVICES=1'));
    else it.skip('skipped: set TEST_DATABASE_URL to run it', () => {});
    return;
  }
  const schema = uniqueName('t').toLowerCase();
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-rl-cluster-'));
  let sim: Simulator;
  const gateways: TestGateway[] = [];

  beforeAll(async () => {
    sim = await buildSimulator({ keys: [SIM_KEY] });
    const simulatorUrl = await sim.listen();
    const env = {
      ...baseEnv(dir),
      DATABASE_URL: TEST_DATABASE_URL,
      DATABASE_SCHEMA: schema,
      REDIS_URL: url,
      REDIS_KEY_PREFIX: prefix,
      RATE_LIMIT_RPM: String(LIMIT),
      RATE_LIMIT_TPM: '0',
    };
    // One after the other: the first applies the migrations, the second finds them done.
    for (let i = 0; i < 2; i++) gateways.push(await startGateway({ simulatorUrl, baseEnv: env, realStore: true }));
  });
  afterAll(async () => {
    await Promise.all(gateways.map((g) => g.close()));
    await sim?.close();
    const client = new pg.Client({ connectionString: TEST_DATABASE_URL });
    await client.connect();
    await client.query(`drop schema if exists "${schema}" cascade`);
    await client.end();
    rmSync(dir, { recursive: true, force: true });
  });

  it(`admits exactly ${LIMIT} of ${CLIENTS * 2} concurrent requests spread over both instances`, async () => {
    const [a, b] = gateways as [TestGateway, TestGateway];
    expect(a.engine.kind).toBe('distributed');
    const user = await a.app.services.users.create({ issuer: 'https://idp.test', subject: 'cluster.crypto' });
    const { token } = await a.app.services.personalTokens.create(user.id, { name: 'cluster' });
    const body = messagesBody(10);
    // Each client alternates: one request to one instance, then one to the other.
    const client = async (i: number): Promise<Response[]> => {
      const order = i % 2 === 0 ? [a, b] : [b, a];
      const answers: Response[] = [];
      for (const g of order) answers.push(await postMessages(g.url, token, body));
      return answers;
    };
    const answers = (await Promise.all(Array.from({ length: CLIENTS }, (_, i) => client(i)))).flat();
    const statuses = answers.map((r) => r.status);
    expect(statuses.filter((s) => s === 200)).toHaveLength(LIMIT);
    expect(statuses.filter((s) => s === 429)).toHaveLength(CLIENTS * 2 - LIMIT);
    for (const r of answers.filter((x) => x.status === 429)) {
      expect(Number(r.headers.get('retry-after'))).toBeGreaterThanOrEqual(59);
      expect(((await r.json()) as { error: { code: string } }).error.code).toBe('requests_per_minute');
    }
    await Promise.all(answers.filter((r) => r.status === 200).map((r) => r.text()));
    // Both instances served admissions and refusals: the limit really was shared.
    expect(sim.requests).toHaveLength(LIMIT);
  });
});
