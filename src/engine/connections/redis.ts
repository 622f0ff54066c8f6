/**
 * The connection directory on Redis, shared by every instance. Keys under PREFIX:
 * `c:<id>` the connection as JSON `{o: owner, m: meta}`; `u:<userId>` a hash id → owner;
 * `o:<owner>` the ids an instance holds; `all` a sorted set id → connectedAt (oldest first);
 * `owners` the instances known; `alive:<owner>` the instance's heartbeat, with a TTL.
 *
 * Every read ignores connections whose owner's heartbeat expired, so a crashed instance's
 * connections vanish from answers within `ttlMs`; each heartbeat also sweeps such owners'
 * entries away (one atomic script, so one instance does it) and reports the dead owners
 * through `onOwnerExpired` (the realtime server settles their chats). Each write is one
 * atomic script (`addWithinCap` counts the user's live connections and adds in the same
 * script, so the per-user cap holds across instances). The metadata of this instance's
 * connections is republished on every heartbeat when it changed, so counters lag by at most
 * one heartbeat. An instance that was itself swept while alive (its heartbeats could not
 * reach Redis for longer than `ttlMs`) writes all its connections again at its next
 * heartbeat, so they come back into every answer and into the per-user cap.
 *
 * The scripts compute key names from the prefix: on Redis Cluster give REDIS_KEY_PREFIX a
 * hash tag (`{portcullis}:`) so all directory keys live in one slot.
 */
import type { Redis } from 'ioredis';
import type { ConnectionDirectory, ConnectionFilter, ConnectionMeta } from './port.js';
import { matchesFilter } from './port.js';

export interface RedisConnectionDirectoryOptions {
  redis: Redis;
  /** e.g. `portcullis:cd:`. */
  prefix: string;
  /** This instance's id (the owner of the connections it adds). */
  owner: string;
  /** How long a heartbeat keeps an instance alive. Default 10 s. */
  ttlMs?: number;
  /** Heartbeat period. Default ttlMs / 3. */
  heartbeatMs?: number;
  /** Called with the instances whose heartbeat expired, once, by the instance that swept them. */
  onOwnerExpired?: (owners: string[]) => void;
  onError?: (err: unknown) => void;
}

const LIB = `
local P = ARGV[1]
local function drop(id)
  local raw = redis.call('GET', P .. 'c:' .. id)
  if not raw then return 0 end
  local rec = cjson.decode(raw)
  redis.call('DEL', P .. 'c:' .. id)
  redis.call('HDEL', P .. 'u:' .. rec.m.userId, id)
  redis.call('SREM', P .. 'o:' .. rec.o, id)
  redis.call('ZREM', P .. 'all', id)
  return 1
end
local alive = {}
local function isAlive(owner)
  if alive[owner] == nil then alive[owner] = redis.call('EXISTS', P .. 'alive:' .. owner) == 1 end
  return alive[owner]
end
`;
/** ARGV: prefix, owner, id, userId, connectedAt, json, ttl. */
const ADD = `${LIB}
drop(ARGV[3])
redis.call('SET', P .. 'c:' .. ARGV[3], ARGV[6])
redis.call('HSET', P .. 'u:' .. ARGV[4], ARGV[3], ARGV[2])
redis.call('SADD', P .. 'o:' .. ARGV[2], ARGV[3])
redis.call('ZADD', P .. 'all', ARGV[5], ARGV[3])
redis.call('SADD', P .. 'owners', ARGV[2])
redis.call('SET', P .. 'alive:' .. ARGV[2], '1', 'PX', ARGV[7])
return 1
`;
/** ARGV: as ADD, then cap → 1 when added, 0 when the user's other live connections reach cap. */
const ADD_CAPPED = `${LIB}
local h = redis.call('HGETALL', P .. 'u:' .. ARGV[4])
local n = 0
for i = 1, #h, 2 do
  if h[i] ~= ARGV[3] and isAlive(h[i + 1]) then n = n + 1 end
end
if n >= tonumber(ARGV[8]) then return 0 end
${ADD.slice(LIB.length)}`;
/** ARGV: prefix, id. */
const REMOVE = `${LIB}
return drop(ARGV[2])
`;
/** ARGV: prefix, ids... → the JSON of those held by a live instance. */
const READ = `${LIB}
local out = {}
for i = 2, #ARGV do
  local raw = redis.call('GET', P .. 'c:' .. ARGV[i])
  if raw then
    local owner = string.match(raw, '^{"o":"([^"]*)"')
    if owner and isAlive(owner) then out[#out + 1] = raw end
  end
end
return out
`;
/** ARGV: prefix, userId, countOnly → count, or the JSON of the user's live connections. */
const USER = `${LIB}
local h = redis.call('HGETALL', P .. 'u:' .. ARGV[2])
local ids = {}
for i = 1, #h, 2 do
  if isAlive(h[i + 1]) then ids[#ids + 1] = h[i] end
end
if ARGV[3] == '1' then return #ids end
local out = {}
for _, id in ipairs(ids) do
  local raw = redis.call('GET', P .. 'c:' .. id)
  if raw then out[#out + 1] = raw end
end
return out
`;
/** ARGV: prefix → live connections in total. */
const COUNT = `${LIB}
local n = 0
for _, owner in ipairs(redis.call('SMEMBERS', P .. 'owners')) do
  if isAlive(owner) then n = n + redis.call('SCARD', P .. 'o:' .. owner) end
end
return n
`;
/**
 * ARGV: prefix, owner, ttl, then id/json pairs to refresh → how many connections Redis lists
 * for this instance (fewer than it holds: it lapsed and was swept), then the owners swept (dead).
 */
