import { Code, ConnectError } from "@connectrpc/connect";
import { createKeyedCounts } from "#platform";

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
  const byCustomer = createKeyedCounts();
  const byAddress = createKeyedCounts();
  let open = 0;
  return {
    /**
     * Takes a slot for a new watch, or throws RESOURCE_EXHAUSTED naming the limit reached.
     * Returns the release, which may be called any number of times: a watch ends by more than
     * one path (its end, an error, the caller leaving), and only the first counts.
     */
    acquire(customer: string, address: string): () => void {
      if (!byCustomer.tryTake(customer, limits.perCustomer)) {
        throw new ConnectError(`too many open WatchOrder streams: at most ${limits.perCustomer} per customer; close one first`, Code.ResourceExhausted);
      }
      if (!byAddress.tryTake(address, limits.perAddress)) {
        byCustomer.release(customer);
        throw new ConnectError(`too many open WatchOrder streams: at most ${limits.perAddress} per client address; close one first`, Code.ResourceExhausted);
      }
      open++;
      let released = false;
      return () => {
        if (released) return;
        released = true;
        open--;
        byCustomer.release(customer);
        byAddress.release(address);
      };
    },
    /** Open watches in all, for the metrics. */
    open: () => open,
  };
}

export type WatchSlots = ReturnType<typeof createWatchSlots>;
