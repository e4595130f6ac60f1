import { meshServiceNames } from "#mesh";
import type { LoadShape, RecoveryBounds } from "./chaos-rig.js";
import { flappingPayment, killNats, killService, overload, restartPostgres, slowPayment, terminateBackends, type ChaosScenario } from "./chaos-scenarios.js";

/** A chaos run: the mesh's settings, the load each scenario runs under, and the scenarios. */
export interface ChaosPlan {
  name: "full" | "quick";
  /** Extra environment for every service. */
  env: Record<string, string>;
  load: LoadShape;
  bounds: RecoveryBounds;
  scenarios: ChaosScenario[];
}

/**
 * Orders are mostly good, with declines and out-of-stock ones so compensation runs too, and
 * tok_3ds ones, half confirmed and half left to time out, so signals and their timeouts do.
 */
const mix = { good: 7, declined: 2, outOfStock: 1, threeDs: 2 };

/**
 * The overload scenario measures latency to terminal, which a 3-D Secure order's wait for
 * its customer would swamp: it runs without them.
 */
const overloadMix = { ...mix, threeDs: 0 };

/** Seconds, not the shipped 10 minutes, so unconfirmed 3-D Secure orders time out inside each scenario. */
const threeDsEnv = { THREE_DS_TIMEOUT_MS: "3000" };

/**
 * `npm run chaos`: every fault the issue names, each under 20 s of load at a modest 6
 * orders/s (about half of what this 2-core machine sustains), the fault 4 s in. The
 * services keep their shipped settings but the 3-D Secure timeout, so the run shows what a
 * real deployment survives, including a killed order's sagas waiting out their 15 s lease.
 */
export const fullPlan: ChaosPlan = (() => {
  const d = { outageMs: 3_000, degradedMs: 8_000, slowDelayMs: 2_500, flapMs: { down: 1_500, up: 1_500 } };
  return {
    name: "full",
    env: { ...threeDsEnv },
    load: { durationMs: 20_000, ratePerSecond: 6, faultAfterMs: 4_000, mix },
    bounds: { terminalAfterFaultMs: 60_000, settleAfterTerminalMs: 45_000 },
    scenarios: [
      ...meshServiceNames.map(killService),
      killNats(d),
      restartPostgres(d),
      restartPostgres(d, 5),
      terminateBackends(),
      slowPayment(d),
      flappingPayment(d),
      overload(overloadMix),
    ],
  };
})();

/**
 * The short run in `npm test`: one fault of each kind, a few seconds of load each. Saga
 * leases and sweeps are short, as in the crash tests, so a killed order's sagas resume
 * within seconds and the suite stays within its time budget.
 */
export const quickPlan: ChaosPlan = (() => {
  const d = { outageMs: 2_000, degradedMs: 3_000, slowDelayMs: 1_000, flapMs: { down: 1_000, up: 1_000 } };
  return {
    name: "quick",
    env: { SAGA_LEASE_MS: "5000", SAGA_SWEEP_MS: "300", SAGA_STEP_TIMEOUT_MS: "1500", ...threeDsEnv },
    load: { durationMs: 6_000, ratePerSecond: 5, faultAfterMs: 2_000, mix },
    // Tighter, so a failing scenario reports within its test's timeout rather than timing out.
    bounds: { terminalAfterFaultMs: 30_000, settleAfterTerminalMs: 35_000 },
    // Five restarts in a row, a second apart: a driver that survives one blip by luck fails here.
    scenarios: [killService("order"), killNats(d), flappingPayment(d), restartPostgres({ ...d, outageMs: 1_000 }, 5, 1_000)],
  };
})();
