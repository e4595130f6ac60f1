import { execFile, execFileSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative, resolve } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { StorefrontService } from "#gen/shop/gateway/v1/storefront_service_pb.js";
import { OrderService } from "#gen/shop/order/v1/order_service_pb.js";
import type { RunningServer } from "#platform/rpc-server/server.js";
import { startGateway } from "../support/gateway.js";
import { startInProcessMesh, type InProcessMesh } from "../support/services.js";

const python = "/usr/bin/python3"; // Debian's, where python3-grpcio and python3-grpc-tools live
const protoRoot = resolve(import.meta.dirname, "../../proto");
const run = promisify(execFile);

function protoFiles(root: string, dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory() ? protoFiles(root, join(dir, entry.name)) : entry.name.endsWith(".proto") ? [relative(root, join(dir, entry.name))] : [],
  );
}

/** host:port of a server, as grpcio takes its target. */
const address = (server: RunningServer) => new URL(server.url).host;

/** Another language entirely: Python stubs generated from proto/ by grpc_tools.protoc. */
describe("a Python gRPC client", () => {
  let mesh: InProcessMesh;
  let gateway: RunningServer;
  const stubs = mkdtempSync(join(tmpdir(), "meshwork-py-"));

  /** Runs client.py on `config`, asynchronously: the servers answering it live in this very process. */
  async function client(config: Record<string, unknown>) {
    const { stdout } = await run(python, [resolve(import.meta.dirname, "python/client.py"), JSON.stringify({ stubs, ...config })], { timeout: 45_000 });
    return JSON.parse(stdout) as Record<string, unknown>;
  }

  beforeAll(async () => {
    const protoc = (root: string, files: string[]) => {
      const wellKnown = execFileSync(python, ["-c", "import grpc_tools, os; print(os.path.join(os.path.dirname(grpc_tools.__file__), '_proto'))"], { encoding: "utf8", timeout: 10_000 }).trim();
      execFileSync(python, ["-m", "grpc_tools.protoc", `-I${root}`, `-I${wellKnown}`, `--python_out=${stubs}`, `--grpc_python_out=${stubs}`, ...files], { timeout: 30_000 });
    };
    protoc(protoRoot, [...protoFiles(protoRoot, join(protoRoot, "shop")), ...protoFiles(protoRoot, join(protoRoot, "meshwork"))]);
    // Rooted at proto/grpc, so the modules are health.v1 and reflection.v1, not shadowed by the grpc package.
    const grpcRoot = join(protoRoot, "grpc");
    protoc(grpcRoot, ["health/v1/health.proto", "reflection/v1/reflection.proto"]);
    mesh = await startInProcessMesh();
    gateway = await startGateway(mesh);
  });
  afterAll(async () => {
    await gateway?.close();
    await mesh?.close();
    rmSync(stubs, { recursive: true, force: true });
  });

  it("places and reads an order through the gateway with a bearer token, and gets typed errors", async () => {
    const { token } = await createClient(StorefrontService, createGrpcTransport({ baseUrl: gateway.url })).issueDemoToken({ customerId: "py-gateway" });
    const seen = await client({ check: "gateway", gateway: address(gateway), token });
    expect(seen).toEqual({
      order: { id_matches: true, customer: "py-gateway", total: 2598 },
      bad_input: { code: "INVALID_ARGUMENT", details: "items[0].quantity: must be greater than 0" },
      no_token: { code: "UNAUTHENTICATED", details: "missing bearer token" },
    });
  });

  it("calls the services directly with the operator certificate: reads, health, reflection; and is refused what the contract does not admit", async () => {
    const customerId = "py-operator";
    const { order } = await mesh.client(OrderService, "order").createOrder({ customerId, items: [{ sku: "MW-STK-003", quantity: 1 }], paymentToken: "tok_visa", requestId: randomUUID() });
    const services = Object.fromEntries(
      (["order", "inventory", "payment", "notification"] as const).map((name) => [name, { mesh: address(mesh[name]), ops: address(mesh[name].ops) }]),
    );
    const { caFile, certFile, keyFile } = mesh.pki.operator;
    const seen = await client({ check: "operator", pki: { ca: caFile, cert: certFile, key: keyFile }, order_id: order!.id, customer_id: customerId, services });

    expect(seen["skus"]).toContain("MW-MUG-001");
    expect(seen["stock"]).toEqual({ sku: "MW-MUG-001", available_is_positive: true });
    expect(seen["order"]).toEqual({ id_matches: true, customer: customerId, listed: [true] });
    expect(seen["order_missing"]).toMatchObject({ code: "NOT_FOUND" });
    const serving = ["SERVING", "SERVING"];
    expect(seen["health"]).toEqual({ order: serving, inventory: serving, payment: serving, notification: serving });
    expect(seen["services_by_reflection"]).toEqual(["grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection", "shop.inventory.v1.InventoryService"]);
    expect(seen["inventory_files"]).toContain("shop/inventory/v1/inventory_service.proto");

    // The operator reads and administers; placing orders and charging are others' to do.
    expect(seen["create_order"]).toEqual({ code: "PERMISSION_DENIED", details: "operator may not call shop.order.v1.OrderService/CreateOrder" });
    expect(seen["charge"]).toEqual({ code: "PERMISSION_DENIED", details: "operator may not call shop.payment.v1.PaymentService/Charge" });
    // Without a client certificate the handshake completes (the server asks for one, and refuses per call, naming why).
    const noCertificate = { code: "UNAUTHENTICATED", details: "this port requires a client certificate from the mesh CA (spiffe://meshwork/<name>)" };
    expect(seen["no_cert"]).toEqual(noCertificate);
    expect(seen["no_cert_reflection"]).toEqual(noCertificate);
    expect(seen["ip_target"]).toBe("OK");
  });
});
