import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { request as httpsRequest } from "node:https";
import { resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { CUSTOMER_HEADER } from "#platform/trust/mesh-identity.js";
import { expectIdentity } from "#platform/trust/mesh-tls.js";
import { OPERATOR } from "#platform/trust/mesh-identity.js";
import type { ServiceServer } from "#platform/service.js";
import { startInProcessMesh, type InProcessMesh } from "../support/services.js";

const protoRoot = resolve(import.meta.dirname, "../../proto");

/** host:port of a server's URL, as grpc-js takes its target. */
const target = (url: string) => new URL(url).host;

/**
 * A client from another gRPC implementation, built from the .proto files alone. `tls`: the
 * mesh identity it presents and the one the server must be, as grpcurl or grpcio would be
 * set up with `npm start`'s PEM files; without it, plaintext (the ops port).
 */
function grpcJsClient(mesh: InProcessMesh, service: string, file: string, url: string, tls?: { as: string; peer: string }) {
  const definition = protoLoader.loadSync(file, { includeDirs: [protoRoot], keepCase: false, longs: String, enums: String, defaults: true });
  const loaded = grpc.loadPackageDefinition(definition);
  const Constructor = service.split(".").reduce<unknown>((node, key) => (node as Record<string, unknown>)[key], loaded) as grpc.ServiceClientConstructor;
  if (!tls) return new Constructor(target(url), grpc.credentials.createInsecure());
  const files = mesh.pki.files(tls.as);
  // The server's certificate must name the workload meant, spiffe://meshwork/<peer>, whatever its DNS names.
  const credentials = grpc.credentials.createSsl(readFileSync(files.caFile), readFileSync(files.keyFile), readFileSync(files.certFile), {
    checkServerIdentity: expectIdentity(tls.peer),
  });
  // TLS names no IP address in SNI (RFC 6066), and the certificates also name localhost.
  return new Constructor(target(url), credentials, { "grpc.ssl_target_name_override": "localhost" });
}

function unary<Res>(client: grpc.Client, method: string, request: object, metadata = new grpc.Metadata()): Promise<Res> {
  return new Promise((done, fail) => {
    const fn = (client as unknown as Record<string, (req: object, metadata: grpc.Metadata, options: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res: Res) => void) => void>)[method]!;
    fn.call(client, request, metadata, { deadline: Date.now() + 10_000 }, (err, res) => (err ? fail(err) : done(res)));
  });
}

/** What the gateway sends when it acts for a customer. */
function actingFor(customerId: string) {
  const metadata = new grpc.Metadata();
  metadata.set(CUSTOMER_HEADER, customerId);
  return metadata;
}

