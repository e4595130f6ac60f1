import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { MethodOptions_IdempotencyLevel as Idempotency } from "@bufbuild/protobuf/wkt";
import { Health } from "#gen/grpc/health/v1/health_pb.js";
import { callerIdentityKey, CONSOLE, OPERATOR } from "../trust/mesh-identity.js";

/** How an adaptive limit moves, after Netflix's Gradient2 (concurrency-limits). */
export interface GradientLimitOptions {
  initial: number;
  min: number;
  max: number;
  /** How much slower than its long-run latency a window may be before the limit shrinks (1.5: half as slow again). */
  tolerance: number;
  /** How far each window moves the limit towards its new estimate (0..1). */
  smoothing: number;
  /** Windows the long-run latency is taken over: long, so that a sustained overload cannot become the norm within it. */
  longWindow: number;
  /**
   * What the window's latency is compared with: the long-run average (Gradient2), or the
   * lowest window of the long run (Vegas's no-load latency). The average suits latencies
   * that are mostly flat; the minimum also sheds a load that saturates the server from its
   * start, whose average would already be the queueing it should prevent.
   */
  baseline: "average" | "minimum";
  /**
   * While less than half the limit is in use, let it follow the use down (to twice the most
   * in use), so that a load arriving after a quiet spell meets a limit fitted to what ran,
   * not to the last burst. Only where sudden bursts far above the recent use are not the
   * normal traffic: the limit grows back by about its square root a window.
   */
  followUse: boolean;
}

/**
 * A concurrency limit that adapts to latency, as TCP Vegas adapts a congestion window:
 * each window compares its latency (`shortMs`) with the long run's (`baseline`). While they agree
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
  const baseline = options.baseline === "minimum" ? windowedMinimum(options.longWindow) : exponentialAverage(options.longWindow);
  return {
    get value() {
      return Math.floor(limit);
    },
    update(shortMs: number, maxInFlight: number, refusedAny: boolean): void {
      if (!refusedAny || baseline.empty()) baseline.add(shortMs);
      const longMs = baseline.value(shortMs);
      if (maxInFlight < limit / 2) {
        if (options.followUse) limit = Math.max(options.min, limit * (1 - options.smoothing) + 2 * maxInFlight * options.smoothing);
        return;
      }
      const gradient = Math.max(0.5, Math.min(1, (options.tolerance * longMs) / shortMs));
      const estimate = limit * gradient + Math.sqrt(limit);
      limit = Math.max(options.min, Math.min(options.max, limit * (1 - options.smoothing) + estimate * options.smoothing));
    },
  };
}

/** Gradient2's long-run latency: an exponential average over `windows`, plain over the first ten. */
function exponentialAverage(windows: number) {
  const WARMUP = 10;
  let average = 0;
  let count = 0;
  return {
    empty: () => count === 0,
    add(ms: number) {
      count++;
      average += count <= WARMUP ? (ms - average) / count : ((ms - average) * 2) / (windows + 1);
    },
    value(shortMs: number) {
      // Latency is back to normal after a long overload: let the average follow it at once.
      if (average / shortMs > 2) average *= 0.9;
      return average;
    },
  };
}

/** Vegas's no-load latency: the lowest of the last `windows` windows. */
function windowedMinimum(windows: number) {
  const recent: number[] = [];
  return {
    empty: () => recent.length === 0,
    add(ms: number) {
      recent.push(ms);
      if (recent.length > windows) recent.shift();
    },
    value: () => Math.min(...recent),
  };
}

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

const gradientDefaults: GradientLimitOptions = { initial: 100, min: 8, max: 1_000, tolerance: 1.5, smoothing: 0.2, longWindow: 600, baseline: "average", followUse: false };
/**
 * The backlog's work waits mostly on other services, so its no-load time is the norm, and
 * a window moves the limit halfway: its windows are long, and a backlog fills faster than
 * a server's calls pile up. It follows the use down while quiet: an overload arriving after
 * a quiet spell would otherwise fill a backlog sized for the last busy one before its wait
 * showed.
 */
