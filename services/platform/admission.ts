import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { MethodOptions_IdempotencyLevel as Idempotency } from "@bufbuild/protobuf/wkt";
import { Health } from "../../gen/grpc/health/v1/health_pb.js";
import { OPERATOR } from "./dev/mesh.js";
import { callerIdentityKey } from "./mesh-identity.js";

/** How an adaptive limit moves, after Netflix's Gradient2 (concurrency-limits). */
export interface GradientLimitOptions {
  initial: number;
  min: number;
  max: number;
  /** How much slower than its long-run latency a window may be before the limit shrinks (1.5: half as slow again). */
  tolerance: number;
  /** How far each window moves the limit towards its new estimate (0..1). */
  smoothing: number;
  /** Windows the long-run latency averages over: long, so that a sustained overload cannot become the norm within it. */
  longWindow: number;
}

/**
 * A concurrency limit that adapts to latency, as TCP Vegas adapts a congestion window:
 * each window compares its latency (`shortMs`) with the long-run average. While they agree
 * the limit grows by about its square root (the headroom that lets it discover more
 * capacity); once the window is slower than `tolerance` times the average, queueing has
 * set in and the limit shrinks in proportion, by at most half. A window in which less than
 * half the limit was in use says nothing about capacity, so it changes nothing.
 *
 * Unlike Gradient2, a window in which the limit refused calls does not teach the average:
 * it was overload held at bay, and a sustained overload learnt as the norm would let the
 * latency it admits creep up for as long as the overload lasts.
 */
export function createGradientLimit(options: GradientLimitOptions) {
  let limit = options.initial;
  let longMs = 0;
  let windows = 0;
  /** The first windows are averaged plainly, so the start-up's first sample does not dominate. */
  const WARMUP = 10;
  return {
    get value() {
      return Math.floor(limit);
    },
    update(shortMs: number, maxInFlight: number, refusedAny: boolean): void {
      if (!refusedAny || windows === 0) {
        windows++;
        longMs = windows <= WARMUP ? longMs + (shortMs - longMs) / windows : longMs + ((shortMs - longMs) * 2) / (options.longWindow + 1);
      }
      // Latency is back to normal after a long overload: let the average follow it at once.
      if (longMs / shortMs > 2) longMs *= 0.9;
      if (maxInFlight < limit / 2) return;
      const gradient = Math.max(0.5, Math.min(1, (options.tolerance * longMs) / shortMs));
      const estimate = limit * gradient + Math.sqrt(limit);
      limit = Math.max(options.min, Math.min(options.max, limit * (1 - options.smoothing) + estimate * options.smoothing));
    },
  };
}

export type GradientLimit = ReturnType<typeof createGradientLimit>;

export interface AdmissionOptions {
  /** Names the server in the messages of refused calls, e.g. "order". */
  name: string;
  /** Calls in flight at once. */
  concurrency?: Partial<GradientLimitOptions>;
  /**
   * Work a call leaves behind after it has answered (order's sagas, which CreateOrder only
   * starts): calls with side effects are also refused while it is past its own limit, which
   * adapts to how long that work waits.
   */
  backlog?: () => number;
  backlogLimit?: Partial<GradientLimitOptions>;
  /** For tests: the clock. */
  now?: () => number;
}

export interface AdmissionStats {
  concurrencyLimit: number;
  inFlight: number;
  backlogLimit: number | undefined;
  backlog: number | undefined;
  /** Calls refused since start, by reason. */
  shed: { concurrency: number; backlog: number };
}

const gradientDefaults: GradientLimitOptions = { initial: 100, min: 8, max: 1_000, tolerance: 1.5, smoothing: 0.2, longWindow: 600 };
const backlogDefaults: GradientLimitOptions = { ...gradientDefaults, initial: 64, min: 4 };
/** A window closes after this long and this many calls, whichever is later. */
const WINDOW_MS = 100;
const WINDOW_CALLS = 10;
/** Admission times kept to age the backlog by; far more than any backlog the limit lets build. */
const ADMISSIONS_KEPT = 4_096;

/**
 * Adaptive admission control for one server: calls past its concurrency limit are refused
 * at once with RESOURCE_EXHAUSTED, before they queue (on the event loop, in the pool, at the
 * dependencies) and stretch everyone's latency until deadlines fail every call. The limit
 * adapts to the latency of the calls served (createGradientLimit). With a `backlog`, calls
 * with side effects are also refused while the work they leave behind is past its limit,
 * which adapts to the age of the oldest work in it, as a queue's sojourn time measures
 * queueing (CoDel): a server that answers before its work is done would otherwise look idle
 * while its backlog grows without bound.
 *
 * Never refused: health checks (probes must see the truth, on the mesh port as on the ops
 * port), streams (their duration is not latency: a WatchOrder lasts the whole saga), and the
 * operator, who must be able to act on an overloaded mesh.
 */
