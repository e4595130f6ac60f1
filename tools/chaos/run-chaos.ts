import { startChaosRig, type LoadShape, type RecoveryBounds, type ScenarioResult } from "./chaos-rig.js";
import type { ChaosPlan } from "./chaos-plans.js";

export interface ChaosRun {
  plan: ChaosPlan["name"];
  startedAt: string;
  durationMs: number;
  /** From mesh start to every service serving. */
  meshStartMs: number;
  load: LoadShape;
  bounds: RecoveryBounds;
  results: ScenarioResult[];
}

/**
 * Runs a plan's scenarios back to back on one scratch mesh. Each scenario starts from a mesh
 * at rest: its checks wait, within bounds, for every order to be terminal and the events to
 * settle, so the next fault never lands on the previous one's backlog.
 */
export async function runChaos(plan: ChaosPlan, options: { onProgress?: (line: string) => void; log?: (line: string) => void } = {}): Promise<ChaosRun> {
  const startedAt = new Date();
  const progress = options.onProgress ?? (() => {});
  progress(`starting a scratch mesh for the ${plan.name} chaos run`);
  const rig = await startChaosRig({ env: plan.env, ...(options.log ? { log: options.log } : {}) });
  const meshStartMs = Date.now() - startedAt.getTime();
  const results: ScenarioResult[] = [];
  try {
    for (const [i, scenario] of plan.scenarios.entries()) {
      progress(`[${i + 1}/${plan.scenarios.length}] ${scenario.name}`);
      const result = await rig.runScenario(scenario, plan);
      progress(`[${i + 1}/${plan.scenarios.length}] ${scenario.name}: ${result.accepted} accepted, ${result.inFlightAtFault} mid-saga at the fault, ${result.violations.length ? `${result.violations.length} violations` : "ok"} (${(result.durationMs / 1000).toFixed(0)} s)`);
      results.push(result);
    }
  } finally {
    await rig.stop();
  }
  return {
    plan: plan.name,
    startedAt: startedAt.toISOString(),
    durationMs: Date.now() - startedAt.getTime(),
    meshStartMs,
    load: plan.load,
    bounds: plan.bounds,
    results,
  };
}