const backlogDefaults: GradientLimitOptions = { initial: 32, min: 8, max: 1_000, tolerance: 1.25, smoothing: 0.5, longWindow: 60, baseline: "minimum", followUse: true };
/** A window of calls closes after this long and this many calls, whichever is later. */
const WINDOW_MS = 100;
const WINDOW_CALLS = 10;
/** A window of the backlog closes after this long once this much work finished in it, or after BACKLOG_WINDOW_MAX_MS regardless (a stalled backlog). */
const BACKLOG_WINDOW_MS = 500;
const BACKLOG_WINDOW_DONE = 5;
const BACKLOG_WINDOW_MAX_MS = 2_000;

/**
 * Adaptive admission control for one server: calls past its concurrency limit are refused
 * at once with RESOURCE_EXHAUSTED, before they queue (on the event loop, in the pool, at the
 * dependencies) and stretch everyone's latency until deadlines fail every call. The limit
 * adapts to the latency of the calls served (createGradientLimit). With a `backlog`, calls
 * with side effects are also refused while the work they leave behind is past its limit,
 * which adapts to how long that work takes, by Little's law (the backlog over the rate at
 * which it finishes): a server that answers before its work is done would otherwise look
 * idle while its backlog grows without bound.
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
  const backlogWindow = { startedAt: now(), sizeAtStart: 0, admittedAtStart: 0, sizeTotal: 0, samples: 0, maxBacklog: 0, shedAtStart: 0 };
  /** Calls that left work behind, since start. */
  let admitted = 0;

  /**
   * Samples the backlog at each call that would add to it, and now and then closes its
   * window: the work that finished in it (admitted, less what the backlog grew by) gives the
   * rate, and the mean backlog over that rate how long work took (Little's law). Work that
   * finishes not at all gives a long time, as it should.
   */
  function sampleBacklog(size: number, at: number): void {
    const w = backlogWindow;
    w.sizeTotal += size;
    w.samples++;
    w.maxBacklog = Math.max(w.maxBacklog, size);
    const elapsedMs = at - w.startedAt;
    const done = admitted - w.admittedAtStart - (size - w.sizeAtStart);
    if (elapsedMs < BACKLOG_WINDOW_MS || (done < BACKLOG_WINDOW_DONE && elapsedMs < BACKLOG_WINDOW_MAX_MS)) return;
    const meanSize = w.sizeTotal / w.samples;
    if (meanSize > 0) backlogLimit!.update((meanSize * elapsedMs) / Math.max(done, 0.5), w.maxBacklog, shed.backlog > w.shedAtStart);
    Object.assign(w, { startedAt: at, sizeAtStart: size, admittedAtStart: admitted, sizeTotal: 0, samples: 0, maxBacklog: size, shedAtStart: shed.backlog });
  }

  function sampleLatency(ms: number, at: number): void {
    window.calls++;
    window.totalMs += ms;
    if (window.calls < WINDOW_CALLS || at - window.startedAt < WINDOW_MS) return;
    concurrency.update(Math.max(window.totalMs / window.calls, 0.001), window.maxInFlight, shed.concurrency > window.shedAtStart);
    Object.assign(window, { startedAt: at, calls: 0, totalMs: 0, maxInFlight: inFlight, shedAtStart: shed.concurrency });
  }

  // An operator, in person or through the console, acts to relieve the very overload that sheds.
  const actsForAnOperator = (identity: string | undefined) => identity === OPERATOR || identity === CONSOLE;
  const exempt = (req: Parameters<Parameters<Interceptor>[0]>[0]) => req.stream || req.service.typeName === Health.typeName || actsForAnOperator(req.contextValues.get(callerIdentityKey));

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
      if (leavesWork) admitted++;
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
