import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { quickPlan } from "#tools/chaos/chaos-plans.js";
import { startChaosRig, type ChaosRig } from "#tools/chaos/chaos-rig.js";

/**
 * The short chaos run (`npm run chaos -- --quick`), one test per fault: a SIGKILLed order,
 * a SIGKILLed nats-server, a flapping link to payment, a Postgres restart, each under a few
 * seconds of load through the gateway, on a disposable mesh of real processes. Each must
 * have accepted orders (or it proved nothing) and end with every invariant holding.
 */
describe("faults under load", () => {
  let rig: ChaosRig;
  const recentLog: string[] = [];

  beforeAll(async () => {
    rig = await startChaosRig({
      env: quickPlan.env,
      log: (line) => {
        recentLog.push(line);
        if (recentLog.length > 40) recentLog.shift();
      },
    });
  });
  afterAll(async () => {
    await rig?.stop();
  });

  for (const scenario of quickPlan.scenarios) {
    // The plan's bounds (30 s to terminal, 35 s to settle) fit inside this timeout, so a
    // broken invariant is reported as such rather than as a timeout.
    it(`${scenario.name}: orders accepted, none lost, every invariant holds`, { timeout: 90_000 }, async () => {
      const result = await rig.runScenario(scenario, quickPlan);
      expect(result.accepted, `orders accepted during the load (errors ${JSON.stringify(result.errors)}; ${result.violations.join("; ")})`).toBeGreaterThan(0);
      expect(result.violations, `services' recent log:\n${recentLog.join("\n")}`).toEqual([]);
      expect(result.terminal).toBe(result.accepted);
      expect(result.recoveredMs).toBeDefined();
    });
  }
});
