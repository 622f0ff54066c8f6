import type { ConnectionDirectory, ConnectionFilter, ConnectionMeta } from './port.js';
import { matchesFilter } from './port.js';

/** The in-process directory: two maps; insertion order is connection order. */
export class MemoryConnectionDirectory implements ConnectionDirectory {
  private readonly byId = new Map<string, ConnectionMeta>();
  private readonly users = new Map<string, Map<string, ConnectionMeta>>();

  async add(meta: ConnectionMeta): Promise<void> {
    this.removeSync(meta.id);
    this.byId.set(meta.id, meta);
    let set = this.users.get(meta.userId);
    if (!set) this.users.set(meta.userId, (set = new Map()));
    set.set(meta.id, meta);
  }

  async addWithinCap(meta: ConnectionMeta, cap: number): Promise<boolean> {
    // No await between the count and the add: one turn of the event loop is atomic here.
    const held = this.users.get(meta.userId);
    const others = (held?.size ?? 0) - (held?.has(meta.id) ? 1 : 0);
    if (others >= cap) return false;
    await this.add(meta);
    return true;
  }

  async remove(id: string): Promise<boolean> {
    return this.removeSync(id);
  }

  async get(id: string): Promise<ConnectionMeta | undefined> {
    return this.byId.get(id);
  }

  async byUser(userId: string): Promise<ConnectionMeta[]> {
    return [...(this.users.get(userId)?.values() ?? [])];
  }

  async countByUser(userId: string): Promise<number> {
    return this.users.get(userId)?.size ?? 0;
  }

  async filter(filter: ConnectionFilter, limit = Number.POSITIVE_INFINITY): Promise<ConnectionMeta[]> {
    if (filter.id !== undefined) {
      const one = this.byId.get(filter.id);
      return one && matchesFilter(one, filter) ? [one] : [];
    }
    const source = filter.userId !== undefined ? (this.users.get(filter.userId)?.values() ?? []) : this.byId.values();
    const out: ConnectionMeta[] = [];
    for (const meta of source) {
      if (out.length >= limit) break;
      if (matchesFilter(meta, filter)) out.push(meta);
    }
    return out;
  }

  async count(): Promise<number> {
    return this.byId.size;
  }

  async touch(): Promise<void> {
    // The map holds the caller's object: its counters are always current.
  }

  async close(): Promise<void> {
    this.byId.clear();
    this.users.clear();
  }

  private removeSync(id: string): boolean {
    const meta = this.byId.get(id);
    if (!meta) return false;
    this.byId.delete(id);
    const set = this.users.get(meta.userId);
    set?.delete(id);
    if (set && set.size === 0) this.users.delete(meta.userId);
    return true;
  }
}
