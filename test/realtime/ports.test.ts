/**
 * Contract suites for the realtime ports (connection directory, stream buffer, bus), run
 * against the in-process implementations always and the Redis ones when TEST_REDIS_URL is set.
 */
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { MemoryBus, RedisBus } from '../../src/engine/bus/index.js';
import type { Bus } from '../../src/engine/bus/index.js';
import { MemoryConnectionDirectory, RedisConnectionDirectory } from '../../src/engine/connections/index.js';
import type { ConnectionDirectory, ConnectionMeta } from '../../src/engine/connections/index.js';
import { MemoryStreamBuffer, RedisStreamBuffer } from '../../src/engine/stream-buffer/index.js';
import type { StreamBuffer, StreamEntry } from '../../src/engine/stream-buffer/index.js';
import { describeWithRedis, uniqueName } from '../helpers/env.js';

function meta(id: string, userId: string, extra: Partial<ConnectionMeta> = {}): ConnectionMeta {
  return {
    id, userId, roles: ['member'], sessionId: null, personalTokenId: null, ip: '127.0.0.1', userAgent: null,
    connectedAt: 1000, lastActivityAt: 1000, protocol: 'portcullis.v1', inFlight: 0, bytesIn: 0, bytesOut: 0, instanceId: 'i1', ...extra,
  };
}

export function describeDirectoryContract(name: string, factory: () => ConnectionDirectory): void {
  describe(`ConnectionDirectory contract [${name}]`, () => {
    it('finds by id and by user, counts, removes idempotently', async () => {
      const d = factory();
      await d.add(meta('c1', 'u1'));
      await d.add(meta('c2', 'u1'));
      await d.add(meta('c3', 'u2'));
      expect((await d.get('c2'))?.userId).toBe('u1');
      expect((await d.byUser('u1')).map((m) => m.id).sort()).toEqual(['c1', 'c2']);
      expect(await d.countByUser('u1')).toBe(2);
      expect(await d.count()).toBe(3);
      expect(await d.remove('c1')).toBe(true);
      expect(await d.remove('c1')).toBe(false);
      expect(await d.countByUser('u1')).toBe(1);
      expect(await d.byUser('nobody')).toEqual([]);
      await d.close();
    });

    it('addWithinCap: concurrent adds for one user never exceed the cap; re-adding an id does not count it', async () => {
      const d = factory();
      await d.add(meta('other', 'u2'));
      const results = await Promise.all(Array.from({ length: 20 }, (_, i) => d.addWithinCap(meta(`k${i}`, 'u1'), 3)));
      expect(results.filter(Boolean)).toHaveLength(3);
      expect(await d.countByUser('u1')).toBe(3);
      const [held] = await d.byUser('u1');
      expect(await d.addWithinCap(meta(held!.id, 'u1'), 3)).toBe(true);
      expect(await d.addWithinCap(meta('late', 'u1'), 3)).toBe(false);
      expect(await d.get('late')).toBeUndefined();
      await d.remove(held!.id);
      expect(await d.addWithinCap(meta('late', 'u1'), 3)).toBe(true);
      expect(await d.addWithinCap(meta('u2b', 'u2'), 1)).toBe(false);
      expect(await d.countByUser('u1')).toBe(3);
      await d.close();
    });

    it('filters by role, connection time, activity, session and instance; answers snapshots', async () => {
      const d = factory();
      await d.add(meta('a', 'u1', { roles: ['admin'], connectedAt: 100, lastActivityAt: 500, sessionId: 's1' }));
      await d.add(meta('b', 'u2', { connectedAt: 200, lastActivityAt: 150, instanceId: 'i2' }));
      await d.add(meta('c', 'u3', { connectedAt: 300, lastActivityAt: 900 }));
      const ids = async (f: Parameters<ConnectionDirectory['filter']>[0], limit?: number) => (await d.filter(f, limit)).map((m) => m.id).sort();
      expect(await ids({ role: 'admin' })).toEqual(['a']);
      expect(await ids({ connectedBefore: 300 })).toEqual(['a', 'b']);
      expect(await ids({ connectedAfter: 200 })).toEqual(['b', 'c']);
      expect(await ids({ idleSince: 600 })).toEqual(['a', 'b']);
      expect(await ids({ sessionId: 's1' })).toEqual(['a']);
      expect(await ids({ instanceId: 'i1' })).toEqual(['a', 'c']);
      expect(await ids({ id: 'b', instanceId: 'i1' })).toEqual([]);
      expect(await ids({}, 2)).toHaveLength(2);
      const snapshot = await d.byUser('u1');
      await d.remove('a');
      expect(snapshot).toHaveLength(1);
      await d.close();
    });
  });
}