export function createAdmission(options: AdmissionOptions) {
  const now = options.now ?? (() => performance.now());
  const concurrency = createGradientLimit({ ...gradientDefaults, ...options.concurrency });
  const backlogLimit = options.backlog && createGradientLimit({ ...backlogDefaults, ...options.backlogLimit });
  const shed = { concurrency: 0, backlog: 0 };
  let inFlight = 0;
  const window = { startedAt: now(), calls: 0, totalMs: 0, maxInFlight: 0, shedAtStart: 0 };
  const backlogWindow = { startedAt: now(), maxBacklog: 0, shedAtStart: 0 };
  /** When the calls that left work behind were admitted, oldest first: a ring of the last ADMISSIONS_KEPT. */
  const admittedAt = new Array<number>(ADMISSIONS_KEPT);
  let admitted = 0;

  /**
   * How long the work in the backlog has waited so far, on average, taking it to be the last
   * `size` admitted (first in, first out). The mean, not the oldest: work admitted in a burst
   * ages together, and the oldest alone would saw up and down with each burst. It grows
   * while the backlog stalls, where the time work took to finish would say nothing until
   * it finished.
   */
  function backlogAgeMs(size: number, at: number): number | undefined {
    const oldest = Math.max(admitted - size, admitted - ADMISSIONS_KEPT, 0);
    if (oldest === admitted) return undefined;
    let total = 0;
    for (let i = oldest; i < admitted; i++) total += at - admittedAt[i % ADMISSIONS_KEPT]!;
    return total / (admitted - oldest);
  }

  /** Closes the backlog's window now and then: one age sample a window, while there is a backlog. */
  function sampleBacklog(size: number, at: number): void {
    backlogWindow.maxBacklog = Math.max(backlogWindow.maxBacklog, size);
    if (at - backlogWindow.startedAt < WINDOW_MS) return;
    const age = size > 0 ? backlogAgeMs(size, at) : undefined;
    if (age !== undefined && age > 0) backlogLimit!.update(age, backlogWindow.maxBacklog, shed.backlog > backlogWindow.shedAtStart);
    Object.assign(backlogWindow, { startedAt: at, maxBacklog: size, shedAtStart: shed.backlog });
  }

  function sampleLatency(ms: number, at: number): void {
    window.calls++;
    window.totalMs += ms;
    if (window.calls < WINDOW_CALLS || at - window.startedAt < WINDOW_MS) return;
    concurrency.update(Math.max(window.totalMs / window.calls, 0.001), window.maxInFlight, shed.concurrency > window.shedAtStart);
    Object.assign(window, { startedAt: at, calls: 0, totalMs: 0, maxInFlight: inFlight, shedAtStart: shed.concurrency });
  }

  const exempt = (req: Parameters<Parameters<Interceptor>[0]>[0]) => req.stream || req.service.typeName === Health.typeName || req.contextValues.get(callerIdentityKey) === OPERATOR;

  const interceptor: Interceptor = (next) => async (req) => {
    if (exempt(req)) return next(req);
    const startedAt = now();
    const leavesWork = backlogLimit !== undefined && req.method.idempotency !== Idempotency.NO_SIDE_EFFECTS;
    if (leavesWork) {
      const size = options.backlog!();
      sampleBacklog(size, startedAt);
      if (size >= backlogLimit.value) {
        shed.backlog++;
        throw new ConnectError(`${options.name} is overloaded: ${size} requests are still being processed (limit ${backlogLimit.value}); retry later`, Code.ResourceExhausted);
      }
    }
    if (inFlight >= concurrency.value) {
      shed.concurrency++;
      throw new ConnectError(`${options.name} is overloaded: ${inFlight} calls in flight (limit ${concurrency.value}); retry later`, Code.ResourceExhausted);
    }
    inFlight++;
    window.maxInFlight = Math.max(window.maxInFlight, inFlight);
    let relayedShedding = false;
    try {
      const response = await next(req);
      if (leavesWork) admittedAt[admitted++ % ADMISSIONS_KEPT] = now();
      return response;
    } catch (err) {
      // A dependency's shedding, relayed: it answered fast because it did no work, which says nothing of our latency.
      relayedShedding = ConnectError.from(err).code === Code.ResourceExhausted;
      throw err;
    } finally {
      inFlight--;
      const endedAt = now();
      if (!relayedShedding) sampleLatency(endedAt - startedAt, endedAt);
    }
  };

  return {
    interceptor,
    stats: (): AdmissionStats => ({
      concurrencyLimit: concurrency.value,
      inFlight,
      backlogLimit: backlogLimit?.value,
      backlog: options.backlog?.(),
      shed: { ...shed },
    }),
  };
}

export type Admission = ReturnType<typeof createAdmission>;
