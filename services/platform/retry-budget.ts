/** How much retrying a dependency's calls may earn, after Linkerd's retry budgets. */
export interface RetryBudgetPolicy {
  /** Retries allowed as a share of the calls made within the window (0.2: one retry per five calls). */
  ratio: number;
  /** Retries allowed per second of the window whatever the traffic, so a quiet dependency can still be retried. */
  minPerSecond: number;
  /** How far back calls and retries are counted. */
  windowMs: number;
}

export interface RetryBudget {
  /** A call was made (its first attempt): it earns `ratio` of a retry. */
  recordCall(): void;
  /** Spends a retry if the budget has one; false when it is exhausted. */
  tryRetry(): boolean;
}

/** The window is kept as this many slots, so counts age out a slot at a time rather than all at once. */
const SLOTS = 10;

/**
 * A per-dependency retry budget in the manner of Linkerd's (and Finagle's): within any
 * window, retries stay at most `ratio` of the calls plus `minPerSecond` per second of the
 * window. Retries multiply the load on a dependency exactly when it is least able to take it;
 * with the budget, a dependency failing every call sees at most 1 + ratio times its traffic
 * (plus the small floor), not maxAttempts times. First attempts are never refused: the
 * breaker decides about those. gRFC A6's throttling stops retries only once failures
 * dominate; this bound holds whatever the failure rate, which is what overload needs.
 */
export function createRetryBudget(policy: RetryBudgetPolicy, now: () => number = Date.now): RetryBudget {
  const slotMs = policy.windowMs / SLOTS;
  const calls = new Array<number>(SLOTS).fill(0);
  const retries = new Array<number>(SLOTS).fill(0);
  let currentSlot = Math.floor(now() / slotMs);
  const floor = policy.minPerSecond * (policy.windowMs / 1000);
  const sum = (counts: number[]) => counts.reduce((a, b) => a + b, 0);

  /** Moves the window up to now, emptying the slots that aged out. */
  function advance(): number {
    const slot = Math.floor(now() / slotMs);
    for (let s = currentSlot + 1; s <= Math.min(slot, currentSlot + SLOTS); s++) {
      calls[s % SLOTS] = 0;
      retries[s % SLOTS] = 0;
    }
    currentSlot = Math.max(currentSlot, slot);
    return currentSlot % SLOTS;
  }

  return {
    recordCall() {
      calls[advance()]!++;
    },
    tryRetry() {
      const slot = advance();
      if (sum(retries) + 1 > policy.ratio * sum(calls) + floor) return false;
      retries[slot]!++;
      return true;
    },
  };
}
