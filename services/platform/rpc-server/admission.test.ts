import { afterEach, describe, expect, it } from "vitest";
import { Code, ConnectError, createClient, createContextValues, type UnaryRequest } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { pino } from "pino";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "#gen/grpc/health/v1/health_pb.js";
import { InventoryService } from "#gen/shop/inventory/v1/inventory_service_pb.js";
import { createAdmission } from "./admission.js";
import { CONSOLE, OPERATOR } from "../trust/mesh-identity.js";
import { callerIdentityKey } from "../trust/mesh-identity.js";
import { createMetrics } from "../process/metrics.js";
import { startServer, type RunningServer } from "./server.js";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const codeOf = (err: unknown) => ConnectError.from(err).code;

/** A real inventory stand-in whose GetStock takes `delayMs()`, with its admission limits read from its own /metrics. */
async function startSlowServer(delayMs: () => number, admission: Parameters<typeof startServer>[0]["admission"]) {
  const metrics = createMetrics("admission-test");
  const server = await startServer(
    {
      logger: pino({ level: "silent" }),
      services: [InventoryService],
      maxRequestBytes: 1024,
      shutdownGraceMs: 500,
      metrics,
      ...(admission === undefined ? {} : { admission }),
      routes: (router) =>
        router.service(InventoryService, {
          async getStock(req) {
            await sleep(delayMs());
            return { stock: { sku: req.sku, available: 1 } };
          },
        }),
    },
    { host: "127.0.0.1", port: 0 },
  );
  const transport = createGrpcTransport({ baseUrl: server.url });
  const limit = async () => {
    const text = await metrics.registry.metrics();
    return Number(/^admission_limit\{[^}]*kind="concurrency"[^}]*\} (\d+)/m.exec(text)?.[1]);
  };
  return { server, inventory: createClient(InventoryService, transport), health: createClient(Health, transport), limit };
}

/** `workers` callers in a closed loop for `ms`; a refused one pauses briefly, as a polite client would. */
async function closedLoop(call: () => Promise<unknown>, workers: number, ms: number) {
  const until = performance.now() + ms;
  const tally = { ok: 0, shed: 0 };
  await Promise.all(
    Array.from({ length: workers }, async () => {
      while (performance.now() < until) {
        const outcome = await call().then(
          () => "ok" as const,
          (err: unknown) => (codeOf(err) === Code.ResourceExhausted ? ("shed" as const) : Promise.reject(err)),
        );
        tally[outcome]++;
        if (outcome === "shed") await sleep(10);
      }
    }),
  );
  return tally;
}

describe("adaptive admission control on a real server", () => {
  let running: RunningServer | undefined;
  afterEach(async () => {
    await running?.close();
    running = undefined;
  });

  it("refuses calls past the limit at once with RESOURCE_EXHAUSTED naming it, and health all the while", async () => {
    const { server, inventory, health } = await startSlowServer(() => 300, { concurrency: { initial: 4, min: 4 } });
    running = server;
    await health.check({ service: "" }); // the connection is up before the clock starts
    const started = performance.now();
    const calls = Array.from({ length: 10 }, () =>
      inventory.getStock({ sku: "a" }).then(
        () => ({ code: "ok" as const, ms: performance.now() - started }),
        (err: unknown) => ({ code: codeOf(err), ms: performance.now() - started, message: ConnectError.from(err).rawMessage }),
      ),
    );
    await sleep(50);
    expect((await health.check({ service: "" })).status).toBe(ServingStatus.SERVING);
    const results = await Promise.all(calls);
    expect(results.filter((r) => r.code === "ok")).toHaveLength(4);
    const shed = results.filter((r) => r.code === Code.ResourceExhausted);
    expect(shed).toHaveLength(6);
    // Refused before any work: each answered before the first served call (300 ms of work) did.
    const firstServed = Math.min(...results.filter((r) => r.code === "ok").map((r) => r.ms));
    for (const r of shed) expect(r.ms).toBeLessThan(firstServed);
    expect(shed[0]).toMatchObject({ message: "shop.inventory.v1.InventoryService is overloaded: 4 calls in flight (limit 4); retry later" });
  });

  it("refuses nothing below the limit", async () => {
    const { server, inventory } = await startSlowServer(() => 20, { concurrency: { initial: 16, min: 16 } });
    running = server;
    const tally = await closedLoop(() => inventory.getStock({ sku: "a" }), 8, 1_000);
    expect(tally.shed).toBe(0);
    expect(tally.ok).toBeGreaterThan(20);
  });

  it("is on by default, and can be turned off", async () => {
    const on = await startSlowServer(() => 0, undefined);
    const off = await startSlowServer(() => 0, false);
    try {
      expect(await on.limit()).toBe(100);
      expect(await off.limit()).toBeNaN();
    } finally {
      await on.server.close();
      await off.server.close();
    }
  });

  it("grows the limit while latency stays flat, and shrinks it once latency rises", async () => {
    let delay = 20; // long enough that a busy machine's scheduling noise does not look like queueing
    // At most 20, so that 12 callers always use more than half of it: a limit mostly unused learns nothing.
    const { server, inventory, limit } = await startSlowServer(() => delay, { concurrency: { initial: 16, min: 4, max: 20 } });
    running = server;
    // 12 in flight keeps more than half of the limit in use, so every window counts.
    await closedLoop(() => inventory.getStock({ sku: "a" }), 12, 2_500);
    const grown = await limit();
    expect(grown).toBeGreaterThan(16);
    delay = 240; // twelve times slower: queueing, as far as the limit can tell
    // In rounds of a second, at most eight: a loaded host's slower windows may take longer than 4 s to halve it.
    let shrunk = grown;
    let shed = 0;
    for (let round = 0; round < 8 && shrunk >= grown / 2; round++) {
      shed += (await closedLoop(() => inventory.getStock({ sku: "a" }), 12, 1_000)).shed;
      shrunk = await limit();
    }
    expect(shrunk).toBeLessThan(grown / 2);
    expect(shed).toBeGreaterThan(0);
  });
});

