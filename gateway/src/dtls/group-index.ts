/**
 * Values grouped by key, for an index where nearly every key holds one value (a session per source address, a
 * session per credential): a lone value is stored as itself, and only a second one under the same key makes a
 * Set. A Set of one costs ~150 bytes (its object and hash table); at 10,000 sessions two such indexes were
 * ~3 MiB of heap for nothing.
 */
export class GroupIndex<K, V extends object> {
  private readonly groups = new Map<K, V | Set<V>>();

  add(key: K, value: V): void {
    const held = this.groups.get(key);
    if (held === undefined) this.groups.set(key, value);
    else if (held instanceof Set) held.add(value);
    else if (held !== value) this.groups.set(key, new Set([held, value]));
  }

  remove(key: K, value: V): void {
    const held = this.groups.get(key);
    if (held === value) this.groups.delete(key);
    else if (held instanceof Set) {
      held.delete(value);
      if (held.size === 1) this.groups.set(key, held.values().next().value as V);
    }
  }

  /** The values under `key`, as a copy: the index may change while the caller goes through them. */
  get(key: K): V[] {
    const held = this.groups.get(key);
    if (held === undefined) return [];
    return held instanceof Set ? [...held] : [held];
  }
}
