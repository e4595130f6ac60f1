import { randomUUID } from "node:crypto";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError, createClient, type Client, type ConnectRouter, type HandlerContext, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { pino } from "pino";
import { InventoryService } from "#gen/shop/inventory/v1/inventory_service_pb.js";
import { eventually } from "#tests/support/eventually.js";
import { startTestNats } from "#tests/support/nats.js";
import { connectBus } from "../messaging/connection.js";
import { createServiceDirectory, registerInstance, type ServiceDirectory } from "../discovery/registry.js";
import { createServiceClient, type ServiceClient } from "./clients.js";
import type { ResiliencePolicy } from "./resilience.js";
import { startServer, type RunningServer } from "../rpc-server/server.js";

const logger = pino({ level: "silent" });
const serverOptions = { logger, services: [InventoryService], maxRequestBytes: 64 * 1024, shutdownGraceMs: 500 };
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const codeOf = (err: unknown) => ConnectError.from(err).code;

/** A stand-in inventory whose GetStock waits `delayMs`, recording the deadlines it was given. */
function slowInventory(delayMs: () => number, seen: { timeoutMs: (number | undefined)[]; aborted: number }) {
  return (router: ConnectRouter) =>
    router.service(InventoryService, {
      async getStock(req, ctx: HandlerContext) {
        seen.timeoutMs.push(ctx.timeoutMs());
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, delayMs());
          ctx.signal.addEventListener("abort", () => {
            seen.aborted++;
            clearTimeout(timer);
            resolve();
          });
        });
        return { stock: { sku: req.sku, available: 1 } };
      },
    });
}