/** A unary request as the interceptor sees it, for driving it without a server. */
function requestFor(method: "getStock" | "reserveStock", caller?: string): UnaryRequest {
  const contextValues = createContextValues();
  if (caller) contextValues.set(callerIdentityKey, caller);
  return { stream: false, service: InventoryService, method: InventoryService.method[method], contextValues, header: new Headers(), signal: new AbortController().signal, message: {} } as unknown as UnaryRequest;
}

describe("admission control's backlog limit", () => {
  const respond = () => Promise.resolve({ stream: false, message: {} } as never);

  it("refuses calls that leave work behind while the backlog is past its limit, and never the reads nor the operator, in person or through the console", async () => {
    let backlog = 0;
    const admission = createAdmission({ name: "order", backlog: () => backlog, backlogLimit: { initial: 4, min: 4 } });
    const call = admission.interceptor(respond);
    await call(requestFor("reserveStock"));
    backlog = 4;
    const refused = await call(requestFor("reserveStock")).catch((err: unknown) => ConnectError.from(err));
    expect(refused).toMatchObject({ code: Code.ResourceExhausted, rawMessage: "order is overloaded: 4 requests are still being processed (limit 4); retry later" });
    await expect(call(requestFor("getStock"))).resolves.toBeDefined();
    await expect(call(requestFor("reserveStock", OPERATOR))).resolves.toBeDefined();
    await expect(call(requestFor("reserveStock", CONSOLE))).resolves.toBeDefined();
    await expect(call(requestFor("reserveStock", "payment"))).rejects.toMatchObject({ code: Code.ResourceExhausted });
    expect(admission.stats().shed).toEqual({ concurrency: 0, backlog: 2 });
  });

  it("adapts to how long the backlog's work waits: grows while it drains steadily, shrinks once it stalls", async () => {
    let clock = 0;
    const inBacklog: number[] = []; // when each admitted piece of work will be done
    const admission = createAdmission({ name: "order", backlog: () => inBacklog.filter((doneAt) => doneAt > clock).length, backlogLimit: { initial: 8, min: 4 }, now: () => clock });
    const call = admission.interceptor(respond);
    /** One admission every 10 ms for `ms`, each piece of work done `workMs` later. */
    async function offer(ms: number, workMs: number) {
      const tally = { admitted: 0, shed: 0 };
      for (const end = clock + ms; clock < end; clock += 10) {
        const admitted = await call(requestFor("reserveStock")).then(
          () => true,
          () => false,
        );
        if (admitted) inBacklog.push(clock + workMs);
        tally[admitted ? "admitted" : "shed"]++;
      }
      return tally;
    }
    // 80 ms of work at 100 a second keeps about 8 in the backlog: the limit's whole width in use, at a steady age.
    const steady = await offer(20_000, 80);
    const grown = admission.stats().backlogLimit!;
    expect(grown).toBeGreaterThan(8);
    expect(steady.admitted).toBeGreaterThan(0.9 * (steady.admitted + steady.shed));
    // The work now takes ten times as long (a dependency slows down): the backlog ages, and the limit falls.
    const stalled = await offer(10_000, 800);
    expect(admission.stats().backlogLimit!).toBeLessThan(grown / 2);
    expect(stalled.shed).toBeGreaterThan(stalled.admitted);
  });
});
