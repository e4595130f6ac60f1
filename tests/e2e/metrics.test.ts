import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { request as httpsRequest } from "node:https";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { OrderService, OrderStatus } from "#gen/shop/order/v1/order_service_pb.js";
import { expectIdentity } from "#platform/trust/mesh-tls.js";
import type { ServiceServer } from "#platform/service.js";
import { connectBus } from "#platform/messaging/connection.js";
import { connect } from "../support/databases.js";
import { eventually } from "../support/eventually.js";
import { silentLogger } from "../support/silent-logger.js";
import { startGateway } from "../support/gateway.js";
import { startInProcessMesh, type InProcessMesh } from "../support/services.js";

/** Reads one sample from Prometheus text, whatever the order of its labels: value(text, 'sagas{state="completed",service="order"}'). */
function value(text: string, series: string): number | undefined {
  const [, name, labels = ""] = /^([^{]+)(?:\{(.*)\})?$/.exec(series)!;
  const wanted = labels.split(/,(?=\w+=)/).filter(Boolean);
  const line = text.split("\n").find((l) => l.startsWith(`${name}{`) && wanted.every((pair) => l.includes(pair)) && l.slice(l.indexOf("{") + 1, l.indexOf("}")).split(/,(?=\w+=)/).length === wanted.length);
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(" ") + 1));
}

/** GET /metrics on a mesh port as the operator: the status it answers. */
function meshPortMetricsStatus(mesh: InProcessMesh, server: ServiceServer, peer: string): Promise<number> {
  const files = mesh.pki.operator;
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      `${server.url}/metrics`,
      { ca: readFileSync(files.caFile), cert: readFileSync(files.certFile), key: readFileSync(files.keyFile), checkServerIdentity: expectIdentity(peer), timeout: 5_000 },
      (res) => {
        res.resume();
        resolve(res.statusCode!);
      },
    );
    req.on("error", reject);
    req.end();
  });
}

/** Every process serves /metrics on its plaintext ops port, for the scraper; no port callers reach serves it. */
describe("Prometheus metrics on every ops port", () => {
  let mesh: InProcessMesh;
  let gateway: ServiceServer;
  const scrape = async (server: ServiceServer) => {
    const response = await fetch(`${server.ops.url}/metrics`);
    expect(response.headers.get("content-type")).toMatch(/^text\/plain/);
    return response.text();
  };

  beforeAll(async () => {
    mesh = await startInProcessMesh();
    gateway = await startGateway(mesh);
    const orders = mesh.client(OrderService, "order");
    const { order } = await orders.createOrder({ customerId: "metrics", items: [{ sku: "MW-MUG-001", quantity: 1 }], paymentToken: "tok_visa", requestId: randomUUID() });
    await eventually(async () => expect((await orders.getOrder({ orderId: order!.id })).order?.status).toBe(OrderStatus.CONFIRMED));
    await orders.getOrder({ orderId: "not-a-uuid" }).catch(() => {});
  });
  afterAll(async () => {
    await gateway?.close();
    await mesh?.close();
  });

  it("counts RPCs by method and code, and reports sagas, outbox, pool and breakers", async () => {
    const text = await scrape(mesh.order);
    expect(value(text, 'rpc_server_requests_total{method="shop.order.v1.OrderService/CreateOrder",code="OK",service="order"}')).toBe(1);
    expect(value(text, 'rpc_server_requests_total{method="shop.order.v1.OrderService/GetOrder",code="InvalidArgument",service="order"}')).toBe(1);
    expect(value(text, 'rpc_server_duration_seconds_count{method="shop.order.v1.OrderService/CreateOrder",code="OK",service="order"}')).toBe(1);
    expect(value(text, 'rpc_client_breaker_state{dependency="shop.payment.v1.PaymentService",service="order"}')).toBe(0);
    expect(value(text, 'rpc_client_calls{dependency="shop.payment.v1.PaymentService",service="order"}')).toBe(1);
    expect(text).toMatch(/^db_pool_connections\{state="idle",service="order"\} \d+$/m);
    await eventually(async () => {
      const later = await scrape(mesh.order); // the saga's last step lands just after CONFIRMED
      expect(value(later, 'sagas{state="completed",service="order"}')).toBe(1);
      expect(value(later, 'outbox_pending_events{service="order"}')).toBe(0);
      expect(value(later, 'outbox_oldest_pending_seconds{service="order"}')).toBe(0);
    });
  });

  it("reports the notification consumer's lag and the gateway's breakers", async () => {
    await eventually(async () => expect(value(await scrape(mesh.notification), 'event_consumer_lag{consumer="notification",service="notification"}')).toBe(0));
    const text = await scrape(gateway);
    expect(value(text, 'rpc_client_breaker_state{dependency="order",service="gateway"}')).toBe(0);
    expect(text).toContain("process_resident_memory_bytes");
  });

  it("names the order service as the manifest does, not after its schema (orders): in Postgres and in its events' ce-source", async () => {
    const admin = connect(mesh.databaseUrl);
    const bus = connectBus({ url: mesh.nats.url, name: "metrics-test", logger: silentLogger });
    try {
      // Eventually: the migration's own session (order-migrate) has ended, but its backend may take a moment to leave pg_stat_activity on a loaded host.
      await eventually(async () => {
        const pool = await admin`select distinct application_name from pg_stat_activity where usename = 'order' and pid <> pg_backend_pid()`;
        expect(pool.map((row) => row["application_name"])).toEqual(["order"]);
      });
      const { jsm } = await bus.ready;
      const first = await jsm.streams.getMessage("SHOP_ORDER", { seq: 1 });
      expect(first?.header.get("ce-source")).toBe("order");
    } finally {
      await bus.close();
      await admin.end();
    }
  });

  it("answers 404 for /metrics on the mesh ports, even to an operator, and on the gateway's public port", async () => {
    const meshPorts = { order: mesh.order, inventory: mesh.inventory, payment: mesh.payment, notification: mesh.notification };
    const statuses = await Promise.all(Object.entries(meshPorts).map(async ([name, server]) => [name, await meshPortMetricsStatus(mesh, server, name)] as const));
    expect(Object.fromEntries(statuses)).toEqual({ order: 404, inventory: 404, payment: 404, notification: 404 });
    const publicPort = await fetch(`${gateway.url}/metrics`);
    expect(publicPort.status).toBe(404);
    expect(await publicPort.text()).not.toContain("rpc_server_requests_total");
  });
});
