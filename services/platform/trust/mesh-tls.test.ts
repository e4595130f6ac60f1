import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect as tlsConnect } from "node:tls";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pino } from "pino";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { Health } from "#gen/grpc/health/v1/health_pb.js";
import { InventoryService } from "#gen/shop/inventory/v1/inventory_service_pb.js";
import { meshSessionOptions } from "../rpc-client/clients.js";
import { loadMeshCredentials } from "./mesh-tls.js";
import { startServer, type RunningServer } from "../rpc-server/server.js";
import { startMeshPki, type MeshPki } from "#tools/mesh/mesh-pki.js";

const logger = pino({ level: "silent" });
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Certificates that live 9 s, re-issued by the launcher's rotation and re-read by a server
 * and a client that are never restarted: once the first certificates have expired, new
 * connections still succeed, with certificates issued since. The lifetime leaves the
 * rotation its third (3 s) to re-issue every identity's certificate and the server to re-read
 * its own, with room for a loaded host: at 4 s, the 1.3 s left was sometimes too short.
 */
describe("hot certificate rotation", () => {
  const LIFETIME_MS = 9_000;
  const dir = mkdtempSync(join(tmpdir(), "meshwork-rotation-"));
  let pki: MeshPki;
  let server: RunningServer;
  const serverCredentials = () => loadMeshCredentials(pki.files("inventory"), { logger, reloadMs: 200 });
  let clientCredentials: ReturnType<typeof loadMeshCredentials>;

  beforeAll(async () => {
    pki = await startMeshPki(dir, { lifetimeMs: LIFETIME_MS });
    clientCredentials = loadMeshCredentials(pki.files("order"), { logger, reloadMs: 200 });
    server = await startServer(
      {
        logger,
        services: [InventoryService],
        maxRequestBytes: 4096,
        shutdownGraceMs: 100,
        mesh: { tls: serverCredentials() },
        routes: (router) => router.service(InventoryService, { getStock: (req) => ({ stock: { sku: req.sku, available: 7 } }) }),
      },
      { host: "127.0.0.1", port: 0 },
    );
  });
  afterAll(async () => {
    await server?.close();
    clientCredentials?.close();
    pki?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  /** The certificate the server presents to a new connection. */
  const servedCertificate = () =>
    new Promise<{ serial: string; validTo: number }>((resolve, reject) => {
      const socket = tlsConnect({ host: "127.0.0.1", port: server.port, ca: clientCredentials.pem().ca, checkServerIdentity: () => undefined }, () => {
        const cert = socket.getPeerCertificate();
        socket.destroy();
        resolve({ serial: cert.serialNumber, validTo: Date.parse(cert.valid_to) });
      });
      socket.once("error", reject);
    });

  /** A call as order on a connection of its own, with the client's credentials as they are now. */
  const callOnNewConnection = async () => {
    const sessionManager = new Http2SessionManager(server.url, undefined, meshSessionOptions({ credentials: clientCredentials, peer: "inventory" }));
    try {
      return await createClient(InventoryService, createConnectTransport({ baseUrl: server.url, httpVersion: "2", sessionManager })).getStock({ sku: "MW-MUG-001" });
    } finally {
      sessionManager.abort();
    }
  };

  it("serves and presents certificates issued after the first ones expired, without a restart", async () => {
    const first = await servedCertificate();
    const firstClientContext = meshSessionOptions({ credentials: clientCredentials, peer: "inventory" }).secureContext;
    await callOnNewConnection();
    // valid_to is in whole seconds: a second more is past it whatever the fraction.
    await sleep(first.validTo + 1_000 - Date.now());
    expect(Date.now()).toBeGreaterThan(first.validTo); // the first certificate is dead
    const later = await servedCertificate();
    expect(later.serial).not.toBe(first.serial);
    expect(later.validTo).toBeGreaterThan(Date.now());
    expect(meshSessionOptions({ credentials: clientCredentials, peer: "inventory" }).secureContext).not.toBe(firstClientContext);
    expect((await callOnNewConnection()).stock?.available).toBe(7);
  }, 30_000);

  it("a client still holding an expired certificate is refused an identity", async () => {
    // Credentials that stop re-reading, as a process that missed the rotation would hold.
    const stale = loadMeshCredentials(pki.files("order"), { logger, reloadMs: 60_000 });
    stale.close();
    await sleep(LIFETIME_MS + 1_000);
    const sessionManager = new Http2SessionManager(server.url, undefined, meshSessionOptions({ credentials: stale, peer: "inventory" }));
    try {
      const transport = createConnectTransport({ baseUrl: server.url, httpVersion: "2", sessionManager });
      expect((await createClient(Health, transport).check({})).status).toBe(1); // health needs no identity
      const err = await createClient(InventoryService, transport)
        .getStock({ sku: "MW-MUG-001" })
        .then(() => undefined, (e: unknown) => ConnectError.from(e));
      expect(err?.code).toBe(Code.Unauthenticated);
    } finally {
      sessionManager.abort();
    }
  }, 30_000);
});
