export type { ConnectionDirectory, ConnectionFilter, ConnectionMeta } from './port.js';
export { matchesFilter } from './port.js';
export { MemoryConnectionDirectory } from './memory.js';
export { RedisConnectionDirectory } from './redis.js';
export type { RedisConnectionDirectoryOptions } from './redis.js';
