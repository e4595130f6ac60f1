import { type ScratchMesh } from "../mesh/scratch-mesh.js";
import { meshServiceNames, type MeshServiceName } from "#mesh";
import type { Sql } from "postgres";
import type { TcpFaultProxy } from "./tcp-fault-proxy.js";
import type { LoadShape } from "./chaos-rig.js";
import { runOverload } from "../load/overload-run.js";

/** What a scenario may break: the mesh's processes and the link between order and payment. */
export interface FaultTargets {
  mesh: ScratchMesh;
  /** Sits in front of payment; every caller of payment goes through it. */
  paymentProxy: TcpFaultProxy;
  /** The rig's own superuser connection to the mesh's database. */
  sql: Sql;
}

/**
 * One fault, injected while load runs. `inject` resolves when the fault has ended as far as
 * the operator is concerned: at once for a SIGKILL (restarting is the supervisor's job, and
 * part of recovery), after the restart for NATS and Postgres, after the link is healthy
 * again for the payment proxy.
 */
export interface ChaosScenario {
  name: string;
  /** Violations the fault itself found, for a fault that is load and checks what it promised. */
  inject(targets: FaultTargets): Promise<void | string[]>;
  /** Overrides of the plan's load, for a scenario that brings its own. */
  load?: Partial<LoadShape>;
  /**
   * The service the fault kills, which the supervisor is expected to restart. Any other
   * service process that dies during the scenario is a violation: a fault elsewhere (a
   * database restart, a broker crash, a flapping link) must be survived, not crashed through.
   */
  kills?: MeshServiceName;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** How long a fault lasts: long enough to matter, short enough for a bounded run. */
export interface FaultDurations {
  /** NATS or Postgres stays down this long. */
  outageMs: number;
  /** The payment link stays slow, or flapping, this long. */
  degradedMs: number;
  /** Each chunk's delay on the slow link. */
  slowDelayMs: number;
  /** Down and up periods of the flapping link. */
  flapMs: { down: number; up: number };
}

/** A crash, as the OOM killer or a node failure deals it: no shutdown hook runs. */
export const killService = (name: MeshServiceName): ChaosScenario => ({
  name: `SIGKILL ${name}`,
  kills: name,
  async inject({ mesh }) {
    mesh.killService(name);
  },
});

/** The broker crashes and comes back with its file store: the outbox relays and consumers must catch up. */
export const killNats = (d: FaultDurations): ChaosScenario => ({
  name: "SIGKILL nats-server",
  async inject({ mesh }) {
    await mesh.killNats();
    await sleep(d.outageMs);
    await mesh.startNats();
  },
});

/**
 * Database restarts (failover, upgrade): every connection of every service is cut at once,
 * `times` times in a row with `upMs` of service between them, so a driver that survives one
 * blip by luck is still caught. No service process may die of it.
 */
export const restartPostgres = (d: FaultDurations, times = 1, upMs = 1_500): ChaosScenario => ({
  name: times === 1 ? "restart Postgres" : `restart Postgres ${times} times`,
  async inject({ mesh }) {
    for (let i = 0; i < times; i++) {
      if (i > 0) await sleep(upMs);
      await mesh.stopPostgres();
      await sleep(d.outageMs);
      await mesh.startPostgres();
    }
  },
});

/**
 * An administrator (or a pooler, or an idle-session timeout) terminates every service
 * backend at once while Postgres stays up: each pool must replace its connections.
 */
export const terminateBackends = (): ChaosScenario => ({
  name: "terminate every Postgres backend",
  async inject({ sql }) {
    await sql`select pg_terminate_backend(pid) from pg_stat_activity where pid <> pg_backend_pid() and backend_type = 'client backend'`;
  },
});

/** A dependency that answers, but late: calls time out and are retried while their first attempt may still land. */
export const slowPayment = (d: FaultDurations): ChaosScenario => ({
  name: `payment slow (+${d.slowDelayMs} ms per chunk)`,
  async inject({ paymentProxy }) {
    paymentProxy.setMode({ kind: "slow", delayMs: d.slowDelayMs });
    await sleep(d.degradedMs);
    paymentProxy.setMode({ kind: "pass" });
  },
});

/** A dependency that comes and goes: connections reset mid-call, breakers open and close. */
export const flappingPayment = (d: FaultDurations): ChaosScenario => ({
  name: `payment flapping (${d.flapMs.down / 1000} s down / ${d.flapMs.up / 1000} s up)`,
  async inject({ paymentProxy }) {
    paymentProxy.setMode({ kind: "flapping", downMs: d.flapMs.down, upMs: d.flapMs.up });
    await sleep(d.degradedMs);
    paymentProxy.setMode({ kind: "pass" });
  },
});

/**
 * Three times the mesh's measured peak through the gateway for 20 s, as paced arrivals
 * (issue 12): admission control must keep the admitted orders' latency within 3 × the p99
 * at half peak, goodput at 80% of the peak and retries at 20% of calls, and latency must be
 * normal again within 5 s. The scenario is the load, so the plan's own load does not run.
 */
export const overload = (mix: LoadShape["mix"]): ChaosScenario => ({
  name: "overload: 3 × the peak for 20 s",
  load: { durationMs: 0, faultAfterMs: 0 },
  async inject({ mesh }) {
    const report = await runOverload({
      gatewayUrl: mesh.url("gateway"),
      opsUrls: meshServiceNames.map((name) => mesh.opsUrl(name)),
      mix,
      peakMs: 5_000,
      concurrency: 32,
      halfPeakMs: 5_000,
      overloadMs: 20_000,
      factor: 3,
      afterMs: 6_000,
    });
    return report.violations;
  },
});
