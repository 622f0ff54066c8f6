/**
 * `portcullis/client`: the TypeScript client of the Portcullis WebSocket protocol, for
 * browsers and Node.js (pass `ws` as the WebSocket option in Node < 22). See docs/client.md.
 */
export { PortcullisClient } from './client.js';
export type { ClientOptions, ConnectionState, StateDetail, Welcome } from './options.js';
export { ChatStream } from './chat.js';
export type { ChatCallbacks, ChatResult } from './chat.js';
export type { TokenInfo, CredentialOptions } from './credentials.js';
export { documentCsrfToken } from './credentials.js';
export { backoffDelay } from './backoff.js';
export type { BackoffOptions } from './backoff.js';
export { MessageAccumulator } from './message.js';
export type { ContentBlock, Message, StreamEvent, Usage } from './message.js';
export type { WebSocketConstructor, WebSocketLike, ConnectivitySource } from './socket.js';
export {
  ApiError,
  AuthExpiredError,
  InvalidRequestError,
  OverloadedError,
  PermissionDeniedError,
  PortcullisError,
  ProtocolError,
  RateLimitedError,
  ResumeUnavailableError,
  errorFromBody,
} from './errors.js';
export type { ErrorBody } from './errors.js';
