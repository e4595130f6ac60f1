import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { StorefrontService } from "#gen/shop/gateway/v1/storefront_service_pb.js";
import { OrderService, OrderStatus } from "#gen/shop/order/v1/order_service_pb.js";
import { CUSTOMER_HEADER } from "#platform/trust/mesh-identity.js";
import type { ServiceServer } from "#platform/service.js";
import { eventually } from "../support/eventually.js";
import { bearer, startGateway } from "../support/gateway.js";
import { meshTransport } from "../support/mesh-clients.js";
import { startInProcessMesh, type InProcessMesh } from "../support/services.js";
import { fromAddress } from "./from-address.js";

/**
 * A caller can waste its own time, never everyone else's: a storm of calls whose deadline is
 * already gone, or that are cancelled on the way, must not open the breakers that honest
 * callers rely on, neither the gateway's nor the ones order's saga uses.
 */

/** The address attacks come from; honest calls come from 127.0.0.1, as the suite's always do. */
const ATTACKER = "127.0.0.2";

/** An HTTP/2 session from the attacker's address. */
const attackerSession = (baseUrl: string) => new Http2SessionManager(baseUrl, undefined, fromAddress(ATTACKER));

/** Sends a deadline header and keeps no timer of its own, as curl or a hostile client does. */
const deadlineHeader =
  (name: "connect-timeout-ms" | "grpc-timeout", value: () => string): Interceptor =>
  (next) =>
  (req) => {
    req.header.set(name, value());
    return next(req);
  };


/** A service's client gauge for one dependency, from its Prometheus metrics on its ops port. */
async function clientGauge(server: ServiceServer, gauge: "rpc_client_breaker_state" | "rpc_client_failures", dependency: string): Promise<number> {
  const text = await (await fetch(`${server.ops.url}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${gauge}{`) && l.includes(`dependency="${dependency}"`));
  if (!line) throw new Error(`no ${gauge} for ${dependency}`);
  return Number(line.split(" ").at(-1));
}

