import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { MethodOptions_IdempotencyLevel as Idempotency } from "@bufbuild/protobuf/wkt";
import {
  BrokenCircuitError,
  BulkheadRejectedError,
  CircuitState,
  ConsecutiveBreaker,
  ExponentialBackoff,
  TaskCancelledError,
  TimeoutStrategy,
  bulkhead,
  circuitBreaker,
  handleWhen,
  retry,
  timeout,
  wrap,
} from "cockatiel";
import { remainingBudgetMs } from "./deadline.js";

/** How calls to one dependency are protected. */
export interface ResiliencePolicy {
  /** Budget for a call, retries included; a shorter caller deadline wins. */
  timeoutMs: number;
  /** Budget for one attempt, so an idempotent call that hangs is retried within timeoutMs. */
  attemptTimeoutMs: number;
  /** Attempts for idempotent methods (1 = no retry). */
  maxAttempts: number;
  initialBackoffMs: number;
  maxBackoffMs: number;
  /** Consecutive failures that open the breaker. */
  breakerThreshold: number;
  /** How long the breaker stays open before a half-open trial call. */
  halfOpenAfterMs: number;
  /** Calls in flight at once, and calls allowed to wait for a slot. */
  maxConcurrent: number;
  maxQueued: number;
}

export const defaultResiliencePolicy: ResiliencePolicy = {
  timeoutMs: 5_000,
  attemptTimeoutMs: 2_000,
  maxAttempts: 3,
  initialBackoffMs: 50,
  maxBackoffMs: 1_000,
  breakerThreshold: 5,
  halfOpenAfterMs: 5_000,
  maxConcurrent: 64,
  maxQueued: 256,
};

export type BreakerState = "closed" | "open" | "half-open" | "isolated";

export interface DependencyStats {
  dependency: string;
  breaker: BreakerState;
  calls: number;
  failures: number;
  /** Calls refused without being sent: breaker open or bulkhead full. */
  rejected: number;
  retries: number;
  inFlight: number;
}

/** Failures that say the dependency is unwell, as opposed to "no" to a particular request. */
const unhealthyCodes = new Set([Code.Unavailable, Code.DeadlineExceeded, Code.Internal, Code.Unknown, Code.ResourceExhausted, Code.Aborted]);

/**
 * A cockatiel timeout that cuts the call off when it fires. It does not abort its signal
 * when the call returns: the call is over by then, and each abort without a reason costs a
 * DOMException with a captured stack, a measurable share of a hop's CPU (bench/rpc-hop.ts).
 */
const deadlineOf = (ms: number) => timeout(ms, { strategy: TimeoutStrategy.Aggressive, abortOnReturn: false });

/** An attempt cut off by our own timeout counts as the dependency missing its deadline. */
const codeOf = (err: unknown): Code => (err instanceof TaskCancelledError ? Code.DeadlineExceeded : ConnectError.from(err).code);

const breakerStates: Record<CircuitState, BreakerState> = {
  [CircuitState.Closed]: "closed",
  [CircuitState.Open]: "open",
  [CircuitState.HalfOpen]: "half-open",
  [CircuitState.Isolated]: "isolated",
};

/**
 * The resilience stack for one dependency, as a client interceptor so that no call site can
 * forget it. Outermost first: timeout (the caller's remaining deadline caps it), retry
 * (exponential backoff with jitter; only idempotent methods; only Unavailable and
 * DeadlineExceeded), circuit breaker (consecutive failures; half-open trial), a per-attempt
 * timeout, bulkhead (concurrency plus a queue). An open breaker fails fast with UNAVAILABLE; a full bulkhead
 * with RESOURCE_EXHAUSTED.
 */
