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
  const calls = createSlidingCount(policy.windowMs, now);
  const retries = createSlidingCount(policy.windowMs, now);
  const floor = policy.minPerSecond * (policy.windowMs / 1000);
  return {
    recordCall: () => calls.add(),
    tryRetry() {
      if (retries.total() + 1 > policy.ratio * calls.total() + floor) return false;
      retries.add();
      return true;
    },
  };
}

/** How hard a client holds back from a dependency that sheds load, after Google SRE's client-side throttling. */
export interface ThrottlePolicy {
  /** Requests sent may exceed those the dependency accepted by this factor before the client holds some back (SRE: 2). */
  overAccepted: number;
  windowMs: number;
}

export interface Throttle {
  /** A call is about to be made: whether to refuse it here rather than send it, given how many the dependency refused lately. */
  holdsBack(): boolean;
  /** The dependency took a call on (whatever it answered, but that it was overloaded). */
  recordAccepted(): void;
  /** The dependency refused a call: it is overloaded (RESOURCE_EXHAUSTED). */
  recordRefused(): void;
}

/**
 * Adaptive throttling (Site Reliability Engineering, "Handling Overload"): a dependency that
 * refuses calls with RESOURCE_EXHAUSTED still spends something on each refusal, and so does
 * every hop before it. Once requests exceed `overAccepted` times the calls it accepted, over
 * the window, each call is held back with probability (requests − k·accepts) / (requests + 1),
 * so the dependency sees about k times what it can take, not the whole overload; calls held
 * back count as requests, so the client keeps probing and lets go as accepts come back. It
 * holds nothing back unless the dependency refused a call within the window: calls still in
 * flight, not yet accepted, are no sign of overload.
 */
export function createThrottle(policy: ThrottlePolicy, now: () => number = Date.now, random: () => number = Math.random): Throttle {
  const requests = createSlidingCount(policy.windowMs, now);
  const accepts = createSlidingCount(policy.windowMs, now);
  const refusals = createSlidingCount(policy.windowMs, now);
  return {
    holdsBack() {
      requests.add();
      if (refusals.total() === 0) return false;
      const excess = requests.total() - policy.overAccepted * accepts.total();
      return excess > 0 && random() < excess / (requests.total() + 1);
    },
    recordAccepted: () => accepts.add(),
    recordRefused: () => refusals.add(),
  };
}

/** A count over a sliding window, kept in SLOTS slots so that it ages out a slot at a time rather than all at once. */
function createSlidingCount(windowMs: number, now: () => number) {
  const slotMs = windowMs / SLOTS;
  const counts = new Array<number>(SLOTS).fill(0);
  let currentSlot = Math.floor(now() / slotMs);
  const advance = () => {
    const slot = Math.floor(now() / slotMs);
    for (let s = currentSlot + 1; s <= Math.min(slot, currentSlot + SLOTS); s++) counts[s % SLOTS] = 0;
    currentSlot = Math.max(currentSlot, slot);
    return currentSlot % SLOTS;
  };
  return {
    add: () => void counts[advance()]!++,
    total: () => (advance(), counts.reduce((a, b) => a + b, 0)),
  };
}