describe("interoperability", () => {
  let mesh: InProcessMesh;
  const clients: grpc.Client[] = [];
  const servers = () => ({ order: mesh.order, inventory: mesh.inventory, payment: mesh.payment, notification: mesh.notification });

  beforeAll(async () => {
    mesh = await startInProcessMesh();
  });
  afterAll(async () => {
    for (const c of clients) c.close();
    await mesh?.close();
  });

  /**
   * Connect JSON over HTTP/1.1 to a mesh port, as `curl --cacert ca.crt --cert operator.crt
   * --key operator.key` does, presenting `as`'s certificate.
   */
  const connectJson = (server: ServiceServer, peer: string, path: string, body: unknown, options: { as?: string; headers?: Record<string, string> } = {}) => {
    const files = mesh.pki.files(options.as ?? OPERATOR);
    return new Promise<{ status: number; json: unknown }>((done, fail) => {
      const req = httpsRequest(
        `${server.url}/${path}`,
        {
          method: "POST",
          headers: { "content-type": "application/json", ...options.headers },
          ca: readFileSync(files.caFile),
          cert: readFileSync(files.certFile),
          key: readFileSync(files.keyFile),
          checkServerIdentity: expectIdentity(peer),
          timeout: 10_000,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (chunk: Buffer) => chunks.push(chunk));
          res.on("error", fail);
          res.on("end", () => done({ status: res.statusCode!, json: JSON.parse(Buffer.concat(chunks).toString()) as unknown }));
        },
      );
      req.on("error", fail);
      req.end(JSON.stringify(body));
    });
  };

  it("a @grpc/grpc-js client with the gateway's certificate places an order for a customer, and one with the operator's reads it", async () => {
    const asGateway = grpcJsClient(mesh, "shop.order.v1.OrderService", "shop/order/v1/order_service.proto", mesh.order.url, { as: "gateway", peer: "order" });
    const asOperator = grpcJsClient(mesh, "shop.order.v1.OrderService", "shop/order/v1/order_service.proto", mesh.order.url, { as: OPERATOR, peer: "order" });
    clients.push(asGateway, asOperator);
    const created = await unary<{ order: { id: string; customerId: string; status: string; total: { minorUnits: string } } }>(
      asGateway,
      "createOrder",
      { customerId: "grpc-js", items: [{ sku: "MW-STK-003", quantity: 2 }], paymentToken: "tok_visa", requestId: randomUUID() },
      actingFor("grpc-js"),
    );
    expect(created.order).toMatchObject({ customerId: "grpc-js", status: "ORDER_STATUS_PENDING", total: { minorUnits: "998" } });
    const read = await unary<{ order: { id: string } }>(asOperator, "getOrder", { orderId: created.order.id });
    expect(read.order.id).toBe(created.order.id);
    const err = await unary(asGateway, "createOrder", { customerId: "grpc-js", items: [], paymentToken: "tok_visa", requestId: "x" }, actingFor("grpc-js")).catch((e: grpc.ServiceError) => e);
    expect(err).toMatchObject({ code: grpc.status.INVALID_ARGUMENT, details: "items: must not be empty" });
  });

  it("a @grpc/grpc-js client checks health on every service: with the operator's certificate on the mesh port, in plaintext on the ops port", async () => {
    const seen: Record<string, unknown[]> = {};
    for (const [name, server] of Object.entries(servers())) {
      const onMeshPort = grpcJsClient(mesh, "grpc.health.v1.Health", "grpc/health/v1/health.proto", server.url, { as: OPERATOR, peer: name });
      const onOpsPort = grpcJsClient(mesh, "grpc.health.v1.Health", "grpc/health/v1/health.proto", server.ops.url);
      clients.push(onMeshPort, onOpsPort);
      seen[name] = [await unary(onMeshPort, "check", { service: "" }), await unary(onOpsPort, "check", { service: "" })];
    }
    const serving = [{ status: "SERVING" }, { status: "SERVING" }];
    expect(seen).toEqual({ order: serving, inventory: serving, payment: serving, notification: serving });
  });

  it("Connect JSON over HTTP/1.1 reaches every service with the operator's certificate, as curl would", async () => {
    const products = await connectJson(mesh.inventory, "inventory", "shop.inventory.v1.InventoryService/ListProducts", {});
    expect(products.status).toBe(200);
    const { products: list } = products.json as { products: { sku: string; price: { minorUnits: string } }[] };
    expect(list.find((p) => p.sku === "MW-MUG-001")?.price.minorUnits).toBe("1299");

    // Placing an order is the gateway's, acting for a customer; the operator only reads.
    const created = await connectJson(
      mesh.order,
      "order",
      "shop.order.v1.OrderService/CreateOrder",
      { customerId: "curl", items: [{ sku: "MW-MUG-001", quantity: 1 }], paymentToken: "tok_visa", requestId: randomUUID() },
      { as: "gateway", headers: { [CUSTOMER_HEADER]: "curl" } },
    );
    expect(created.status).toBe(200);
    const { order } = created.json as { order: { id: string } };
    const payments = await connectJson(mesh.payment, "payment", "shop.payment.v1.PaymentService/GetPayment", { orderId: order.id });
    expect(payments.status).toBe(200);
    const notifications = await connectJson(mesh.notification, "notification", "shop.notification.v1.NotificationService/ListNotifications", { customerId: "curl" });
    expect(notifications.status).toBe(200);

    const unknownField = await connectJson(mesh.order, "order", "shop.order.v1.OrderService/GetOrder", { orderId: order.id, bogus: 1 });
    expect(unknownField.status).toBe(400);
    expect(unknownField.json).toMatchObject({ code: "invalid_argument" });
    const missing = await connectJson(mesh.order, "order", "shop.order.v1.OrderService/GetOrder", { orderId: randomUUID() });
    expect(missing.status).toBe(404);
    expect(missing.json).toMatchObject({ code: "not_found" });
  });
});
