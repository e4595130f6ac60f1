import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { StorefrontService } from "#gen/shop/gateway/v1/storefront_service_pb.js";
import { OrderStatus } from "#gen/shop/order/v1/order_service_pb.js";
import type { RunningServer } from "#platform/rpc-server/server.js";
import { connect } from "../support/databases.js";
import { bearer, startGateway } from "../support/gateway.js";
import { startInProcessMesh, type InProcessMesh } from "../support/services.js";

describe("the gateway", () => {
  let mesh: InProcessMesh;
  let gateway: RunningServer;
  let anonymous: ReturnType<typeof createClient<typeof StorefrontService>>;
  const as = async (customerId: string) => {
    const { token } = await anonymous.issueDemoToken({ customerId });
    return createClient(StorefrontService, createGrpcTransport({ baseUrl: gateway.url, interceptors: [bearer(token)] }));
  };

  beforeAll(async () => {
    mesh = await startInProcessMesh();
    gateway = await startGateway(mesh);
    anonymous = createClient(StorefrontService, createGrpcTransport({ baseUrl: gateway.url }));
  });
  afterAll(async () => {
    await gateway?.close();
    await mesh?.close();
  });

  const post = (method: string, body: string, headers: Record<string, string> = {}) =>
    fetch(`${gateway.url}/shop.gateway.v1.StorefrontService/${method}`, { method: "POST", headers: { "content-type": "application/json", ...headers }, body });

  it("serves products to anonymous callers and nothing about orders without a token", async () => {
    expect((await anonymous.listProducts({})).products.length).toBeGreaterThan(0);
    const health = await fetch(`${gateway.url}/grpc.health.v1.Health/Check`, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" });
    expect(await health.json()).toEqual({ status: "SERVING" }); // probes need no token
    await expect(anonymous.listMyOrders({})).rejects.toMatchObject({ code: Code.Unauthenticated, rawMessage: "missing bearer token" });
    const forged = createClient(StorefrontService, createGrpcTransport({ baseUrl: gateway.url, interceptors: [bearer("e30.e30.bogus")] }));
    await expect(forged.listMyOrders({})).rejects.toMatchObject({ code: Code.Unauthenticated });
  });

  it("places an order, watches it to CONFIRMED, and hides it from other customers", async () => {
    const ada = await as("ada");
    const { order } = await ada.placeOrder({ items: [{ sku: "MW-MUG-001", quantity: 1 }], paymentToken: "tok_visa", requestId: randomUUID() });
    const seen: string[] = [];
    let last = OrderStatus.UNSPECIFIED;
    for await (const update of ada.watchOrder({ orderId: order!.id }, { timeoutMs: 15_000 })) {
      seen.push(update.eventType);
      last = update.order!.status;
    }
    expect(last).toBe(OrderStatus.CONFIRMED);
    expect(seen[0]).toBe("");
    expect(seen.length).toBeGreaterThan(1);
    expect((await ada.listMyOrders({})).orders.map((o) => o.id)).toContain(order!.id);

    const eve = await as("eve");
    await expect(eve.getOrderDetails({ orderId: order!.id })).rejects.toMatchObject({ code: Code.NotFound });
    await expect(eve.cancelOrder({ orderId: order!.id })).rejects.toMatchObject({ code: Code.NotFound });
    await expect(eve.watchOrder({ orderId: order!.id })[Symbol.asyncIterator]().next()).rejects.toMatchObject({ code: Code.NotFound });
    expect((await eve.listMyOrders({})).orders).toEqual([]);
  });

  it("ends a watch on the order as it is stored, though it applies ordering's events instead of reading again", async () => {
    const ada = await as("ada");
    for (const paymentToken of ["tok_visa", "tok_decline"]) {
      const { order } = await ada.placeOrder({ items: [{ sku: "MW-MUG-001", quantity: 1 }], paymentToken, requestId: randomUUID() });
      const updates = [];
      for await (const update of ada.watchOrder({ orderId: order!.id }, { timeoutMs: 15_000 })) updates.push(update);
      const stored = (await ada.getOrderDetails({ orderId: order!.id })).order!;
      expect(updates.at(-1)!.eventType).toMatch(/^shop\.order\.v1\.Order(Confirmed|Cancelled)$/);
      expect(updates.at(-1)!.order).toEqual(stored);
      expect(stored.status).toBe(paymentToken === "tok_visa" ? OrderStatus.CONFIRMED : OrderStatus.CANCELLED);
    }
  });

  it("keeps watching an order past the gateway's per-call deadline cap, to its end", async () => {
    // Calls capped at 1 s; the order is held pending longer by locking payment's table.
    const capped = await startGateway(mesh, { maxTimeoutMs: 1_000 });
    const sql = connect(mesh.databaseUrl);
    try {
      const { token } = await createClient(StorefrontService, createGrpcTransport({ baseUrl: capped.url })).issueDemoToken({ customerId: "patient" });
      const patient = createClient(StorefrontService, createGrpcTransport({ baseUrl: capped.url, interceptors: [bearer(token)] }));
      let release!: () => void;
      let held!: () => void;
      const holding = new Promise<void>((resolve) => (held = resolve));
      const lock = sql.begin(async (tx) => {
        await tx`lock table payment.payments in exclusive mode`;
        held();
        await new Promise<void>((resolve) => (release = resolve));
      });
      await holding;
      const { order } = await patient.placeOrder({ items: [{ sku: "MW-MUG-001", quantity: 1 }], paymentToken: "tok_visa", requestId: randomUUID() });
      setTimeout(() => release(), 2_500);
      let last = OrderStatus.UNSPECIFIED;
      for await (const update of patient.watchOrder({ orderId: order!.id }, { timeoutMs: 15_000 })) last = update.order!.status;
      await lock;
      expect(last).toBe(OrderStatus.CONFIRMED);
    } finally {
      await sql.end();
      await capped.close();
    }
  });

  it("answers a CORS preflight from an allowed origin, and refuses others", async () => {
    const preflight = (origin: string) =>
      fetch(`${gateway.url}/shop.gateway.v1.StorefrontService/PlaceOrder`, {
        method: "OPTIONS",
        headers: { origin, "access-control-request-method": "POST", "access-control-request-headers": "content-type,authorization,connect-protocol-version" },
      });
    const allowed = await preflight("http://console.example");
    expect(allowed.status).toBe(204);
    expect(allowed.headers.get("access-control-allow-origin")).toBe("http://console.example");
    expect(allowed.headers.get("access-control-allow-headers")?.toLowerCase()).toContain("authorization");
    expect(allowed.headers.get("access-control-allow-methods")).toContain("POST");
    expect((await preflight("http://evil.example")).status).toBe(403);
  });

  it("aggregates order details, reporting a part that is down instead of failing", async () => {
    const bob = await as("bob");
    const { order } = await bob.placeOrder({ items: [{ sku: "MW-STK-003", quantity: 2 }], paymentToken: "tok_visa", requestId: randomUUID() });
    for await (const update of bob.watchOrder({ orderId: order!.id }, { timeoutMs: 15_000 })) void update;
    const whole = await bob.getOrderDetails({ orderId: order!.id });
    expect(whole.payment?.status?.code).toBe("OK");
    expect(whole.payment?.payments).toHaveLength(1);
    expect(whole.reservation?.status?.code).toBe("OK");

    await mesh.payment.close();
    const partial = await bob.getOrderDetails({ orderId: order!.id });
    expect(partial.order?.id).toBe(order!.id);
    expect(partial.payment?.status?.code).toBe("UNAVAILABLE");
    expect(partial.payment?.payments).toEqual([]);
    expect(partial.reservation?.status?.code).toBe("OK");
  });

  it("rejects bad input with INVALID_ARGUMENT naming the field, and writes nothing", async () => {
    const { token } = await anonymous.issueDemoToken({ customerId: "mallory" });
    const auth = { authorization: `Bearer ${token}` };
    const cases: [string, RegExp][] = [
      [JSON.stringify({ items: [{ sku: "MW-MUG-001", quantity: "many" }], paymentToken: "tok_visa", requestId: "a" }), /quantity/],
      [JSON.stringify({ items: [{ sku: "MW-MUG-001", quantity: 1 }], paymentToken: "tok_visa", requestId: "b", isAdmin: true }), /isAdmin|is_admin/],
      [JSON.stringify({ items: [{ sku: "MW-MUG-001", quantity: -1 }], paymentToken: "tok_visa", requestId: "c" }), /^items\[0\]\.quantity: must be greater than 0$/],
      [JSON.stringify({ items: [{ sku: "x".repeat(5_000), quantity: 1 }], paymentToken: "tok_visa", requestId: "d" }), /^items\[0\]\.sku: must be at most 128 characters$/],
    ];
    for (const [body, message] of cases) {
      const response = await post("PlaceOrder", body, auth);
      expect(response.status, body.slice(0, 80)).toBe(400);
      const error = (await response.json()) as { code: string; message: string };
      expect(error.code).toBe("invalid_argument");
      expect(error.message).toMatch(message);
    }
    const invalidUtf8 = await fetch(`${gateway.url}/shop.gateway.v1.StorefrontService/PlaceOrder`, {
      method: "POST",
      headers: { "content-type": "application/json", ...auth },
      body: new Uint8Array([0x7b, 0x22, 0x72, 0x65, 0x71, 0x75, 0x65, 0x73, 0x74, 0x49, 0x64, 0x22, 0x3a, 0x22, 0xff, 0xfe, 0x22, 0x7d]),
    });
    expect(invalidUtf8.status).toBe(400);
    expect(await invalidUtf8.json()).toMatchObject({ code: "invalid_argument", message: expect.stringMatching(/utf-8/i) });
    const oversized = await post("PlaceOrder", JSON.stringify({ items: [], paymentToken: "x".repeat(100_000), requestId: "e" }), auth);
    expect(((await oversized.json()) as { code: string }).code).toBe("resource_exhausted");
    const sql = connect(mesh.databaseUrl);
    try {
      const [row] = await sql`select count(*)::int as n from orders.orders where customer_id = 'mallory'`;
      expect(row?.["n"]).toBe(0);
    } finally {
      await sql.end();
    }
  });

  it("answers UNAVAILABLE within its deadline when order is down", async () => {
    const carol = await as("carol");
    await mesh.order.close();
    const started = performance.now();
    const err = await carol.listMyOrders({}, { timeoutMs: 3_000 }).catch((e: unknown) => ConnectError.from(e));
    expect(err).toMatchObject({ code: Code.Unavailable });
    expect(performance.now() - started).toBeLessThan(3_000);
  });
});

describe("the gateway's rate limit", () => {
  let mesh: InProcessMesh;
  let gateway: RunningServer;

  beforeAll(async () => {
    mesh = await startInProcessMesh();
    gateway = await startGateway(mesh, { rateLimit: { perSecond: 1, burst: 5 } });
  });
  afterAll(async () => {
    await gateway?.close();
    await mesh?.close();
  });

  it("answers RESOURCE_EXHAUSTED past a client's burst, each client with a bucket of its own", async () => {
    const anonymous = createClient(StorefrontService, createConnectTransport({ baseUrl: gateway.url, httpVersion: "1.1" }));
    const { token } = await anonymous.issueDemoToken({ customerId: "dave" }); // 1 of this address's 5
    const results = await Promise.allSettled(Array.from({ length: 8 }, () => anonymous.listProducts({})));
    expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(4);
    for (const r of results.filter((r): r is PromiseRejectedResult => r.status === "rejected")) expect(ConnectError.from(r.reason).code).toBe(Code.ResourceExhausted);
    // An authenticated customer is limited by their own bucket, not the address's.
    const dave = createClient(StorefrontService, createConnectTransport({ baseUrl: gateway.url, httpVersion: "1.1", interceptors: [bearer(token)] }));
    expect((await dave.listMyOrders({})).orders).toEqual([]);
  });
});