export function describeStreamBufferContract(name: string, factory: (maxEvents: number) => StreamBuffer): void {
  const entry = (seq: number, type = 'chat.event'): StreamEntry => ({ seq, frame: { type, seq } });
  describe(`StreamBuffer contract [${name}]`, () => {
    it('reads everything after a seq, then the end; unknown streams read null', async () => {
      const b = factory(100);
      await b.open('k', 60_000);
      for (let i = 0; i < 5; i++) await b.append('k', entry(i));
      expect((await b.read('k', 2))!.entries.map((e) => e.seq)).toEqual([3, 4]);
      expect((await b.read('k', -1))!.ended).toBe(false);
      await b.end('k', entry(5, 'chat.done'), 60_000);
      const all = await b.read('k', -1);
      expect(all!.entries.map((e) => e.seq)).toEqual([0, 1, 2, 3, 4, 5]);
      expect(all!.ended).toBe(true);
      expect(await b.read('missing', -1)).toBeNull();
      await b.close();
    });

    it('subscribe-then-read sees every entry exactly once', async () => {
      const b = factory(100);
      await b.open('k', 60_000);
      await b.append('k', entry(0));
      const got: number[] = [];
      let last = -1;
      const take = (e: StreamEntry) => {
        if (e.seq > last) {
          last = e.seq;
          got.push(e.seq);
        }
      };
      const live: StreamEntry[] = [];
      const off = await b.subscribe('k', (e) => live.push(e));
      await b.append('k', entry(1));
      for (const e of (await b.read('k', -1))!.entries) take(e);
      await b.append('k', entry(2));
      for (const e of live) take(e);
      expect(got).toEqual([0, 1, 2]);
      off();
      await b.close();
    });

    it('a listener that throws neither fails the write nor stops the other listeners', async () => {
      const b = factory(100);
      await b.open('k', 60_000);
      const seen: number[] = [];
      const offs = [
        await b.subscribe('k', () => {
          throw new Error('listener failed');
        }),
        await b.subscribe('k', (e) => seen.push(e.seq)),
      ];
      await b.append('k', entry(0));
      await b.end('k', entry(1, 'chat.done'), 60_000);
      for (let i = 0; i < 100 && seen.length < 2; i++) await new Promise((r) => setTimeout(r, 5));
      expect(seen).toEqual([0, 1]);
      for (const off of offs) off();
      await b.close();
    });

    it('is all or nothing once older entries were dropped, and expires after its ttl', async () => {
      const b = factory(3);
      await b.open('k', 60_000);
      for (let i = 0; i < 6; i++) await b.append('k', entry(i));
      expect(await b.read('k', 1)).toBeNull();
      expect((await b.read('k', 2))!.entries.map((e) => e.seq)).toEqual([3, 4, 5]);
      // The newest seq is known even when the oldest entries are gone.
      expect(await b.last('k')).toEqual({ seq: 5, ended: false });
      await b.end('k', entry(6, 'chat.error'), 60_000);
      expect(await b.last('k')).toEqual({ seq: 6, ended: true });
      await b.open('empty', 60_000);
      expect(await b.last('empty')).toEqual({ seq: -1, ended: false });
      expect(await b.last('missing')).toBeNull();
      await b.open('short', 30);
      await b.end('short', entry(0, 'chat.done'), 30);
      await new Promise((r) => setTimeout(r, 60));
      expect(await b.read('short', -1)).toBeNull();
      await b.close();
    });
  });
}

export function describeBusContract(name: string, factory: () => Bus): void {
  describe(`Bus contract [${name}]`, () => {
    it('delivers copies in order to every subscriber of the topic, survives a throwing one, unsubscribes', async () => {
      const bus = factory();
      const a: unknown[] = [];
      const b: unknown[] = [];
      await bus.subscribe('t', () => {
        throw new Error('boom');
      });
      const offA = await bus.subscribe('t', (p) => a.push(p));
      await bus.subscribe('t', (p) => b.push(p));
      await bus.subscribe('other', () => a.push('wrong'));
      const payload = { n: 1 };
      await bus.publish('t', payload);
      await bus.publish('t', { n: 2 });
      for (let i = 0; i < 50 && b.length < 2; i++) await new Promise((r) => setTimeout(r, 5));
      expect(a).toEqual([{ n: 1 }, { n: 2 }]);
      expect(b).toEqual([{ n: 1 }, { n: 2 }]);
      expect(a[0]).not.toBe(payload);
      offA();
      await bus.publish('t', { n: 3 });
      for (let i = 0; i < 50 && b.length < 3; i++) await new Promise((r) => setTimeout(r, 5));
      expect(a).toHaveLength(2);
      await bus.close();
    });
  });
}

