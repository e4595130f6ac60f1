/** How much retrying a dependency's failures may earn, after gRFC A6's retry throttling. */
export interface RetryBudgetPolicy {
  /** Tokens the budget starts with and never exceeds. */
  maxTokens: number;
  /** Tokens a successful attempt gives back; a failed one takes a whole token. */
  tokenRatio: number;
}

export interface RetryBudget {
  /** An attempt that the dependency answered. */
  recordSuccess(): void;
  /** An attempt that failed in a way a retry would answer (UNAVAILABLE, a hang). */
  recordFailure(): void;
  /** Whether a retry may be spent now: only while more than half the tokens are left. */
  allowsRetry(): boolean;
}

/**
 * A per-dependency retry budget (gRFC A6 "retry throttling"). Retries multiply the load on a
 * dependency exactly when it is least able to take it: with 3 attempts per call, a dependency
 * failing every call sees three times its normal traffic. The budget lets retries smooth over
 * a few failures among many successes, and stops them once failures dominate (with the
 * defaults, when more than about one attempt in eleven fails), until successes refill it.
 * First attempts are never refused: the breaker decides about those.
 */
export function createRetryBudget(policy: RetryBudgetPolicy): RetryBudget {
  let tokens = policy.maxTokens;
  const threshold = policy.maxTokens / 2;
  return {
    recordSuccess() {
      if (tokens < policy.maxTokens) tokens = Math.min(policy.maxTokens, tokens + policy.tokenRatio);
    },
    recordFailure() {
      if (tokens > 0) tokens = Math.max(0, tokens - 1);
    },
    allowsRetry: () => tokens > threshold,
  };
}
