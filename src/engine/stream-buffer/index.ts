export type { StreamBuffer, StreamEntry, StreamListener, StreamRead } from './port.js';
export { MemoryStreamBuffer } from './memory.js';
export type { MemoryStreamBufferOptions } from './memory.js';
export { RedisStreamBuffer } from './redis.js';
export type { RedisStreamBufferOptions } from './redis.js';