describe("the resilience stack on real servers", () => {
  it("opens the breaker after its threshold, fails fast while open, and closes through half-open", async () => {
    const seen = { timeoutMs: [] as (number | undefined)[], aborted: 0 };
    let server: RunningServer = await startServer({ ...serverOptions, routes: slowInventory(() => 0, seen) }, { host: "127.0.0.1", port: 0 });
    const port = server.port;
    const inventory = createServiceClient(InventoryService, {
      baseUrl: server.url,
      resilience: { breakerThreshold: 3, halfOpenAfterMs: 500, maxAttempts: 1, timeoutMs: 2_000 },
    });
    try {
      expect((await inventory.client.getStock({ sku: "a" })).stock?.available).toBe(1);
      await server.close();
      for (let i = 0; i < 3; i++) expect(codeOf(await inventory.client.getStock({ sku: "a" }).catch((e) => e))).toBe(Code.Unavailable);
      expect(inventory.stats().breaker).toBe("open");

      const started = performance.now();
      const fast = await inventory.client.getStock({ sku: "a" }).catch((e: unknown) => ConnectError.from(e));
      const elapsed = performance.now() - started;
      expect(fast).toMatchObject({ code: Code.Unavailable, rawMessage: "circuit breaker for shop.inventory.v1.InventoryService is open" });
      expect(elapsed).toBeLessThan(200); // an order of magnitude under the 2 s timeout
      expect(inventory.stats().rejected).toBeGreaterThanOrEqual(1);

      server = await startServer({ ...serverOptions, routes: slowInventory(() => 0, seen) }, { host: "127.0.0.1", port });
      await sleep(600); // past halfOpenAfterMs: the next call is the trial
      expect((await inventory.client.getStock({ sku: "a" })).stock?.available).toBe(1);
      expect(inventory.stats().breaker).toBe("closed");
    } finally {
      inventory.close();
      await server.close();
    }
  });

  it("rejects past the bulkhead's limit with RESOURCE_EXHAUSTED, and the server stays healthy", async () => {
    const seen = { timeoutMs: [] as (number | undefined)[], aborted: 0 };
    const server = await startServer({ ...serverOptions, routes: slowInventory(() => 300, seen) }, { host: "127.0.0.1", port: 0 });
    // A threshold below the number of rejections: back-pressure must not count as failure.
    const inventory = createServiceClient(InventoryService, { baseUrl: server.url, resilience: { maxConcurrent: 2, maxQueued: 1, maxAttempts: 1, breakerThreshold: 2 } });
    try {
      const results = await Promise.allSettled(Array.from({ length: 6 }, () => inventory.client.getStock({ sku: "b" })));
      const codes = results.map((r) => (r.status === "fulfilled" ? "ok" : codeOf(r.reason)));
      expect(codes.filter((c) => c === "ok")).toHaveLength(3); // 2 running + 1 queued
      expect(codes.filter((c) => c === Code.ResourceExhausted)).toHaveLength(3);
      expect(inventory.stats().breaker).toBe("closed"); // rejections are not the server's failures
      expect(server.health.get("")).toBe(1); // SERVING
      expect((await inventory.client.getStock({ sku: "b" })).stock?.sku).toBe("b");
    } finally {
      inventory.close();
      await server.close();
    }
  });

  it("counts attempts that hang against the dependency, so a hanging one trips the breaker", async () => {
    const seen = { timeoutMs: [] as (number | undefined)[], aborted: 0 };
    const server = await startServer({ ...serverOptions, routes: slowInventory(() => 2_000, seen) }, { host: "127.0.0.1", port: 0 });
    const inventory = createServiceClient(InventoryService, { baseUrl: server.url, resilience: { attemptTimeoutMs: 100, maxAttempts: 1, breakerThreshold: 2 } });
    try {
      for (let i = 0; i < 2; i++) expect(codeOf(await inventory.client.getStock({ sku: "h" }).catch((e) => e))).toBe(Code.DeadlineExceeded);
      expect(inventory.stats().breaker).toBe("open");
    } finally {
      inventory.close();
      await server.close();
    }
  });

  it("propagates a short caller deadline downstream, where the callee sees it and gives up", async () => {
    const seen = { timeoutMs: [] as (number | undefined)[], aborted: 0 };
    const downstream = await startServer({ ...serverOptions, routes: slowInventory(() => 5_000, seen) }, { host: "127.0.0.1", port: 0 });
    const toDownstream = createServiceClient(InventoryService, { baseUrl: downstream.url, resilience: { maxAttempts: 1, attemptTimeoutMs: 10_000, timeoutMs: 10_000 } });
    // The middle hop calls downstream with no deadline of its own: only the caller's applies.
    const middle = await startServer(
      {
        ...serverOptions,
        routes: (router) =>
          router.service(InventoryService, {
            async getReservation() {
              await toDownstream.client.getStock({ sku: "deep" });
              return {};
            },
          }),
      },
      { host: "127.0.0.1", port: 0 },
    );
    const caller = createClient(InventoryService, createGrpcTransport({ baseUrl: middle.url }));
    try {
      const started = performance.now();
      const err = await caller.getReservation({ orderId: "o" }, { timeoutMs: 300 }).catch((e: unknown) => ConnectError.from(e));
      expect(err).toMatchObject({ code: Code.DeadlineExceeded });
      expect(performance.now() - started).toBeLessThan(2_000); // not the 5 s the callee would take
      await eventually(() => expect(seen.aborted).toBe(1), 2_000);
      expect(seen.timeoutMs[0]).toBeLessThanOrEqual(300);
      expect(seen.timeoutMs[0]).toBeGreaterThan(0);
    } finally {
      toDownstream.close();
      await middle.close();
      await downstream.close();
    }
  });
});

/**
 * A stand-in inventory whose GetStock behaves as its sku says, counting the calls per sku
 * and the deadlines it was given.
 */
function scriptedInventory(seen: { calls: Map<string, number>; shortDeadlines: number; onArrival: Map<string, () => void> }) {
  return (router: ConnectRouter) =>
    router.service(InventoryService, {
      async getStock(req, ctx: HandlerContext) {
        seen.calls.set(req.sku, (seen.calls.get(req.sku) ?? 0) + 1);
        if (ctx.timeoutMs() !== undefined && ctx.timeoutMs()! <= 10) seen.shortDeadlines++;
        seen.onArrival.get(req.sku)?.();
        const wait = (ms: number) =>
          new Promise<void>((resolve) => {
            const timer = setTimeout(resolve, ms);
            ctx.signal.addEventListener("abort", () => (clearTimeout(timer), resolve()), { once: true });
          });
        if (req.sku === "down") throw new ConnectError("not serving", Code.Unavailable);
        if (req.sku === "shed") throw new ConnectError("overloaded", Code.ResourceExhausted);
        if (req.sku.startsWith("flaky-") && seen.calls.get(req.sku) === 1) throw new ConnectError("not this time", Code.Unavailable);
        // A callee that will not start what it cannot finish in the time it was given.
        if (req.sku === "refuses-short" && (ctx.timeoutMs() ?? Infinity) < 100) throw new ConnectError("too little time left", Code.DeadlineExceeded);
        if (req.sku.startsWith("slow")) await wait(30);
        if (req.sku === "hang") await wait(2_000);
        return { stock: { sku: req.sku, available: 1 } };
      },
    });
}

