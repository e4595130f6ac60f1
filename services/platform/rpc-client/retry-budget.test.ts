import { describe, expect, it } from "vitest";
import { createRetryBudget, createThrottle } from "./retry-budget.js";

const policy = { ratio: 0.2, minPerSecond: 10, windowMs: 10_000 };

/** Drives a budget on a fake clock: `callsPerSecond` calls for `seconds`, each wanting `retriesPerCall` retries. */
function drive(seconds: number, callsPerSecond: number, retriesPerCall: number) {
  let now = 0;
  const budget = createRetryBudget(policy, () => now);
  const perSecond: { calls: number; retries: number }[] = [];
  for (let second = 0; second < seconds; second++) {
    const tally = { calls: 0, retries: 0 };
    for (let i = 0; i < callsPerSecond; i++) {
      now = second * 1000 + (i * 1000) / callsPerSecond;
      budget.recordCall();
      tally.calls++;
      for (let r = 0; r < retriesPerCall && budget.tryRetry(); r++) tally.retries++;
    }
    perSecond.push(tally);
  }
  return perSecond;
}

/** Calls and retries in every window of 10 whole seconds. */
const windows = (perSecond: { calls: number; retries: number }[]) =>
  perSecond.slice(0, perSecond.length - 9).map((_, start) => {
    const slice = perSecond.slice(start, start + 10);
    return { calls: slice.reduce((n, s) => n + s.calls, 0), retries: slice.reduce((n, s) => n + s.retries, 0) };
  });

describe("the retry budget", () => {
  it("keeps retries within 20% of calls plus the floor in every window, when every call fails", () => {
    const perSecond = drive(60, 200, 2);
    const all = windows(perSecond);
    expect(all).toHaveLength(51);
    // The window slides a tenth at a time, so a whole-second window may hold one slot more.
    for (const w of all) expect(w.retries).toBeLessThanOrEqual(0.2 * w.calls * 1.1 + 10 * 10);
    const total = perSecond.reduce((n, s) => ({ calls: n.calls + s.calls, retries: n.retries + s.retries }), { calls: 0, retries: 0 });
    // Unbounded, two retries per call would be 200% of the calls; the budget holds them near 20% plus the floor.
    expect(total.retries / total.calls).toBeLessThan(0.2 + (10 * 10) / (200 * 10) + 0.02);
    expect(total.retries / total.calls).toBeGreaterThan(0.2);
  });

  it("allows the floor to a quiet dependency, and refills once old calls age out", () => {
    let now = 0;
    const budget = createRetryBudget(policy, () => now);
    const granted = () => Array.from({ length: 1000 }, () => budget.tryRetry()).filter(Boolean).length;
    expect(granted()).toBe(100); // 10 a second over 10 s, with no calls at all
    now = 5_000;
    expect(budget.tryRetry()).toBe(false);
    now = 20_001; // the window has moved past every retry
    expect(granted()).toBe(100);
  });

  it("grants every retry while failures are rare", () => {
    // 100 calls a second, one in ten retried once: 10% of calls, inside 20% even without a floor.
    let now = 0;
    const budget = createRetryBudget({ ...policy, minPerSecond: 0 }, () => now);
    let refused = 0;
    for (let i = 0; i < 3000; i++) {
      now = i * 10;
      budget.recordCall();
      if (i % 10 === 9 && !budget.tryRetry()) refused++;
    }
    expect(refused).toBe(0);
  });
});

describe("adaptive throttling", () => {
  it("sends a dependency that sheds past its capacity about twice what it accepts, and nothing is held back before it sheds", () => {
    let now = 0;
    const throttle = createThrottle({ overAccepted: 2, windowMs: 10_000 }, () => now);
    const capacityPerSecond = 20;
    const tally = { sent: 0, accepted: 0 };
    // 100 calls a second for 30 s to a dependency that accepts 20 a second and refuses the rest.
    for (let second = 0; second < 30; second++) {
      let acceptedThisSecond = 0;
      for (let i = 0; i < 100; i++) {
        now = second * 1000 + i * 10;
        if (throttle.holdsBack()) continue;
        if (second >= 10) tally.sent++;
        if (acceptedThisSecond < capacityPerSecond) {
          acceptedThisSecond++;
          if (second >= 10) tally.accepted++;
          throttle.recordAccepted();
        } else throttle.recordRefused();
      }
    }
    // Measured once the window is full: about 2 × 20 a second sent, all 20 accepted.
    expect(tally.accepted).toBe(20 * 20);
    expect(tally.sent / 20).toBeGreaterThan(35);
    expect(tally.sent / 20).toBeLessThan(50);
    const quiet = createThrottle({ overAccepted: 2, windowMs: 10_000 }, () => now);
    expect(Array.from({ length: 100 }, () => quiet.holdsBack()).some(Boolean)).toBe(false);
  });
});