describeDirectoryContract('memory', () => new MemoryConnectionDirectory());
describeStreamBufferContract('memory', (maxEvents) => new MemoryStreamBuffer({ maxEvents }));
describeBusContract('memory', () => new MemoryBus());

describeWithRedis('realtime ports', ({ url, prefix }) => {
  const clients: Redis[] = [];
  const client = () => {
    const redis = new Redis(url);
    clients.push(redis);
    return redis;
  };
  afterAll(() => {
    for (const c of clients) c.disconnect();
  });
  const unique = (what: string) => `${prefix}${uniqueName(what)}:`;
  describeDirectoryContract('redis', () => new RedisConnectionDirectory({ redis: client(), prefix: unique('cd'), owner: uniqueName('ins') }));
  describeStreamBufferContract('redis', (maxEvents) => {
    const p = unique('sb');
    return new RedisStreamBuffer({ redis: client(), bus: new RedisBus({ redis: client(), prefix: `${p}bus:` }), prefix: p, maxEvents });
  });
  describeBusContract('redis', () => new RedisBus({ redis: client(), prefix: unique('bus') }));

  it('a tailing instance that missed published entries reads them from the stream, in order, each once', async () => {
    const p = unique('sb4');
    const writer = new RedisStreamBuffer({ redis: client(), bus: new RedisBus({ redis: client(), prefix: `${p}bus:` }), prefix: p });
    const reader = new RedisStreamBuffer({ redis: client(), bus: new RedisBus({ redis: client(), prefix: `${p}bus:` }), prefix: p });
    // Writes to the same stream whose messages go to another channel: the reader never hears them, as when its subscriber connection dropped.
    const unheard = new RedisStreamBuffer({ redis: client(), bus: new RedisBus({ redis: client(), prefix: `${p}elsewhere:` }), prefix: p });
    await writer.open('k', 60_000);
    const seen: number[] = [];
    let ended = false;
    const off = await reader.subscribe('k', (e, end) => {
      seen.push(e.seq);
      ended ||= end;
    });
    await writer.append('k', { seq: 0, frame: {} });
    for (let i = 0; i < 100 && seen.length < 1; i++) await new Promise((r) => setTimeout(r, 5));
    await unheard.append('k', { seq: 1, frame: {} });
    await unheard.append('k', { seq: 2, frame: {} });
    await writer.append('k', { seq: 3, frame: {} });
    await writer.end('k', { seq: 4, frame: { done: true } }, 60_000);
    for (let i = 0; i < 200 && !ended; i++) await new Promise((r) => setTimeout(r, 5));
    expect(seen).toEqual([0, 1, 2, 3, 4]);
    off();
    for (const b of [writer, reader, unheard]) await b.close();
  });

  it('a stream written on one instance is read and tailed on another, each entry once', async () => {
    const p = unique('sb2');
    const make = () => new RedisStreamBuffer({ redis: client(), bus: new RedisBus({ redis: client(), prefix: `${p}bus:` }), prefix: p });
    const a = make();
    const b = make();
    await a.open('k', 60_000);
    for (let i = 0; i < 3; i++) await a.append('k', { seq: i, frame: { i } });
    const live: number[] = [];
    let ended = false;
    const off = await b.subscribe('k', (e, end) => {
      live.push(e.seq);
      ended ||= end;
    });
    const backlog = (await b.read('k', 0))!.entries.map((e) => e.seq);
    await Promise.all([a.append('k', { seq: 3, frame: {} }), a.append('k', { seq: 4, frame: {} })]);
    await a.end('k', { seq: 5, frame: { done: true } }, 60_000);
    for (let i = 0; i < 100 && !ended; i++) await new Promise((r) => setTimeout(r, 5));
    const seen = [...new Set([...backlog, ...live])];
    expect(backlog).toEqual([1, 2]);
    expect(seen).toEqual([1, 2, 3, 4, 5]);
    expect(ended).toBe(true);
    off();
    await a.close();
    await b.close();
  });

  it('the cap holds across instances adding for one user at once; a dead instance\'s entries do not count', async () => {
    const p = unique('cd3');
    const instances = ['a', 'b', 'c'].map((owner) => new RedisConnectionDirectory({ redis: client(), prefix: p, owner }));
    const results = await Promise.all(
      Array.from({ length: 30 }, (_, i) => instances[i % 3]!.addWithinCap(meta(`x${i}`, 'u1', { instanceId: ['a', 'b', 'c'][i % 3]! }), 4)),
    );
    expect(results.filter(Boolean)).toHaveLength(4);
    expect(await instances[0]!.countByUser('u1')).toBe(4);
    const dead = new RedisConnectionDirectory({ redis: client(), prefix: p, owner: 'dead', ttlMs: 60 });
    await dead.add(meta('d1', 'u9', { instanceId: 'dead' }));
    await (dead as unknown as { timer: NodeJS.Timeout }).timer.close();
    await new Promise((r) => setTimeout(r, 120));
    expect(await instances[1]!.addWithinCap(meta('y1', 'u9', { instanceId: 'b' }), 1)).toBe(true);
    for (const d of instances) await d.close();
  });

  it('an instance swept while alive (its heartbeats lapsed) writes its connections again at its next heartbeat', async () => {
    const p = unique('cd4');
    const lapsing = new RedisConnectionDirectory({ redis: client(), prefix: p, owner: 'lapsing', ttlMs: 60 });
    const other = new RedisConnectionDirectory({ redis: client(), prefix: p, owner: 'other', ttlMs: 5_000 });
    await (lapsing as unknown as { timer: NodeJS.Timeout }).timer.close();
    await lapsing.add(meta('c1', 'u1', { instanceId: 'lapsing' }));
    await new Promise((r) => setTimeout(r, 120));
    expect(await other.heartbeat()).toEqual(['lapsing']);
    expect(await other.countByUser('u1')).toBe(0);
    // A connection added before its next heartbeat (which renews its alive key) hides nothing.
    expect(await lapsing.addWithinCap(meta('c3', 'u1', { instanceId: 'lapsing' }), 5)).toBe(true);
    expect(await lapsing.heartbeat()).toEqual([]);
    expect(await other.countByUser('u1')).toBe(2);
    expect((await other.get('c1'))?.instanceId).toBe('lapsing');
    expect(await other.addWithinCap(meta('c2', 'u1', { instanceId: 'other' }), 2)).toBe(false);
    await lapsing.close();
    await other.close();
  });

  it('a removal that failed is made again at the next heartbeat', async () => {
    const p = unique('cd5');
    const redis = client();
    const directory = new RedisConnectionDirectory({ redis, prefix: p, owner: 'one', ttlMs: 5_000 });
    await directory.add(meta('c1', 'u1', { instanceId: 'one' }));
    const scripted = redis as unknown as { cdRemove: (...args: unknown[]) => Promise<unknown> };
    const real = scripted.cdRemove.bind(redis);
    scripted.cdRemove = () => Promise.reject(new Error('connection lost'));
    await expect(directory.remove('c1')).rejects.toThrow('connection lost');
    scripted.cdRemove = real;
    expect(await directory.countByUser('u1')).toBe(1);
    await directory.heartbeat();
    expect(await directory.countByUser('u1')).toBe(0);
    await directory.close();
  });

  it('a crashed instance\'s connections vanish from every answer and are swept once', async () => {
    const p = unique('cd2');
    const swept: string[][] = [];
    const dead = new RedisConnectionDirectory({ redis: client(), prefix: p, owner: 'dead', ttlMs: 60 });
    const live = new RedisConnectionDirectory({ redis: client(), prefix: p, owner: 'live', ttlMs: 5_000, onOwnerExpired: (o) => swept.push(o) });
    await dead.add(meta('c1', 'u1', { instanceId: 'dead' }));
    await live.add(meta('c2', 'u1', { instanceId: 'live' }));
    expect(await live.countByUser('u1')).toBe(2);
    await (dead as unknown as { timer: NodeJS.Timeout }).timer.close();
    await new Promise((r) => setTimeout(r, 120));
    expect(await live.countByUser('u1')).toBe(1);
    expect(await live.count()).toBe(1);
    expect((await live.filter({})).map((m) => m.id)).toEqual(['c2']);
    expect(await live.heartbeat()).toEqual(['dead']);
    expect(await live.heartbeat()).toEqual([]);
    expect(swept).toEqual([['dead']]);
    await live.close();
  });
});
