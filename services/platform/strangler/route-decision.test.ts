import { describe, expect, it } from "vitest";
import { canaryBucketOf, decideSide, stickyKeyOf } from "./route-decision.js";
import type { RouteEntry } from "./route-table.js";

const METHOD = "shop.gateway.v1.StorefrontService/ListProducts";
const entry = (mode: RouteEntry["mode"], canaryPercent = 0): RouteEntry => ({ method: METHOD, mode, canaryPercent, changedBy: "", changeTime: "", reason: "", revision: 1 });
const keys = Array.from({ length: 10_000 }, (_, i) => `customer:${i.toString(16).padStart(8, "0")}-4f6e-8a1b-${i}`);
const servedNew = (route: RouteEntry) => keys.filter((key) => decideSide(route, key).serve === "new").length;

describe("decideSide", () => {
  it("serves legacy, legacy with a shadow, or new, whoever calls", () => {
    expect(decideSide(entry("legacy"), "customer:a")).toEqual({ serve: "legacy", shadow: false });
    expect(decideSide(entry("shadow"), "customer:a")).toEqual({ serve: "legacy", shadow: true });
    expect(decideSide(entry("new"), "customer:a")).toEqual({ serve: "new", shadow: false });
    expect(servedNew(entry("legacy"))).toBe(0);
    expect(servedNew(entry("new"))).toBe(keys.length);
  });

  it("sends close to N% of 10,000 callers to the new side under canary N", () => {
    for (const percent of [1, 10, 50, 90, 99]) {
      const share = servedNew(entry("canary", percent)) / keys.length;
      // Binomial: 4 standard deviations at most 2 points.
      expect(Math.abs(share - percent / 100)).toBeLessThan(0.02);
    }
  });

  it("is sticky: a caller keeps its side across calls and replicas, and a growing canary only adds callers", () => {
    const at10 = new Set(keys.filter((key) => decideSide(entry("canary", 10), key).serve === "new"));
    const again = new Set(keys.filter((key) => decideSide(entry("canary", 10), key).serve === "new"));
    expect(again).toEqual(at10);
    const at50 = new Set(keys.filter((key) => decideSide(entry("canary", 50), key).serve === "new"));
    expect(at10.size).toBeGreaterThan(0);
    expect([...at10].filter((key) => !at50.has(key))).toEqual([]);
    expect(canaryBucketOf(METHOD, "customer:a")).toBe(canaryBucketOf(METHOD, "customer:a"));
  });

  it("puts a caller in a bucket of its own per method, so canaries of two methods pick different callers", () => {
    const other = "shop.gateway.v1.StorefrontService/GetProduct";
    const differing = keys.filter((key) => canaryBucketOf(METHOD, key) !== canaryBucketOf(other, key)).length;
    expect(differing).toBeGreaterThan(keys.length * 0.9);
  });
});

describe("stickyKeyOf", () => {
  it("keys a signed-in caller by customer, an anonymous one by address", () => {
    expect(stickyKeyOf({ customerId: "c-1", clientAddress: "10.0.0.1" })).toBe("customer:c-1");
    expect(stickyKeyOf({ clientAddress: "10.0.0.1" })).toBe("address:10.0.0.1");
    expect(stickyKeyOf({ customerId: "", clientAddress: "10.0.0.1" })).toBe("address:10.0.0.1");
  });
});