/** A caller that sends a deadline header but keeps no timer of its own, as a hostile client would. */
const withDeadlineHeader =
  (ms: number): Interceptor =>
  (next) =>
  (req) => {
    req.header.set("grpc-timeout", `${ms}m`);
    return next(req);
  };

describe("a breaker counts only the dependency's own failures", () => {
  let downstream: RunningServer;
  let middle: RunningServer;
  let toDownstream: ServiceClient<typeof InventoryService>;
  const seen = { calls: new Map<string, number>(), shortDeadlines: 0, onArrival: new Map<string, () => void>() };

  /**
   * A middle hop that calls downstream on behalf of its caller, as the gateway and order do:
   * GetReservation passes the caller's signal along (the gateway's way), ListProducts does not
   * (order's CreateOrder), so only the propagated deadline bounds its call.
   */
  async function startMiddle(resilience: Partial<ResiliencePolicy>, directory?: ServiceDirectory) {
    toDownstream = createServiceClient(InventoryService, { baseUrl: downstream.url, resilience, ...(directory ? { directory } : {}) });
    middle = await startServer(
      {
        ...serverOptions,
        routes: (router) =>
          router.service(InventoryService, {
            async getReservation(req, ctx) {
              await toDownstream.client.getStock({ sku: req.orderId }, { signal: ctx.signal });
              return {};
            },
            async listProducts(req) {
              await toDownstream.client.getStock({ sku: req.skus[0]! });
              return { products: [] };
            },
          }),
      },
      { host: "127.0.0.1", port: 0 },
    );
  }
  /** A caller of the middle hop per deadline, each over one HTTP/2 session to it. */
  const callers = new Map<number | undefined, Client<typeof InventoryService>>();
  const callerOf = (deadlineMs?: number) => {
    let caller = callers.get(deadlineMs);
    if (!caller) {
      const transport = createGrpcTransport({ baseUrl: middle.url, interceptors: deadlineMs === undefined ? [] : [withDeadlineHeader(deadlineMs)] });
      callers.set(deadlineMs, (caller = createClient(InventoryService, transport)));
    }
    return caller;
  };

  beforeAll(async () => {
    downstream = await startServer({ ...serverOptions, routes: scriptedInventory(seen) }, { host: "127.0.0.1", port: 0 });
  });
  afterEach(async () => {
    callers.clear();
    toDownstream?.close();
    await middle?.close();
  });
  afterAll(async () => {
    await downstream?.close();
  });

  it("a storm of 1 ms caller deadlines and cancellations leaves the breaker closed, and honest calls meanwhile succeed", async () => {
    await startMiddle({ breakerThreshold: 3 });
    seen.shortDeadlines = 0;
    const storm = Array.from({ length: 80 }, (_, i) => {
      const deadlineMs = 1 + (i % 5);
      switch (i % 4) {
        case 0: // the caller's deadline cuts off the attempt; the caller's signal is passed along
          return callerOf(deadlineMs).getReservation({ orderId: "slow" });
        case 1: // the same, with only the deadline propagated
          return callerOf(deadlineMs).listProducts({ skus: ["slow"] });
        case 2: // the dependency itself answers DEADLINE_EXCEEDED to the short deadline it was given
          return callerOf(deadlineMs + 4).listProducts({ skus: ["refuses-short"] });
        default: {
          // the caller cancels, once the middle hop is waiting for the dependency
          const abort = new AbortController();
          seen.onArrival.set(`slow-${i}`, () => setTimeout(() => abort.abort(), deadlineMs));
          return callerOf().getReservation({ orderId: `slow-${i}` }, { signal: abort.signal });
        }
      }
    });
    const honest = Array.from({ length: 20 }, (_, i) => sleep(i * 5).then(() => toDownstream.client.getStock({ sku: "fast" })));
    const [stormResults, honestResults] = await Promise.all([Promise.allSettled(storm), Promise.allSettled(honest)]);

    const stats = toDownstream.stats();
    expect(stats).toMatchObject({ breaker: "closed", failures: 0 });
    expect(honestResults.map((r) => r.status)).toEqual(Array(20).fill("fulfilled"));
    expect(stormResults.filter((r) => r.status === "rejected").length).toBeGreaterThan(60); // the storm did fail its callers
    expect(seen.shortDeadlines).toBeGreaterThan(10); // and reached the dependency with its short deadlines
    expect([...seen.calls.keys()].filter((sku) => sku.startsWith("slow-")).length).toBe(20); // and all its cancellations, too
    expect(stats.abandoned).toBeGreaterThan(10);
    expect(stats.retries).toBe(0); // nor did the storm spend retries
    // A breaker the storm never touched still opens on the dependency's own failures.
    for (let i = 0; i < 3; i++) expect(codeOf(await toDownstream.client.getStock({ sku: "down" }).catch((e) => e))).toBe(Code.Unavailable);
    expect(toDownstream.stats().breaker).toBe("open");
  });

  it("an attempt that hangs past the client's own per-attempt timeout still counts, under a longer caller deadline", async () => {
    await startMiddle({ attemptTimeoutMs: 100, maxAttempts: 1, breakerThreshold: 2 });
    for (const call of [() => callerOf(3_000).getReservation({ orderId: "hang" }), () => callerOf(3_000).listProducts({ skus: ["hang"] })]) {
      expect(codeOf(await call().catch((e) => e))).toBe(Code.DeadlineExceeded);
    }
    expect(toDownstream.stats()).toMatchObject({ breaker: "open", failures: 2, abandoned: 0 });
  });

  it("a dependency that hangs still opens it when every caller's deadline is shorter than the attempt timeout (a second hop)", async () => {
    // The caller's deadline ends each attempt, but only after it has waited slowAttemptMs.
    await startMiddle({ maxAttempts: 1, breakerThreshold: 2, slowAttemptMs: 200 });
    for (const call of [() => callerOf(600).getReservation({ orderId: "hang" }), () => callerOf(600).listProducts({ skus: ["hang"] })]) {
      expect(codeOf(await call().catch((e) => e))).toBe(Code.DeadlineExceeded);
    }
    expect(toDownstream.stats()).toMatchObject({ breaker: "open", failures: 2, abandoned: 0 });
  });

  it("a dependency answering UNAVAILABLE still opens it, under a caller deadline", async () => {
    await startMiddle({ maxAttempts: 1, breakerThreshold: 3 });
    for (let i = 0; i < 3; i++) expect(codeOf(await callerOf(1_000).listProducts({ skus: ["down"] }).catch((e) => e))).toBe(Code.Unavailable);
    expect(toDownstream.stats()).toMatchObject({ breaker: "open", failures: 3 });
  });

  it("nor do the storm's failures take healthy instances out of the balancer's rotation", async () => {
    const nats = await startTestNats();
    const bus = connectBus({ url: nats.url, name: "balancer-test", logger });
    const seenByOther = { calls: new Map<string, number>(), shortDeadlines: 0, onArrival: new Map<string, () => void>() };
    const other = await startServer({ ...serverOptions, routes: scriptedInventory(seenByOther) }, { host: "127.0.0.1", port: 0 });
    const instances = [downstream, other].map((server) =>
      registerInstance({ bus, services: [InventoryService.typeName], address: server.url, version: "test", health: () => "SERVING", logger }),
    );
    const directory = createServiceDirectory({ bus, logger });
    try {
      await eventually(() => expect(directory.instances(InventoryService.typeName)).toHaveLength(2), 10_000);
      await startMiddle({ breakerThreshold: 3 }, directory);
      const storm = Array.from({ length: 40 }, (_, i) => {
        if (i % 2) return callerOf(2 + (i % 4)).listProducts({ skus: ["slow"] });
        const abort = new AbortController();
        seen.onArrival.set(`slow-b${i}`, () => setTimeout(() => abort.abort(), 1));
        seenByOther.onArrival.set(`slow-b${i}`, () => setTimeout(() => abort.abort(), 1));
        return callerOf().getReservation({ orderId: `slow-b${i}` }, { signal: abort.signal });
      });
      await Promise.allSettled(storm);
      seen.calls.set("honest", 0);
      for (let i = 0; i < 10; i++) await toDownstream.client.getStock({ sku: "honest" });
      // Round robin over both instances still: neither was ejected (the fallback address is the first).
      expect([seen.calls.get("honest"), seenByOther.calls.get("honest")]).toEqual([5, 5]);
      expect(toDownstream.stats()).toMatchObject({ breaker: "closed", failures: 0 });
    } finally {
      directory.stop();
      await Promise.all(instances.map((instance) => instance.stop()));
      await bus.close();
      await other.close();
      await nats.stop();
    }
  });

  it("retries stay within the budget under a dependency failing every call: 20% of calls plus the floor", async () => {
    // A floor of 0.5 a second over 10 s: 5 retries whatever the traffic.
    await startMiddle({ maxAttempts: 3, initialBackoffMs: 1, maxBackoffMs: 2, breakerThreshold: 1_000, retryBudget: { ratio: 0.2, minPerSecond: 0.5, windowMs: 10_000 } });
    seen.calls.set("down", 0);
    for (let i = 0; i < 100; i++) expect(codeOf(await toDownstream.client.getStock({ sku: "down" }).catch((e) => e))).toBe(Code.Unavailable);
    const { retries, retriesRefused } = toDownstream.stats();
    // Unbounded, 3 attempts would make 200 retries.
    expect(retries).toBeLessThanOrEqual(0.2 * 100 + 5);
    expect(retries).toBeGreaterThanOrEqual(0.2 * 100);
    expect(retriesRefused).toBeGreaterThan(50); // most calls were refused their retry
    expect(seen.calls.get("down")).toBe(100 + retries);
  });

  it("retries every failure of a dependency that mostly succeeds", async () => {
    await startMiddle({ maxAttempts: 3, initialBackoffMs: 1, maxBackoffMs: 2, retryBudget: { ratio: 0.2, minPerSecond: 0.5, windowMs: 10_000 } });
    for (let i = 0; i < 50; i++) {
      // One call in five fails its first attempt (a fresh flaky sku) and succeeds when retried.
      const sku = i % 5 === 0 ? `flaky-${randomUUID()}` : "fast";
      expect((await toDownstream.client.getStock({ sku })).stock?.sku).toBe(sku);
    }
    expect(toDownstream.stats()).toMatchObject({ retries: 10, retriesRefused: 0, failures: 0 });
  });

  it("a dependency shedding load (RESOURCE_EXHAUSTED) is neither retried nor held against its breaker", async () => {
    // No client-side throttling here, so that every call reaches the dependency.
    await startMiddle({ maxAttempts: 3, breakerThreshold: 3, throttle: { overAccepted: Infinity, windowMs: 5_000 } });
    seen.calls.set("shed", 0);
    for (let i = 0; i < 10; i++) expect(codeOf(await toDownstream.client.getStock({ sku: "shed" }).catch((e) => e))).toBe(Code.ResourceExhausted);
    expect(toDownstream.stats()).toMatchObject({ breaker: "closed", retries: 0, retriesRefused: 0, rejected: 0 });
    expect(seen.calls.get("shed")).toBe(10);
    expect((await toDownstream.client.getStock({ sku: "fast" })).stock?.sku).toBe("fast");
  });

  it("holds back calls to a dependency that sheds them (adaptive throttling), and lets go once it accepts them again", async () => {
    await startMiddle({ breakerThreshold: 1_000 });
    seen.calls.set("shed", 0);
    const codes = [];
    for (let i = 0; i < 50; i++) codes.push(codeOf(await toDownstream.client.getStock({ sku: "shed" }).catch((e) => e)));
    expect(codes.every((code) => code === Code.ResourceExhausted)).toBe(true);
    expect(seen.calls.get("shed")).toBeLessThan(25); // held back here, never sent
    expect(toDownstream.stats().rejected).toBe(50 - seen.calls.get("shed")!);
    // It probes now and then, and the refusals age out of its 5 s window: within it, calls flow again.
    let accepted = 0;
    const started = performance.now();
    for (let i = 0; i < 400 && accepted < 10; i++) {
      if (await toDownstream.client.getStock({ sku: "fast" }).then(() => true, () => false)) accepted++;
      else await sleep(20);
    }
    expect(accepted).toBe(10);
    expect(performance.now() - started).toBeLessThan(6_000);
  });
});
