/** The WebSocket server's Prometheus metrics, registered once per app on its registry. */
import { Counter, Gauge, Histogram } from 'prom-client';
import type { Registry } from 'prom-client';

export type TerminationCause =
  | 'client'
  | 'heartbeat'
  | 'idle'
  | 'slow_consumer'
  | 'too_big'
  | 'policy'
  | 'expired'
  | 'revoked'
  | 'kicked'
  | 'shutdown'
  | 'error';

export interface RealtimeMetrics {
  connections: Gauge;
  chats: Gauge;
  pingRtt: Histogram;
  terminations: Counter<'cause'>;
  upgrades: Counter<'outcome'>;
  frames: Counter<'direction'>;
}

export function createRealtimeMetrics(registry: Registry): RealtimeMetrics {
  return {
    connections: new Gauge({ name: 'portcullis_ws_connections', help: 'Open WebSocket connections on this instance.', registers: [registry] }),
    chats: new Gauge({ name: 'portcullis_ws_chats_running', help: 'Chats running on this instance (attached or awaiting resume).', registers: [registry] }),
    pingRtt: new Histogram({
      name: 'portcullis_ws_ping_rtt_seconds',
      help: 'Round trip of protocol-level pings.',
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    }),
    terminations: new Counter({ name: 'portcullis_ws_closed_total', help: 'WebSocket connections ended, by cause.', labelNames: ['cause'], registers: [registry] }),
    upgrades: new Counter({ name: 'portcullis_ws_upgrades_total', help: 'Upgrade attempts by outcome (accepted or the HTTP status refused with).', labelNames: ['outcome'], registers: [registry] }),
    frames: new Counter({ name: 'portcullis_ws_frames_total', help: 'Frames by direction (in, out).', labelNames: ['direction'], registers: [registry] }),
  };
}
