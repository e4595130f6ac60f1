import { Code, ConnectError, createContextKey, type Interceptor } from "@connectrpc/connect";
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
  type IDefaultPolicyContext,
  timeout,
  wrap,
} from "cockatiel";
import { remainingBudgetMs, setTimeoutHeader, timeoutHeaderOf } from "./deadline.js";
import { withoutMetadata } from "../rpc-server/errors.js";
import { createRetryBudget, createThrottle, type RetryBudgetPolicy, type Throttle, type ThrottlePolicy } from "./retry-budget.js";

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
  /** How many retries the dependency's calls earn: a share of the calls, plus a floor per second. */
  retryBudget: RetryBudgetPolicy;
  /** Client-side throttling of a dependency that sheds load (RESOURCE_EXHAUSTED). */
  throttle: ThrottlePolicy;
  /**
   * An attempt the caller's deadline or cancellation ends after it has waited this long counts
   * as the dependency hanging: no healthy dependency of the mesh keeps a caller waiting that
   * long. Below it the caller is to blame, so 1 ms deadlines cannot open a breaker, while a
   * dependency that hangs still does at the second hop and beyond, where every caller's
   * deadline is shorter than the attempt timeout.
   */
  slowAttemptMs: number;
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
  // Linkerd's defaults: retries at most 20% of calls, plus 10 a second, over 10 s.
  retryBudget: { ratio: 0.2, minPerSecond: 10, windowMs: 10_000 },
  // The SRE book's k = 2, over a window short enough to let go soon after an overload.
  throttle: { overAccepted: 2, windowMs: 5_000 },
  slowAttemptMs: 1_000,
};

export type BreakerState = "closed" | "open" | "half-open" | "isolated";

export interface DependencyStats {
  dependency: string;
  breaker: BreakerState;
  calls: number;
  /** Calls that failed, the caller's own give-ups (`abandoned`) aside. */
  failures: number;
  /** Calls the caller gave up on: it cancelled, or its deadline ran out. Never held against the dependency. */
  abandoned: number;
  /** Calls refused without being sent: breaker open, bulkhead full, or held back while the dependency sheds load. */
  rejected: number;
  retries: number;
  /** Retries the retry budget refused: the dependency's failures would have been retried, but it was spent. */
  retriesRefused: number;
  inFlight: number;
}

/**
 * Failures that say the dependency is unwell, as opposed to "no" to a particular request.
 * RESOURCE_EXHAUSTED is not one: it is a healthy server shedding load (admission control)
 * in microseconds, and opening the breaker on it would turn a server that sheds part of its
 * traffic into one that gets none, then all of it back at once after the half-open trial.
 */
const unhealthyCodes = new Set([Code.Unavailable, Code.DeadlineExceeded, Code.Internal, Code.Unknown, Code.Aborted]);
/** Failures that a retry may fix: refused, or no answer in time. */
const retryableCodes = new Set([Code.Unavailable, Code.DeadlineExceeded]);

/**
 * A cockatiel timeout that cuts the call off when it fires. It does not abort its signal
 * when the call returns: the call is over by then, and each abort without a reason costs a
 * DOMException with a captured stack, a measurable share of a hop's CPU (bench/rpc-hop.ts).
 */
const deadlineOf = (ms: number) => timeout(ms, { strategy: TimeoutStrategy.Aggressive, abortOnReturn: false });

/** A cockatiel timeout that cut an attempt off reads as the dependency missing its deadline. */
const codeOf = (err: unknown): Code => (err instanceof TaskCancelledError ? Code.DeadlineExceeded : ConnectError.from(err).code);

/**
 * Whether a failed attempt was the caller's doing, for the interceptors inside the resilience
 * stack: the balancer asks it before it holds a failure against an instance, so that a
 * caller's 1 ms deadlines cannot take healthy instances out of rotation either.
 */
