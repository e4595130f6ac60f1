import { randomUUID } from "node:crypto";
import { resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { startInProcessMesh, type InProcessMesh } from "../support/services.js";

const protoRoot = resolve(import.meta.dirname, "../../proto");

/** A client from another gRPC implementation, built from the .proto files alone. */
function grpcJsClient(service: string, file: string, address: string) {
  const definition = protoLoader.loadSync(file, { includeDirs: [protoRoot], keepCase: false, longs: String, enums: String, defaults: true });
  const loaded = grpc.loadPackageDefinition(definition);
  const Constructor = service.split(".").reduce<unknown>((node, key) => (node as Record<string, unknown>)[key], loaded) as grpc.ServiceClientConstructor;
  return new Constructor(address, grpc.credentials.createInsecure());
}

function unary<Res>(client: grpc.Client, method: string, request: object): Promise<Res> {
  return new Promise((done, fail) => {
    const fn = (client as unknown as Record<string, (req: object, options: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res: Res) => void) => void>)[method]!;
    fn.call(client, request, { deadline: Date.now() + 10_000 }, (err, res) => (err ? fail(err) : done(res)));
  });
}

describe("interoperability", () => {
  let mesh: InProcessMesh;
  const clients: grpc.Client[] = [];

  beforeAll(async () => {
    mesh = await startInProcessMesh();
  });
  afterAll(async () => {
    for (const c of clients) c.close();
    await mesh?.close();
  });

  const connectJson = (baseUrl: string, path: string, body: unknown) =>
    fetch(`${baseUrl}/${path}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });

  it("a @grpc/grpc-js client places and reads an order", async () => {
    const order = grpcJsClient("shop.order.v1.OrderService", "shop/order/v1/order_service.proto", mesh.order.url.replace("http://", ""));
    clients.push(order);
    const created = await unary<{ order: { id: string; status: string; total: { minorUnits: string } } }>(order, "createOrder", {
      customerId: "grpc-js",
      items: [{ sku: "MW-STK-003", quantity: 2 }],
      paymentToken: "tok_visa",
      requestId: randomUUID(),
    });
    expect(created.order).toMatchObject({ status: "ORDER_STATUS_PENDING", total: { minorUnits: "998" } });
    const read = await unary<{ order: { id: string } }>(order, "getOrder", { orderId: created.order.id });
    expect(read.order.id).toBe(created.order.id);
    const err = await unary(order, "createOrder", { customerId: "grpc-js", items: [], paymentToken: "tok_visa", requestId: "x" }).catch((e: grpc.ServiceError) => e);
    expect(err).toMatchObject({ code: grpc.status.INVALID_ARGUMENT, details: "items: must not be empty" });
  });

  it("a @grpc/grpc-js client checks health on every service", async () => {
    for (const server of [mesh.order, mesh.inventory, mesh.payment]) {
      const health = grpcJsClient("grpc.health.v1.Health", "grpc/health/v1/health.proto", server.url.replace("http://", ""));
      clients.push(health);
      expect(await unary(health, "check", { service: "" })).toEqual({ status: "SERVING" });
    }
  });

  it("Connect JSON over plain HTTP/1.1 reaches every service", async () => {
    const products = await connectJson(mesh.inventory.url, "shop.inventory.v1.InventoryService/ListProducts", {});
    expect(products.status).toBe(200);
    const { products: list } = (await products.json()) as { products: { sku: string; price: { minorUnits: string } }[] };
    expect(list.find((p) => p.sku === "MW-MUG-001")?.price.minorUnits).toBe("1299");

    const created = await connectJson(mesh.order.url, "shop.order.v1.OrderService/CreateOrder", {
      customerId: "curl",
      items: [{ sku: "MW-MUG-001", quantity: 1 }],
      paymentToken: "tok_visa",
      requestId: randomUUID(),
    });
    expect(created.status).toBe(200);
    const { order } = (await created.json()) as { order: { id: string } };
    const payments = await connectJson(mesh.payment.url, "shop.payment.v1.PaymentService/GetPayment", { orderId: order.id });
    expect(payments.status).toBe(200);

    const unknownField = await connectJson(mesh.order.url, "shop.order.v1.OrderService/GetOrder", { orderId: order.id, bogus: 1 });
    expect(unknownField.status).toBe(400);
    expect(await unknownField.json()).toMatchObject({ code: "invalid_argument" });
    const missing = await connectJson(mesh.order.url, "shop.order.v1.OrderService/GetOrder", { orderId: randomUUID() });
    expect(missing.status).toBe(404);
    expect(await missing.json()).toMatchObject({ code: "not_found" });
  });
});