const HEARTBEAT = `${LIB}
redis.call('SET', P .. 'alive:' .. ARGV[2], '1', 'PX', ARGV[3])
redis.call('SADD', P .. 'owners', ARGV[2])
for i = 4, #ARGV, 2 do redis.call('SET', P .. 'c:' .. ARGV[i], ARGV[i + 1], 'XX') end
local swept = { tostring(redis.call('SCARD', P .. 'o:' .. ARGV[2])) }
for _, owner in ipairs(redis.call('SMEMBERS', P .. 'owners')) do
  if not isAlive(owner) then
    for _, id in ipairs(redis.call('SMEMBERS', P .. 'o:' .. owner)) do drop(id) end
    redis.call('DEL', P .. 'o:' .. owner)
    redis.call('SREM', P .. 'owners', owner)
    swept[#swept + 1] = owner
  end
end
return swept
`;
/** ARGV: prefix, owner → forgets the instance and its connections (graceful stop). */
const LEAVE = `${LIB}
for _, id in ipairs(redis.call('SMEMBERS', P .. 'o:' .. ARGV[2])) do drop(id) end
redis.call('DEL', P .. 'o:' .. ARGV[2], P .. 'alive:' .. ARGV[2])
redis.call('SREM', P .. 'owners', ARGV[2])
return 1
`;

type Scripted = Redis & Record<'cdAdd' | 'cdAddCapped' | 'cdRemove' | 'cdRead' | 'cdUser' | 'cdCount' | 'cdHeartbeat' | 'cdLeave', (...args: (string | number)[]) => Promise<unknown>>;

const READ_CHUNK = 500;

