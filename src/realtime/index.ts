/** The WebSocket server (docs/protocol.md). */
export { realtimePlugin } from './server.js';
export type { RealtimeOptions, RealtimeServer } from './server.js';
export type { Fanout } from './fanout.js';
export { realtimeAdminRoutes } from './admin-routes.js';
export { CloseCode, PROTOCOL, BEARER_PREFIX } from './protocol.js';
export type { ServerFrame } from './protocol.js';
export { WS_PATH } from './upgrade.js';
