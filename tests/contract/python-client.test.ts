import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { StorefrontService } from "../../gen/shop/gateway/v1/storefront_service_pb.js";
import type { RunningServer } from "../../services/platform/server.js";
import { startGateway } from "../support/gateway.js";
import { startInProcessMesh, type InProcessMesh } from "../support/services.js";

const python = "/usr/bin/python3"; // Debian's, where python3-grpcio and python3-grpc-tools live
const protoRoot = resolve(import.meta.dirname, "../../proto");

function protoFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory() ? protoFiles(join(dir, entry.name)) : entry.name.endsWith(".proto") ? [relative(protoRoot, join(dir, entry.name))] : [],
  );
}

/** Another language entirely: Python stubs generated from proto/ by grpc_tools.protoc. */
describe("a Python gRPC client", () => {
  let mesh: InProcessMesh;
  let gateway: RunningServer;
  const stubs = mkdtempSync(join(tmpdir(), "meshwork-py-"));

  beforeAll(async () => {
    const wellKnown = execFileSync(python, ["-c", "import grpc_tools, os; print(os.path.join(os.path.dirname(grpc_tools.__file__), '_proto'))"], { encoding: "utf8" }).trim();
    execFileSync(python, ["-m", "grpc_tools.protoc", `-I${protoRoot}`, `-I${wellKnown}`, `--python_out=${stubs}`, `--grpc_python_out=${stubs}`, ...protoFiles(join(protoRoot, "shop")), ...protoFiles(join(protoRoot, "meshwork"))]);
    mesh = await startInProcessMesh();
    gateway = await startGateway(mesh);
  });
  afterAll(async () => {
    await gateway?.close();
    await mesh?.close();
    rmSync(stubs, { recursive: true, force: true });
  });

  it("creates an order, reads it back, and gets typed errors, from order, inventory and the gateway", async () => {
    const { token } = await createClient(StorefrontService, createGrpcTransport({ baseUrl: gateway.url })).issueDemoToken({ customerId: "py-gateway" });
    const address = (server: RunningServer) => server.url.replace("http://", "");
    const output = await new Promise<string>((done, fail) => {
      // Async: the servers answering it live in this very process.
      const child = spawn(python, [resolve(import.meta.dirname, "python/client.py"), stubs, address(mesh.order), address(mesh.inventory), address(gateway), token]);
      let stdout = "";
      let stderr = "";
      child.stdout.on("data", (chunk: Buffer) => (stdout += chunk));
      child.stderr.on("data", (chunk: Buffer) => (stderr += chunk));
      child.once("exit", (code) => (code === 0 ? done(stdout) : fail(new Error(`python exited ${code}: ${stderr}`))));
    });
    const seen = JSON.parse(output);
    expect(seen.skus).toContain("MW-MUG-001");
    expect(seen.order).toEqual({ id_matches: true, total: 2598, status: "ORDER_STATUS_PENDING" });
    expect(seen.order_bad_input).toEqual({ code: "INVALID_ARGUMENT", details: "items: must not be empty" });
    expect(seen.gateway_order).toEqual({ id_matches: true, customer: "py-gateway" });
    expect(seen.gateway_bad_input).toEqual({ code: "INVALID_ARGUMENT", details: "items[0].quantity: must be greater than 0" });
    expect(seen.gateway_no_token).toEqual({ code: "UNAUTHENTICATED", details: "missing bearer token" });
  });
});

