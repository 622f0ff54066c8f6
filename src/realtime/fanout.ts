/**
 * Broadcasts and kicks, through the bus so that every instance acts on the sockets it holds.
 * A broadcast reaches the connections matching a filter (one user, a role, connected
 * before T, …; the empty filter is everyone) as `{"type":"broadcast","channel","data"}`.
 * Delivery is at most once, like the bus.
 */
import type { Bus } from '../engine/bus/index.js';
import { matchesFilter } from '../engine/connections/index.js';
import type { ConnectionDirectory, ConnectionFilter } from '../engine/connections/index.js';
import type { Connection } from './connection.js';
import type { TerminationCause } from './metrics.js';

export const BROADCAST_TOPIC = 'ws.broadcast';
export const KICK_TOPIC = 'ws.kick';

interface BroadcastMessage {
  filter: ConnectionFilter;
  channel: string;
  data: unknown;
}

interface KickMessage {
  filter: ConnectionFilter;
  code: number;
  reason: string;
  cause: TerminationCause;
}

export interface Fanout {
  /** Sends to every connection of one user (all their devices). */
  toUser(userId: string, channel: string, data: unknown): Promise<void>;
  /** Sends to every connection matching `filter` (empty: everyone). */
  toFilter(filter: ConnectionFilter, channel: string, data: unknown): Promise<void>;
  toAll(channel: string, data: unknown): Promise<void>;
  /** Closes every connection matching `filter` with `code`. */
  kick(filter: ConnectionFilter, close: { code: number; reason: string; cause: TerminationCause }): Promise<void>;
}

export interface FanoutDeps {
  bus: Bus;
  directory: ConnectionDirectory;
  instanceId: string;
  local: Map<string, Connection>;
}

/**
 * The connections of this instance matching `filter`, matched on the live metadata each
 * instance holds (never a shared copy that may lag): every instance acts on its own sockets.
 */
export async function localMatches(deps: FanoutDeps, filter: ConnectionFilter): Promise<Connection[]> {
  if (filter.instanceId !== undefined && filter.instanceId !== deps.instanceId) return [];
  if (filter.id !== undefined) {
    const one = deps.local.get(filter.id);
    return one && matchesFilter(one.meta, filter) ? [one] : [];
  }
  const out: Connection[] = [];
  for (const conn of deps.local.values()) if (matchesFilter(conn.meta, filter)) out.push(conn);
  return out;
}

/** Subscribes this instance to broadcasts and kicks; returns the fan-out API and an unsubscribe. */
export async function createFanout(deps: FanoutDeps): Promise<{ fanout: Fanout; stop: () => void }> {
  const offBroadcast = await deps.bus.subscribe(BROADCAST_TOPIC, (payload) => {
    const message = payload as BroadcastMessage;
    void localMatches(deps, message.filter).then((conns) => {
      const frame = { type: 'broadcast', channel: message.channel, data: message.data };
      for (const conn of conns) conn.send(frame);
    });
  });
  const offKick = await deps.bus.subscribe(KICK_TOPIC, (payload) => {
    const message = payload as KickMessage;
    void localMatches(deps, message.filter).then((conns) => {
      for (const conn of conns) conn.close(message.code, message.reason, message.cause);
    });
  });
  const publish = (filter: ConnectionFilter, channel: string, data: unknown) =>
    deps.bus.publish(BROADCAST_TOPIC, { filter, channel, data } satisfies BroadcastMessage);
  return {
    fanout: {
      toUser: (userId, channel, data) => publish({ userId }, channel, data),
      toFilter: publish,
      toAll: (channel, data) => publish({}, channel, data),
      kick: (filter, close) => deps.bus.publish(KICK_TOPIC, { filter, ...close } satisfies KickMessage),
    },
    stop: () => {
      offBroadcast();
      offKick();
    },
  };
}