export class RedisConnectionDirectory implements ConnectionDirectory {
  private readonly redis: Scripted;
  private readonly ttlMs: number;
  /** The metadata objects of this instance's connections, and the JSON last written. */
  private readonly own = new Map<string, { meta: ConnectionMeta; written: string }>();
  /** Connections closed here whose removal from Redis failed: removed again at each heartbeat until it works. */
  private readonly unremoved = new Set<string>();
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly options: RedisConnectionDirectoryOptions) {
    this.ttlMs = options.ttlMs ?? 10_000;
    const redis = options.redis;
    for (const [name, lua] of Object.entries({ cdAdd: ADD, cdAddCapped: ADD_CAPPED, cdRemove: REMOVE, cdRead: READ, cdUser: USER, cdCount: COUNT, cdHeartbeat: HEARTBEAT, cdLeave: LEAVE })) {
      redis.defineCommand(name, { numberOfKeys: 0, lua });
    }
    this.redis = redis as Scripted;
    this.timer = setInterval(() => void this.heartbeat().catch((err) => options.onError?.(err)), options.heartbeatMs ?? Math.floor(this.ttlMs / 3));
    this.timer.unref();
  }

  private json(meta: ConnectionMeta): string {
    // The owner comes first: the READ script finds it with a pattern, without decoding.
    return JSON.stringify({ o: this.options.owner, m: meta });
  }

  async add(meta: ConnectionMeta): Promise<void> {
    const written = this.json(meta);
    this.own.set(meta.id, { meta, written });
    await this.redis.cdAdd(this.options.prefix, this.options.owner, meta.id, meta.userId, meta.connectedAt, written, this.ttlMs);
  }

  async addWithinCap(meta: ConnectionMeta, cap: number): Promise<boolean> {
    const written = this.json(meta);
    const { prefix, owner } = this.options;
    const added = (await this.redis.cdAddCapped(prefix, owner, meta.id, meta.userId, meta.connectedAt, written, this.ttlMs, cap)) === 1;
    if (added) this.own.set(meta.id, { meta, written });
    return added;
  }

  async remove(id: string): Promise<boolean> {
    this.own.delete(id);
    try {
      return (await this.redis.cdRemove(this.options.prefix, id)) === 1;
    } catch (err) {
      // Left in Redis, it would live as long as this instance's heartbeat does.
      this.unremoved.add(id);
      throw err;
    }
  }

  async get(id: string): Promise<ConnectionMeta | undefined> {
    return (await this.read([id]))[0];
  }

  async byUser(userId: string): Promise<ConnectionMeta[]> {
    return decode((await this.redis.cdUser(this.options.prefix, userId, '0')) as string[]);
  }

  async countByUser(userId: string): Promise<number> {
    return Number(await this.redis.cdUser(this.options.prefix, userId, '1'));
  }

  async filter(filter: ConnectionFilter, limit = Number.POSITIVE_INFINITY): Promise<ConnectionMeta[]> {
    if (filter.id !== undefined) return (await this.read([filter.id])).filter((m) => matchesFilter(m, filter));
    if (filter.userId !== undefined) {
      const mine = (await this.byUser(filter.userId)).filter((m) => matchesFilter(m, filter));
      return mine.sort((a, b) => a.connectedAt - b.connectedAt).slice(0, limit);
    }
    const out: ConnectionMeta[] = [];
    const args: string[] = ['-inf', '+inf'];
    if (filter.connectedAfter !== undefined) args[0] = String(filter.connectedAfter);
    if (filter.connectedBefore !== undefined) args[1] = `(${filter.connectedBefore}`;
    for (let offset = 0; out.length < limit; offset += READ_CHUNK) {
      const ids = await this.options.redis.zrangebyscore(`${this.options.prefix}all`, args[0]!, args[1]!, 'LIMIT', offset, READ_CHUNK);
      for (const meta of await this.read(ids)) if (out.length < limit && matchesFilter(meta, filter)) out.push(meta);
      if (ids.length < READ_CHUNK) break;
    }
    return out;
  }

  async count(): Promise<number> {
    return Number(await this.redis.cdCount(this.options.prefix));
  }

  async touch(meta: ConnectionMeta): Promise<void> {
    const mine = this.own.get(meta.id);
    if (!mine) return;
    mine.written = this.json(meta);
    await this.options.redis.set(`${this.options.prefix}c:${meta.id}`, mine.written, 'XX');
  }

  /** Renews this instance's heartbeat, republishes changed metadata, finishes failed removals, sweeps dead instances. */
  async heartbeat(): Promise<string[]> {
    for (const id of this.unremoved) {
      if (!this.own.has(id)) await this.redis.cdRemove(this.options.prefix, id); // unless added again since
      this.unremoved.delete(id);
    }
    const changed: string[] = [];
    for (const [id, mine] of this.own) {
      const now = this.json(mine.meta);
      if (now === mine.written) continue;
      mine.written = now;
      changed.push(id, now);
    }
    const [listed, ...swept] = (await this.redis.cdHeartbeat(this.options.prefix, this.options.owner, this.ttlMs, ...changed)) as string[];
    // Fewer listed than held: this instance lapsed and was swept; write its entries again.
    if (Number(listed) < this.own.size) await this.restore();
    if (swept.length > 0) this.options.onOwnerExpired?.(swept);
    return swept;
  }

  /** Writes every connection this instance holds again (after its heartbeat lapsed). */
  private async restore(): Promise<void> {
    const { prefix, owner } = this.options;
    for (const [id, mine] of this.own) {
      mine.written = this.json(mine.meta);
      await this.redis.cdAdd(prefix, owner, id, mine.meta.userId, mine.meta.connectedAt, mine.written, this.ttlMs);
    }
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    this.own.clear();
    await this.redis.cdLeave(this.options.prefix, this.options.owner);
  }

  private async read(ids: string[]): Promise<ConnectionMeta[]> {
    if (ids.length === 0) return [];
    return decode((await this.redis.cdRead(this.options.prefix, ...ids)) as string[]);
  }
}

function decode(raws: string[]): ConnectionMeta[] {
  return raws.map((raw) => (JSON.parse(raw) as { m: ConnectionMeta }).m);
}