export const callersDoingKey = createContextKey<(err: unknown) => boolean>(() => false, { description: "whether a failed attempt was the caller's doing" });

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
 * DeadlineExceeded; spent from a retry budget), circuit breaker (consecutive failures;
 * half-open trial), a per-attempt timeout, bulkhead (concurrency plus a queue). An open
 * breaker fails fast with UNAVAILABLE; a full bulkhead with RESOURCE_EXHAUSTED. In front of
 * it all, a dependency that sheds load (RESOURCE_EXHAUSTED) gets some calls held back here
 * (adaptive throttling), since each refusal costs it, and every hop before it, something.
 *
 * The breaker and the retry budget count only the dependency's own failures: its unhealthy
 * codes, and attempts that ran out of the client's own time (the per-attempt timeout, or the
 * call's budget when no caller set a shorter one). Whatever the caller brought on itself
 * counts for nothing, or any client could open a breaker for everyone by sending 1 ms
 * deadlines: its cancellation, its deadline cutting an attempt off, and a DEADLINE_EXCEEDED
 * from a dependency that was only given what was left of the caller's deadline.
 */
export function createResilience(dependency: string, overrides: Partial<ResiliencePolicy> = {}) {
  const policy = { ...defaultResiliencePolicy, ...overrides };
  const stats = { calls: 0, failures: 0, abandoned: 0, rejected: 0, retries: 0, retriesRefused: 0 };
  /** Attempt failures that were the caller's doing: neither the breaker nor a retry sees them. */
  const excused = new WeakSet<object>();
  const isObject = (err: unknown): err is object => typeof err === "object" && err !== null;
  const blamesCaller = (err: unknown) => isObject(err) && excused.has(err);
  const refused = (err: unknown) => err instanceof BrokenCircuitError || err instanceof BulkheadRejectedError;

  const breaker = circuitBreaker(
    // A full bulkhead is our own back-pressure, not the dependency failing.
    handleWhen((err) => !blamesCaller(err) && !(err instanceof BulkheadRejectedError) && unhealthyCodes.has(codeOf(err))),
    { halfOpenAfter: policy.halfOpenAfterMs, breaker: new ConsecutiveBreaker(policy.breakerThreshold) },
  );
  const isolation = bulkhead(policy.maxConcurrent, policy.maxQueued);
  const retryBudget = createRetryBudget(policy.retryBudget);
  /** Per method: a dependency may shed one (order sheds CreateOrder on its saga backlog) and serve the others. */
  const throttles = new Map<string, Throttle>();
  const throttleOf = (method: string) => throttles.get(method) ?? throttles.set(method, createThrottle(policy.throttle)).get(method)!;
  /** Attempt failures the budget granted a retry: the attempt decides, since only it knows whether one is left. */
  const granted = new WeakSet<object>();
  const retryable = (err: Error) => granted.has(err);
  const backoff = new ExponentialBackoff({ initialDelay: policy.initialBackoffMs, maxDelay: policy.maxBackoffMs });
  const retrying = retry(handleWhen(retryable), { maxAttempts: policy.maxAttempts - 1, backoff });
  retrying.onRetry(() => stats.retries++);
  // Inside the breaker, so an attempt that hangs counts against the dependency.
  const attemptStack = wrap(deadlineOf(policy.attemptTimeoutMs), isolation);
  const withRetry = wrap(retrying, breaker);
  // Most calls have the whole default budget (no shorter caller deadline): build their stacks once.
  const defaultBudget = { withRetry: wrap(deadlineOf(policy.timeoutMs), withRetry), withoutRetry: wrap(deadlineOf(policy.timeoutMs), breaker) };

  function translate(err: unknown): ConnectError {
    if (err instanceof BrokenCircuitError) return new ConnectError(`circuit breaker for ${dependency} is open`, Code.Unavailable);
    if (err instanceof BulkheadRejectedError) return new ConnectError(`too many calls in flight to ${dependency}`, Code.ResourceExhausted);
    if (err instanceof TaskCancelledError) return new ConnectError(`${dependency} did not answer in time`, Code.DeadlineExceeded);
    // The dependency's response headers and trailers are hop-by-hop: they must not follow
    // the error to whoever relays it.
    return withoutMetadata(ConnectError.from(err));
  }

  const interceptor: Interceptor = (next) => async (req) => {
    const callerLeft = remainingBudgetMs();
    /** Whether the caller's deadline, not our own timeout, ends this call. */
    const callerBound = callerLeft !== undefined && callerLeft < policy.timeoutMs;
    const budget = callerBound ? callerLeft : policy.timeoutMs;
    if (budget <= 0) throw new ConnectError(`no time left to call ${dependency}`, Code.DeadlineExceeded);
    const retried = req.method.idempotency !== Idempotency.IDEMPOTENCY_UNKNOWN && !req.stream;
    const stack = callerBound ? wrap(deadlineOf(budget), retried ? withRetry : breaker) : defaultBudget[retried ? "withRetry" : "withoutRetry"];
    const deadline = Date.now() + budget;
    const timeoutHeader = timeoutHeaderOf(req.header);
    // Cockatiel derives `signal` from req.signal, so it already carries the caller's cancellation.
    const send = ({ signal }: IDefaultPolicyContext) => next({ ...req, signal });
    let attempts = 0;
    let lastAttemptFailure: unknown;
    // The attempt in flight: the signal the breaker gave it, aborted when the call's deadline
    // fires or the caller cancels, and whose clock bounds it: ours (its own timeout, or the
    // call's budget when no caller set a shorter one), or what is left of the caller's deadline.
    let attemptSignal: AbortSignal | undefined;
    let attemptStartedAt = 0;
    let attemptInFlight = false;
    let ownClock = true;
    /**
     * The caller cancelled, its deadline cut the attempt off, or the dependency gave up on a
     * deadline that was the caller's, all before the attempt had waited slowAttemptMs.
     */
    const callersDoing = (err: unknown) =>
      (req.signal.aborted || (callerBound && attemptSignal!.aborted) || (!ownClock && codeOf(err) === Code.DeadlineExceeded)) &&
      Date.now() - attemptStartedAt < policy.slowAttemptMs;
    req.contextValues.set(callersDoingKey, callersDoing);
    /** One attempt, run by the breaker. */
    const attempt = async ({ signal }: IDefaultPolicyContext) => {
      attemptStartedAt = Date.now();
      attempts++;
      const left = deadline - attemptStartedAt;
      attemptSignal = signal;
      ownClock = !callerBound || left >= policy.attemptTimeoutMs;
      // The dependency is told the attempt's budget, in the protocol's timeout header.
      const attemptMs = Math.max(1, Math.ceil(Math.min(left, policy.attemptTimeoutMs)));
      setTimeoutHeader(req.header, timeoutHeader, attemptMs);
      attemptInFlight = true;
      try {
        return await attemptStack.execute(send, signal);
      } catch (err) {
        lastAttemptFailure = err;
        if (callersDoing(err)) {
          if (isObject(err)) excused.add(err);
        } else if (retried && attempts < policy.maxAttempts && !refused(err) && retryableCodes.has(codeOf(err)) && isObject(err)) {
          // A retry would follow: the budget decides whether one may.
          if (retryBudget.tryRetry()) granted.add(err);
          else stats.retriesRefused++;
        }
        throw err;
      } finally {
        attemptInFlight = false;
      }
    };
    /**
     * Whether the caller, not the dependency, ended the call. The call's own timeout or the
     * caller's signal can end it outside any attempt's verdict (during a backoff, or cutting
     * off the attempt in flight): then the last attempt's verdict decides.
     */
    const abandonedByCaller = (err: unknown) => {
      if (blamesCaller(err)) return true;
      if (err === lastAttemptFailure) return false; // the attempt's own verdict: the dependency's failure
      if (attemptInFlight) return Date.now() - attemptStartedAt < policy.slowAttemptMs;
      if (lastAttemptFailure !== undefined) return blamesCaller(lastAttemptFailure); // ended during a backoff
      return req.signal.aborted || callerBound;
    };
    stats.calls++;
    const throttle = throttleOf(req.method.name);
    if (throttle.holdsBack()) {
      stats.rejected++;
      throw new ConnectError(`${dependency} is shedding load; this call was held back`, Code.ResourceExhausted);
    }
    retryBudget.recordCall();
    try {
      const response = await stack.execute(attempt, req.signal);
      throttle.recordAccepted();
      return response;
    } catch (err) {
      if (!refused(err)) (codeOf(err) === Code.ResourceExhausted ? throttle.recordRefused : throttle.recordAccepted)();
      if (refused(err)) stats.rejected++;
      else if (abandonedByCaller(err)) stats.abandoned++;
      else stats.failures++;
      throw translate(err);
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
