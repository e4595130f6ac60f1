/**
 * Counts of what each key (a client address, a customer) holds open, each capped: the
 * bookkeeping behind per-client limits. A key whose count drops to zero is forgotten, so
 * the map holds only the clients with something open.
 */
export function createKeyedCounts() {
  const counts = new Map<string, number>();
  return {
    /** Takes one for `key` and returns true, or returns false if `key` already holds `max`. */
    tryTake(key: string, max: number): boolean {
      const held = counts.get(key) ?? 0;
      if (held >= max) return false;
      counts.set(key, held + 1);
      return true;
    },
    /** Gives back one that `tryTake` gave. */
    release(key: string): void {
      const left = (counts.get(key) ?? 1) - 1;
      if (left === 0) counts.delete(key);
      else counts.set(key, left);
    },
  };
}