describe("breaker abuse", () => {
  let mesh: InProcessMesh;
  let gateway: ServiceServer;
  const sessions: Http2SessionManager[] = [];

  beforeAll(async () => {
    mesh = await startInProcessMesh();
    gateway = await startGateway(mesh);
  });
  afterAll(async () => {
    for (const session of sessions) session.abort();
    await gateway?.close();
    await mesh?.close();
  });

  it("1 ms deadlines and cancellations from one address leave every breaker closed, and honest callers are served meanwhile", async () => {
    const anonymous = createClient(StorefrontService, createConnectTransport({ baseUrl: gateway.url, httpVersion: "1.1" }));
    const { token } = await anonymous.issueDemoToken({ customerId: "honest" });
    const honest = createClient(StorefrontService, createGrpcTransport({ baseUrl: gateway.url, interceptors: [bearer(token)] }));

    const attack = (baseUrl: string, interceptors: Interceptor[], protocol: "connect" | "grpc") => {
      const sessionManager = attackerSession(baseUrl);
      sessions.push(sessionManager);
      const options = { baseUrl, httpVersion: "2" as const, sessionManager, interceptors };
      return protocol === "grpc" ? createGrpcTransport(options) : createConnectTransport(options);
    };
    const viaGatewayConnect = createClient(StorefrontService, attack(gateway.url, [deadlineHeader("connect-timeout-ms", () => "1")], "connect"));
    const viaGatewayGrpc = createClient(StorefrontService, attack(gateway.url, [deadlineHeader("grpc-timeout", () => "1m")], "grpc"));
    const viaGatewayCancelling = createClient(StorefrontService, attack(gateway.url, [], "connect"));
    // 2 to 10 ms: enough for order to start CreateOrder, too little for its call to inventory.
    // Only the gateway may call CreateOrder, so this is a gateway's certificate (a gateway
    // relaying hostile deadlines), calling order's mesh port from the attacker's address.
    let orderCalls = 0;
    const toOrder = createClient(
      OrderService,
      meshTransport(mesh.order.url, mesh.pki, {
        as: "gateway",
        peer: "order",
        interceptors: [deadlineHeader("grpc-timeout", () => `${2 + (orderCalls++ % 9)}m`)],
        nodeOptions: { localAddress: ATTACKER },
      }),
    );
    const createOrder = (i: number) =>
      toOrder.createOrder(
        { customerId: `attacker-${i}`, items: [{ sku: "MW-MUG-001", quantity: 1 }], paymentToken: "tok_visa", requestId: randomUUID() },
        { headers: { [CUSTOMER_HEADER]: `attacker-${i}` } },
      );

    /** One call of each kind of abuse; the storm sends them in waves, as a script in a loop would. */
    const wave = (i: number) => [
      viaGatewayConnect.listProducts({}),
      viaGatewayGrpc.listProducts({}),
      (() => {
        const abort = new AbortController();
        setTimeout(() => abort.abort(), 1 + (i % 7));
        return viaGatewayCancelling.listProducts({}, { signal: abort.signal });
      })(),
      createOrder(i),
      createOrder(i),
    ];
    const storm = (async () => {
      const results: PromiseSettledResult<unknown>[] = [];
      for (let i = 0; i < 30; i++) results.push(...(await Promise.allSettled(wave(i))));
      return results;
    })();
    // Honest callers, while the storm is on.
    const honestCalls = Array.from({ length: 10 }, async (_, i) => {
      await new Promise((resolve) => setTimeout(resolve, i * 20));
      const { products } = await honest.listProducts({});
      const { order } = await honest.placeOrder({ items: [{ sku: "MW-STK-003", quantity: 1 }], paymentToken: "tok_visa", requestId: randomUUID() });
      return { products: products.length, orderId: order!.id };
    });
    const [stormResults, honestResults] = await Promise.all([storm, Promise.allSettled(honestCalls)]);

    // No breaker opened, nor counted a single failure: the gateway's, and order's towards
    // inventory and payment, which its sagas use.
    const status = await anonymous.getMeshStatus({});
    expect(status.breakers.map((b) => [b.dependency, b.state, b.failures])).toEqual([
      ["order", "closed", 0n],
      ["inventory", "closed", 0n],
      ["payment", "closed", 0n],
      ["oldshop", "closed", 0n],
      ["catalog", "closed", 0n],
    ]);
    expect(status.breakers.find((b) => b.dependency === "inventory")!.calls).toBeGreaterThan(10n); // the storm did reach the client
    for (const dependency of ["shop.inventory.v1.InventoryService", "shop.payment.v1.PaymentService"]) {
      expect([dependency, await clientGauge(mesh.order, "rpc_client_breaker_state", dependency), await clientGauge(mesh.order, "rpc_client_failures", dependency)]).toEqual([dependency, 0, 0]);
    }

    // The storm failed its own callers, with their own deadline or cancellation, and never
    // with UNAVAILABLE from a breaker it opened.
    const stormCodes = stormResults.map((r) => (r.status === "fulfilled" ? "ok" : ConnectError.from(r.reason).code));
    expect(stormCodes.filter((code) => code === Code.DeadlineExceeded || code === Code.Canceled).length).toBeGreaterThan(100);
    expect(stormCodes.filter((code) => code === Code.Unavailable)).toEqual([]);

    // Every honest call was served, and every honest order went through its saga.
    expect(honestResults.map((r) => (r.status === "fulfilled" ? "ok" : String(r.reason)))).toEqual(Array(10).fill("ok"));
    const orderIds = honestResults.map((r) => (r.status === "fulfilled" ? r.value.orderId : ""));
    await eventually(async () => {
      const statuses = await Promise.all(orderIds.map(async (orderId) => (await honest.getOrderDetails({ orderId })).order!.status));
      expect(statuses).toEqual(Array(10).fill(OrderStatus.CONFIRMED));
    }, 20_000);
  });
});
