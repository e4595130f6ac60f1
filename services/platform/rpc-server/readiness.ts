import { ServingStatus, type HealthRegistry } from "./health.js";
import type { Logger } from "../process/logger.js";

export interface ReadinessProbe {
  name: string;
  /** Resolves if the dependency answers; rejects or hangs if not. */
  check(): Promise<unknown>;
}

/** The health name Kubernetes readiness probes ask for. */
export const READINESS = "readiness";

/**
 * Readiness follows the dependencies: while any probe fails (Postgres, NATS), "readiness"
 * and the service's own names report NOT_SERVING, so load balancers stop sending work it
 * cannot do. Liveness (the empty name) stays SERVING: restarting a healthy process would
 * not bring a database back.
 */
export function startReadinessMonitor(options: { health: HealthRegistry; names: string[]; probes: ReadinessProbe[]; intervalMs?: number; timeoutMs?: number; logger: Logger }) {
  const { health, logger } = options;
  const timeoutMs = options.timeoutMs ?? 1_000;
  let failing: string[] = [];
  const probe = (p: ReadinessProbe) =>
    Promise.race([p.check().then(() => undefined), new Promise<never>((_, fail) => setTimeout(() => fail(new Error("timed out")), timeoutMs).unref())]).then(
      () => undefined,
      () => p.name,
    );
  const tick = async () => {
    const now = (await Promise.all(options.probes.map(probe))).filter((name): name is string => name !== undefined);
    if (now.join() !== failing.join()) logger[now.length ? "warn" : "info"]({ unreachable: now }, now.length ? "not ready" : "ready");
    failing = now;
    const status = now.length === 0 ? ServingStatus.SERVING : ServingStatus.NOT_SERVING;
    for (const name of [READINESS, ...options.names]) health.set(name, status);
  };
  let running = tick();
  const timer = setInterval(() => (running = running.then(tick)), options.intervalMs ?? 2_000);
  timer.unref();
  return {
    /** Settles once the dependencies have been checked the first time. */
    firstCheck: running,
    async stop() {
      clearInterval(timer);
      await running;
    },
  };
}
