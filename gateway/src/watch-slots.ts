import { Code, ConnectError } from "@connectrpc/connect";

/** How many WatchOrder streams may be open at once. */
export interface WatchLimits {
  perCustomer: number;
  /** Per client address (behind trusted proxies, the client's, not the proxy's). */
  perAddress: number;
}

/**
 * Counts open WatchOrder streams per customer and per client address. Each watch holds a
 * stream, a poll timer and order reads every few seconds for minutes, so without a cap one
 * caller could hold the gateway's and order's memory (500 watches: 285 MB and 220 MB).
 */
export function createWatchSlots(limits: WatchLimits) {
  const byCustomer = new Map<string, number>();
  const byAddress = new Map<string, number>();
  let open = 0;
  const decrement = (counts: Map<string, number>, key: string) => {
    const left = (counts.get(key) ?? 1) - 1;
    if (left === 0) counts.delete(key);
    else counts.set(key, left);
  };
  return {
    /**
     * Takes a slot for a new watch, or throws RESOURCE_EXHAUSTED naming the limit reached.
     * Returns the release, which may be called any number of times: a watch ends by more than
     * one path (its end, an error, the caller leaving), and only the first counts.
     */
    acquire(customer: string, address: string): () => void {
      const ofCustomer = byCustomer.get(customer) ?? 0;
      if (ofCustomer >= limits.perCustomer) {
        throw new ConnectError(`too many open WatchOrder streams: at most ${limits.perCustomer} per customer; close one first`, Code.ResourceExhausted);
      }
      const ofAddress = byAddress.get(address) ?? 0;
      if (ofAddress >= limits.perAddress) {
        throw new ConnectError(`too many open WatchOrder streams: at most ${limits.perAddress} per client address; close one first`, Code.ResourceExhausted);
      }
      byCustomer.set(customer, ofCustomer + 1);
      byAddress.set(address, ofAddress + 1);
      open++;
      let released = false;
      return () => {
        if (released) return;
        released = true;
        open--;
        decrement(byCustomer, customer);
        decrement(byAddress, address);
      };
    },
    /** Open watches in all, for the metrics. */
    open: () => open,
  };
}

export type WatchSlots = ReturnType<typeof createWatchSlots>;
