export type { Bus, BusHandler } from './port.js';
export { MemoryBus } from './memory.js';