export function createResilience(dependency: string, overrides: Partial<ResiliencePolicy> = {}) {
  const policy = { ...defaultResiliencePolicy, ...overrides };
  const stats = { calls: 0, failures: 0, rejected: 0, retries: 0 };

  const breaker = circuitBreaker(
    // A full bulkhead is our own back-pressure, not the dependency failing.
    handleWhen((err) => !(err instanceof BulkheadRejectedError) && unhealthyCodes.has(codeOf(err))),
    { halfOpenAfter: policy.halfOpenAfterMs, breaker: new ConsecutiveBreaker(policy.breakerThreshold) },
  );
  const isolation = bulkhead(policy.maxConcurrent, policy.maxQueued);
  const retryable = (err: Error) => {
    const code = codeOf(err);
    return !(err instanceof BrokenCircuitError) && !(err instanceof BulkheadRejectedError) && (code === Code.Unavailable || code === Code.DeadlineExceeded);
  };
  const backoff = new ExponentialBackoff({ initialDelay: policy.initialBackoffMs, maxDelay: policy.maxBackoffMs });
  const retrying = retry(handleWhen(retryable), { maxAttempts: policy.maxAttempts - 1, backoff });
  retrying.onRetry(() => stats.retries++);
  // Inside the breaker, so an attempt that hangs counts against the dependency.
  const perAttempt = deadlineOf(policy.attemptTimeoutMs);
  const withRetry = wrap(retrying, breaker, perAttempt, isolation);
  const withoutRetry = wrap(breaker, perAttempt, isolation);
  // Most calls have the whole default budget (no shorter caller deadline): build their stacks once.
  const defaultBudget = { withRetry: wrap(deadlineOf(policy.timeoutMs), withRetry), withoutRetry: wrap(deadlineOf(policy.timeoutMs), withoutRetry) };

  function translate(err: unknown): ConnectError {
    if (err instanceof BrokenCircuitError) return new ConnectError(`circuit breaker for ${dependency} is open`, Code.Unavailable);
    if (err instanceof BulkheadRejectedError) return new ConnectError(`too many calls in flight to ${dependency}`, Code.ResourceExhausted);
    if (err instanceof TaskCancelledError) return new ConnectError(`${dependency} did not answer in time`, Code.DeadlineExceeded);
    return ConnectError.from(err);
  }

  const interceptor: Interceptor = (next) => async (req) => {
    const budget = Math.min(policy.timeoutMs, remainingBudgetMs() ?? Infinity);
    if (budget <= 0) throw new ConnectError(`no time left to call ${dependency}`, Code.DeadlineExceeded);
    const retried = req.method.idempotency !== Idempotency.IDEMPOTENCY_UNKNOWN && !req.stream;
    const stack =
      budget === policy.timeoutMs ? defaultBudget[retried ? "withRetry" : "withoutRetry"] : wrap(deadlineOf(budget), retried ? withRetry : withoutRetry);
    const deadline = Date.now() + budget;
    const timeoutHeader = req.header.get("content-type")?.startsWith("application/grpc") ? "grpc-timeout" : "connect-timeout-ms";
    stats.calls++;
    try {
      return await stack.execute(({ signal }) => {
        // What is left of the budget travels downstream in the protocol's timeout header.
        const left = Math.max(1, Math.ceil(deadline - Date.now()));
        req.header.set(timeoutHeader, timeoutHeader === "grpc-timeout" ? `${left}m` : String(left));
        // Cockatiel derives `signal` from req.signal, so it already carries the caller's cancellation.
        return next({ ...req, signal });
      }, req.signal);
    } catch (err) {
      const translated = translate(err);
      if (err instanceof BrokenCircuitError || err instanceof BulkheadRejectedError) stats.rejected++;
      else stats.failures++;
      throw translated;
    }
  };

  return {
    interceptor,
    stats: (): DependencyStats => ({
      dependency,
      breaker: breakerStates[breaker.state],
      ...stats,
      inFlight: policy.maxConcurrent - isolation.executionSlots,
    }),
  };
}

export type Resilience = ReturnType<typeof createResilience>;
