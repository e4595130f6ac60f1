import type { MeshServiceName, ScratchMesh } from "../../services/platform/dev/scratch-mesh.js";
import type { TcpFaultProxy } from "./tcp-fault-proxy.js";

/** What a scenario may break: the mesh's processes and the link between order and payment. */
export interface FaultTargets {
  mesh: ScratchMesh;
  /** Sits in front of payment; every caller of payment goes through it. */
  paymentProxy: TcpFaultProxy;
}

/**
 * One fault, injected while load runs. `inject` resolves when the fault has ended as far as
 * the operator is concerned: at once for a SIGKILL (restarting is the supervisor's job, and
 * part of recovery), after the restart for NATS and Postgres, after the link is healthy
 * again for the payment proxy.
 */
export interface ChaosScenario {
  name: string;
  inject(targets: FaultTargets): Promise<void>;
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

/** A database restart (failover, upgrade): every connection of every service is cut at once. */
export const restartPostgres = (d: FaultDurations): ChaosScenario => ({
  name: "restart Postgres",
  async inject({ mesh }) {
    await mesh.stopPostgres();
    await sleep(d.outageMs);
    await mesh.startPostgres();
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
