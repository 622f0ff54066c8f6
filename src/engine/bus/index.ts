export type { Bus, BusHandler } from './port.js';
export { MemoryBus } from './memory.js';
export { RedisBus } from './redis.js';
export type { RedisBusOptions } from './redis.js';
