import { describe, expect, it } from "vitest";
import { silentLogger } from "#tests/support/silent-logger.js";
import { createMetrics } from "../process/metrics.js";
import { createShadowCaller } from "./shadow-caller.js";

const METHOD = "shop.gateway.v1.StorefrontService/ListProducts";
const same = () => ({ differences: [], more: 0 });
const differs = (path: string) => () => ({ differences: [{ path, legacy: "1", new: "2" }], more: 3 });

describe("shadow caller", () => {
  it("counts matches, mismatches with the newest example, failures and timeouts, per method and in Prometheus", async () => {
    const metrics = createMetrics("test");
    const shadow = createShadowCaller({ logger: silentLogger, metrics, policy: { timeoutMs: 100 } });
    shadow.served(METHOD, "legacy");
    shadow.served(METHOD, "legacy");
    shadow.served(METHOD, "new");
    expect(await shadow.shadow(METHOD, async () => "x", same).settled).toBe("match");
    expect(await shadow.shadow(METHOD, async () => "x", differs("a")).settled).toBe("mismatch");
    expect(await shadow.shadow(METHOD, async () => "x", differs("b")).settled).toBe("mismatch");
    expect(await shadow.shadow(METHOD, () => Promise.reject(new Error("new side down")), same).settled).toBe("failed");
    // A new side that does not answer within the shadow timeout counts as failed.
    const hanging = (signal: AbortSignal) => new Promise<string>((_, reject) => signal.addEventListener("abort", () => reject(signal.reason)));
    const startedAt = Date.now();
    expect(await shadow.shadow(METHOD, hanging, same).settled).toBe("failed");
    expect(Date.now() - startedAt).toBeLessThan(1_000);
    const stats = shadow.stats(METHOD);
    expect(stats).toMatchObject({ legacyCalls: 2, newCalls: 1, compared: 3, mismatched: 2, failed: 2, skipped: 0 });
    expect(stats.example).toMatchObject({ differences: [{ path: "b" }], more: 3 });
    expect(shadow.stats("other").compared).toBe(0);
    const text = await metrics.registry.metrics();
    expect(text).toContain(`strangler_calls_total{method="${METHOD}",side="legacy",service="test"} 2`);
    expect(text).toContain(`strangler_shadow_total{method="${METHOD}",result="mismatch",service="test"} 2`);
    expect(text).toContain(`strangler_shadow_total{method="${METHOD}",result="failed",service="test"} 2`);
  });

  it("returns at once, and skips shadow calls beyond maxInFlight rather than queue them", async () => {
    const shadow = createShadowCaller({ logger: silentLogger, policy: { maxInFlight: 2, timeoutMs: 5_000 } });
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const slow = async () => {
      await gate;
      return "x";
    };
    const first = shadow.shadow(METHOD, slow, same);
    const second = shadow.shadow(METHOD, slow, same);
    expect(shadow.inFlight()).toBe(2);
    expect(await shadow.shadow(METHOD, slow, same).settled).toBe("skipped");
    release();
    expect(await Promise.all([first.settled, second.settled])).toEqual(["match", "match"]);
    expect(shadow.inFlight()).toBe(0);
    expect(shadow.stats(METHOD)).toMatchObject({ compared: 2, skipped: 1 });
  });

  it("with a recheck, counts only a difference still there with the old side's value unchanged as a mismatch", async () => {
    const shadow = createShadowCaller({ logger: silentLogger, policy: { recheckAfterMs: 50 } });
    const first = () => ({ differences: [{ path: "a", legacy: "1", new: "0" }, { path: "b", legacy: "1", new: "0" }], more: 0 });
    const recheckWith = (differences: { path: string; legacy: string; new: string }[]) => async () => ({ differences, more: 0 });
    // Caught up by the recheck: converged.
    expect(await shadow.shadow(METHOD, async () => "x", first, recheckWith([])).settled).toBe("converged");
    // The old side moved on meanwhile: a moving target, not evidence.
    expect(await shadow.shadow(METHOD, async () => "x", first, recheckWith([{ path: "a", legacy: "2", new: "1" }])).settled).toBe("converged");
    // Still behind an unchanged old value: a mismatch, whose example lists what persisted.
    expect(await shadow.shadow(METHOD, async () => "x", first, recheckWith([{ path: "b", legacy: "1", new: "0" }])).settled).toBe("mismatch");
    expect(shadow.stats(METHOD)).toMatchObject({ compared: 3, converged: 2, mismatched: 1, example: { differences: [{ path: "b" }] } });
    // A recheck that fails counts as failed.
    expect(await shadow.shadow(METHOD, async () => "x", first, () => Promise.reject(new Error("old shop down"))).settled).toBe("failed");
  });

  it("counts a comparison that throws as failed, never passing it on", async () => {
    const shadow = createShadowCaller({ logger: silentLogger });
    const boom = () => {
      throw new Error("cannot compare");
    };
    expect(await shadow.shadow(METHOD, async () => "x", boom).settled).toBe("failed");
    expect(shadow.stats(METHOD).failed).toBe(1);
  });
});
