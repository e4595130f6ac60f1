import { execFile } from "node:child_process";
import { randomUUID } from "node:crypto";
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { OrderService } from "#gen/shop/order/v1/order_service_pb.js";
import { startInProcessMesh, type InProcessMesh } from "../support/services.js";

const repo = resolve(import.meta.dirname, "../..");
const buf = resolve(repo, "node_modules/.bin/buf");
const curl = "/usr/bin/curl";
const run = promisify(execFile);

interface Outcome {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/** Runs a tool to its end, within a time limit; a non-zero exit is an outcome, not an error. */
async function tool(file: string, args: string[]): Promise<Outcome> {
  try {
    const { stdout, stderr } = await run(file, args, { cwd: repo, timeout: 30_000 });
    return { exitCode: 0, stdout, stderr };
  } catch (err) {
    const failed = err as { code?: unknown; stdout?: string; stderr?: string };
    if (typeof failed.code !== "number") throw err; // not started, or killed at the time limit
    return { exitCode: failed.code, stdout: failed.stdout ?? "", stderr: failed.stderr ?? "" };
  }
}

/** buf curl's exit code for an RPC that failed with a gRPC status: the code shifted three bits left. */
const exitFor = (grpcCode: number) => grpcCode << 3;

/**
 * The tools an operator points at `npm start`'s mesh with .data/pki's files: buf curl (as
 * grpcurl would be used) and curl, each presenting the operator certificate to a service's
 * mesh port, and curl scraping the plaintext ops port.
 */
describe("operator tools against the mesh ports", () => {
  let mesh: InProcessMesh;
  let orderId: string;

  beforeAll(async () => {
    mesh = await startInProcessMesh();
    // A saga for ListSagas to show.
    const { order } = await mesh.client(OrderService, "order").createOrder({ customerId: "tools", items: [{ sku: "MW-MUG-001", quantity: 1 }], paymentToken: "tok_visa", requestId: randomUUID() });
    orderId = order!.id;
  });
  afterAll(async () => {
    await mesh?.close();
  });

  const operatorTls = () => ["--cacert", mesh.pki.operator.caFile, "--cert", mesh.pki.operator.certFile, "--key", mesh.pki.operator.keyFile];

  describe.each(["grpc", "connect"])("buf curl --protocol %s", (protocol) => {
    /** `schema`: the contract from proto/ (buf builds it), else from the server's reflection. */
    const bufCurl = (url: string, options: { tls: string[]; schema: boolean }) =>
      tool(buf, ["curl", "--protocol", protocol, ...options.tls, ...(options.schema ? ["--schema", "proto"] : ["--reflect"]), "--connect-timeout", "5", "--timeout", "20s", "-d", "{}", url]);

    it.each([
      { source: "server reflection", schema: false },
      { source: "--schema proto", schema: true },
    ])("calls ListProducts and ListSagas as the operator, the schema from $source", async ({ schema }) => {
      const products = await bufCurl(`${mesh.inventory.url}/shop.inventory.v1.InventoryService/ListProducts`, { tls: operatorTls(), schema });
      expect(products).toMatchObject({ exitCode: 0, stderr: "" });
      const { products: list } = JSON.parse(products.stdout) as { products: { sku: string }[] };
      expect(list.map((p) => p.sku)).toContain("MW-MUG-001");

      const sagas = await bufCurl(`${mesh.order.url}/shop.order.v1.SagaAdminService/ListSagas`, { tls: operatorTls(), schema });
      expect(sagas).toMatchObject({ exitCode: 0, stderr: "" });
      expect((JSON.parse(sagas.stdout) as { sagas: { orderId: string }[] }).sagas.map((s) => s.orderId)).toContain(orderId);
    });

    it("is refused without a client certificate, and for what the operator may not call", async () => {
      const anonymous = await bufCurl(`${mesh.inventory.url}/shop.inventory.v1.InventoryService/ListProducts`, { tls: ["--cacert", mesh.pki.operator.caFile], schema: true });
      expect(anonymous.exitCode).toBe(exitFor(16));
      expect(anonymous.stderr).toContain('"code": "unauthenticated"');
      expect(anonymous.stderr).toContain("this port requires a client certificate from the mesh CA");

      const charge = await bufCurl(`${mesh.payment.url}/shop.payment.v1.PaymentService/Charge`, { tls: operatorTls(), schema: true });
      expect(charge.exitCode).toBe(exitFor(7));
      expect(charge.stderr).toContain("operator may not call shop.payment.v1.PaymentService/Charge");
    });
  });

  it("buf curl without a certificate is refused reflection too: it reports a schema without the service, and -v shows why", async () => {
    const reflecting = await tool(buf, ["curl", "-v", "--protocol", "grpc", "--cacert", mesh.pki.operator.caFile, "--connect-timeout", "5", "--timeout", "20s", `${mesh.inventory.url}/shop.inventory.v1.InventoryService/ListProducts`]);
    expect(reflecting.exitCode).toBe(1);
    expect(reflecting.stderr).toMatch(/Grpc-Status: 16\n[^]*Failure: failed to find service named "shop\.inventory\.v1\.InventoryService" in schema/);
  });

  it("buf curl lists the services by reflection with the operator certificate", async () => {
    const listed = await tool(buf, ["curl", ...operatorTls(), "--list-services", "--connect-timeout", "5", "--timeout", "20s", mesh.order.url]);
    expect(listed).toMatchObject({ exitCode: 0, stderr: "" });
    expect(listed.stdout.trim().split("\n")).toEqual(expect.arrayContaining(["shop.order.v1.OrderService", "shop.order.v1.SagaAdminService"]));
  });

  describe("curl", () => {
    const connectJson = (url: string, tls: string[]) =>
      tool(curl, ["-sS", "--max-time", "20", ...tls, "-H", "content-type: application/json", "-d", "{}", "-w", "\n%{http_code}", url]);
    const split = ({ stdout }: Outcome) => {
      const at = stdout.lastIndexOf("\n");
      return { status: Number(stdout.slice(at + 1)), json: JSON.parse(stdout.slice(0, at)) as unknown };
    };

    it.skipIf(!existsSync(curl))("gets ListProducts in Connect JSON over HTTPS with the operator certificate, and is refused without one; /metrics on the ops port counts the call", async () => {
      const listUrl = `${mesh.inventory.url}/shop.inventory.v1.InventoryService/ListProducts`;
      const products = await connectJson(listUrl, operatorTls());
      expect(products.exitCode).toBe(0);
      const answer = split(products);
      expect(answer.status).toBe(200);
      expect((answer.json as { products: { sku: string }[] }).products.map((p) => p.sku)).toContain("MW-MUG-001");

      const anonymous = split(await connectJson(listUrl, ["--cacert", mesh.pki.operator.caFile]));
      expect(anonymous).toEqual({ status: 401, json: { code: "unauthenticated", message: "this port requires a client certificate from the mesh CA (spiffe://meshwork/<name>)" } });

      const metrics = await tool(curl, ["-sS", "--fail", "--max-time", "20", `${mesh.inventory.ops.url}/metrics`]);
      expect(metrics.exitCode).toBe(0);
      expect(metrics.stdout).toMatch(/^rpc_server_requests_total\{[^}]*method="shop\.inventory\.v1\.InventoryService\/ListProducts"[^}]*code="OK"[^}]*\} [1-9]/m);
    });
  });
});
