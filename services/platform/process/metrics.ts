import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import type { NodeRequest, NodeResponse } from "../rpc-server/node-handler.js";
import type { DependencyStats } from "../rpc-client/resilience.js";

const breakerValue = { closed: 0, "half-open": 1, open: 2, isolated: 3 } as const;

/**
 * Prometheus metrics for one process, served as text at GET /metrics on the service's own
 * port. RPCs are counted and timed by an interceptor; everything that is state (backlogs,
 * lag, sagas, pools, breakers) is read when Prometheus scrapes, so it is never stale.
 */
export function createMetrics(service: string) {
  const registry = new Registry();
  registry.setDefaultLabels({ service });
  collectDefaultMetrics({ register: registry });
  const labelNames = ["method", "code"] as const;
  const requests = new Counter({ name: "rpc_server_requests_total", help: "RPCs served, by method and status code", labelNames, registers: [registry] });
  const duration = new Histogram({
    name: "rpc_server_duration_seconds",
    help: "RPC latency, by method and status code",
    labelNames,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
  });

  /** Each method's labelled series, one per status code, made at its first call with that code. */
  interface MethodSeries {
    method: string;
    byCode: Map<string, { duration: ReturnType<typeof duration.labels>; requests: ReturnType<typeof requests.labels> }>;
  }
  const seriesOf = new WeakMap<object, MethodSeries>();
  function record(req: { service: { typeName: string }; method: { name: string } }, code: string, startedAt: number) {
    let series = seriesOf.get(req.method);
    if (!series) {
      series = { method: `${req.service.typeName}/${req.method.name}`, byCode: new Map() };
      seriesOf.set(req.method, series);
    }
    let labelled = series.byCode.get(code);
    if (!labelled) {
      labelled = { duration: duration.labels(series.method, code), requests: requests.labels(series.method, code) };
      series.byCode.set(code, labelled);
    }
    labelled.duration.observe((performance.now() - startedAt) / 1000);
    labelled.requests.inc();
  }
  const codeOf = (err: unknown) => Code[ConnectError.from(err).code] ?? "Unknown";

  const interceptor: Interceptor = (next) => (req) => {
    const startedAt = performance.now();
    let pending: ReturnType<typeof next>;
    try {
      pending = next(req);
    } catch (err) {
      record(req, codeOf(err), startedAt);
      return Promise.reject(err);
    }
    return pending.then(
      (res) => {
        record(req, "OK", startedAt);
        return res;
      },
      (err: unknown) => {
        record(req, codeOf(err), startedAt);
        throw err;
      },
    );
  };

  return {
    registry,
    interceptor,

    /** A gauge computed at scrape time; `read` returns one value per label set. */
    gauge(name: string, help: string, labelNames: string[], read: () => Promise<{ labels?: Record<string, string>; value: number }[]>) {
      new Gauge({
        name,
        help,
        labelNames,
        registers: [registry],
        async collect() {
          this.reset();
          for (const { labels, value } of await read().catch(() => [])) this.set(labels ?? {}, value);
        },
      });
    },

    /** Breaker state and call counts of the process's clients. */
    trackClients(stats: () => DependencyStats[]) {
      const perDependency = (field: keyof Omit<DependencyStats, "dependency" | "breaker">) => async () => stats().map((s) => ({ labels: { dependency: s.dependency }, value: s[field] }));
      this.gauge("rpc_client_breaker_state", "Circuit breaker per dependency: 0 closed, 1 half-open, 2 open, 3 isolated", ["dependency"], async () =>
        stats().map((s) => ({ labels: { dependency: s.dependency }, value: breakerValue[s.breaker] })),
      );
      this.gauge("rpc_client_calls", "Calls made per dependency since start", ["dependency"], perDependency("calls"));
      this.gauge("rpc_client_failures", "Failed calls per dependency since start", ["dependency"], perDependency("failures"));
      this.gauge("rpc_client_rejected", "Calls refused by an open breaker or a full bulkhead", ["dependency"], perDependency("rejected"));
      this.gauge("rpc_client_retries", "Retries per dependency since start", ["dependency"], perDependency("retries"));
      this.gauge("rpc_client_retries_refused", "Retries the dependency's retry budget refused (exhausted) since start", ["dependency"], perDependency("retriesRefused"));
      this.gauge("rpc_client_abandoned", "Calls the caller gave up on (its cancellation or deadline), never held against the dependency", ["dependency"], perDependency("abandoned"));
      this.gauge("rpc_client_in_flight", "Calls in flight per dependency", ["dependency"], perDependency("inFlight"));
    },

    /** Serves GET /metrics; anything else is passed on. */
    handle(req: NodeRequest, res: NodeResponse): boolean {
      if (req.method !== "GET" || req.url?.split("?", 1)[0] !== "/metrics") return false;
      registry.metrics().then(
        (text) => {
          res.writeHead(200, { "content-type": registry.contentType });
          res.end(text);
        },
        () => {
          res.writeHead(500);
          res.end();
        },
      );
      return true;
    },
  };
}

export type Metrics = ReturnType<typeof createMetrics>;
