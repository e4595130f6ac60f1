import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { Code, ConnectError } from "@connectrpc/connect";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import type { DependencyStats } from "#platform";
import { createGatewayStats } from "./stats.js";

const service = { typeName: "shop.gateway.v1.StorefrontService" };
/** What the interceptor reads of a request. */
const request = (method: string) => ({ service, method: { name: method } }) as never;

describe("the gateway's stats", () => {
  let clock: number;
  let dependencies: DependencyStats[];
  let stats: ReturnType<typeof createGatewayStats>;
  /** One public call through the stats interceptor, taking `ms` of (fake) time and failing with `code` if given. */
  const call = async (method: string, ms = 0, code?: Code) => {
    const next = async () => {
      if (ms > 0) await new Promise((resolve) => setTimeout(resolve, ms));
      if (code !== undefined) throw new ConnectError("refused", code);
      return {} as never;
    };
    const done = stats.interceptor(next as never)(request(method)).catch(() => undefined);
    if (ms > 0) await vi.advanceTimersByTimeAsync(ms);
    await done;
  };
  /** The clock at `ms`, and the stats timer run. */
  const at = async (ms: number) => {
    clock = ms;
    await vi.advanceTimersToNextTimerAsync();
  };

  beforeEach(() => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "performance"] });
    clock = 10_200;
    dependencies = [];
    stats = createGatewayStats({ service, placeOrder: "PlaceOrder", dependencies: () => dependencies, now: () => clock });
  });
  afterEach(() => {
    stats.close();
    vi.useRealTimers();
  });

  it("writes one point per second, labelled by its second, and spreads a stalled timer's counts over the seconds it missed", async () => {
    for (let i = 0; i < 3; i++) await call("PlaceOrder");
    await at(11_000);
    for (let i = 0; i < 6; i++) await call("PlaceOrder");
    // The event loop stalls: the timer for 12 s fires at 14.05 s.
    await at(14_050);
    await call("PlaceOrder");
    await at(15_000);
    const { points } = stats.read(10);
    expect(points.map((p) => [timestampMs(p.time!), p.ordersPerSecond])).toEqual([
      [10_000, 3],
      [11_000, 2],
      [12_000, 2],
      [13_000, 2],
      [14_000, 1],
    ]);
  });

  it("counts failed PlaceOrders' latencies in p50 and p99, and failed calls by code", async () => {
    clock = 10_000;
    for (let i = 0; i < 9; i++) await call("PlaceOrder", 10);
    // Refused after a long wait: the latency the chart is there to show.
    await call("PlaceOrder", 900, Code.DeadlineExceeded);
    await call("ListProducts", 0, Code.InvalidArgument);
    await at(11_000);
    const [point] = stats.read(1).points;
    expect(point).toMatchObject({ ordersPerSecond: 9, p50Ms: 10, p99Ms: 900, errorsPerSecond: { deadline_exceeded: 1, invalid_argument: 1 } });
  });

  it("counts a breaker's calls as those sent: refusals of an open breaker are neither calls nor failures", async () => {
    const order: DependencyStats = { dependency: "order", breaker: "closed", calls: 0, failures: 0, abandoned: 0, rejected: 0, retries: 0, retriesRefused: 0, inFlight: 0 };
    dependencies = [order];
    await at(11_000);
    dependencies = [{ ...order, breaker: "open", calls: 125, failures: 5, rejected: 120 }];
    await at(12_000);
    expect(stats.read(1).breakers).toEqual([expect.objectContaining({ dependency: "order", state: "open", calls: 5, failures: 5 })]);
  });
});
