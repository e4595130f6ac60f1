import { connect } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pino } from "pino";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { InventoryService } from "#gen/shop/inventory/v1/inventory_service_pb.js";
import { meshTls } from "../process/config.js";
import { CUSTOMER_HEADER, identityOfForwardedCert } from "./mesh-identity.js";
import { startServer, type RunningServer } from "../rpc-server/server.js";

const logger = pino({ level: "silent" });

/**
 * MESH_TLS=off, for a sidecar mesh: the sidecar terminates mTLS and names the client in
 * x-forwarded-client-cert, which the server believes only from the sidecar's address. The
 * contract's access option still decides.
 */
describe("access control behind a sidecar (MESH_TLS=off)", () => {
  let server: RunningServer;
  beforeAll(async () => {
    server = await startServer(
      {
        logger,
        services: [InventoryService],
        maxRequestBytes: 4096,
        shutdownGraceMs: 100,
        mesh: { forwardedBy: ["127.0.0.1"] },
        routes: (router) => router.service(InventoryService, { adjustStock: (req) => ({ stock: { sku: req.sku, available: req.delta } }) }),
      },
      { host: "0.0.0.0", port: 0 },
    );
  });
  afterAll(() => server?.close());

  /** AdjustStock (operators only) from `localAddress`, with the sidecar header naming `uri`. */
  const adjust = (localAddress: string, uri?: string) => {
    const sessionManager = new Http2SessionManager(server.url, undefined, {
      createConnection: (authority: URL) => connect({ host: authority.hostname, port: Number(authority.port), localAddress }),
    });
    const client = createClient(InventoryService, createGrpcTransport({ baseUrl: server.url, sessionManager }));
    const headers = uri ? { "x-forwarded-client-cert": `By=spiffe://meshwork/inventory;Hash=abc;URI=${uri}` } : undefined;
    return client
      .adjustStock({ sku: "MW-MUG-001", delta: 3, reason: "sidecar test" }, headers ? { headers } : {})
      .then(() => "OK", (err: unknown) => Code[ConnectError.from(err).code])
      .finally(() => sessionManager.abort());
  };

  it("admits the identity the sidecar names, as the contract says", async () => {
    expect(await adjust("127.0.0.1", "spiffe://meshwork/operator")).toBe("OK");
    expect(await adjust("127.0.0.1", "spiffe://meshwork/order")).toBe("PermissionDenied");
    expect(await adjust("127.0.0.1", "spiffe://elsewhere/operator")).toBe("Unauthenticated");
    expect(await adjust("127.0.0.1")).toBe("Unauthenticated");
  });

  it("believes the header only from the sidecar's address", async () => {
    expect(await adjust("127.0.0.2", "spiffe://meshwork/operator")).toBe("Unauthenticated");
  });

  it("reads the one URI of the hop nearest to the server, never a quoted value", () => {
    expect(identityOfForwardedCert('By=spiffe://meshwork/a;URI=spiffe://meshwork/gateway,By=spiffe://meshwork/b;URI="spiffe://meshwork/order"')).toBe("order");
    // A DNS SAN crafted to look like a field, and one to look like another hop.
    expect(identityOfForwardedCert('By=spiffe://meshwork/b;URI=spiffe://meshwork/order;DNS="x;URI=spiffe://meshwork/operator"')).toBe("order");
    expect(identityOfForwardedCert('By=spiffe://meshwork/b;URI=spiffe://meshwork/order;Subject="CN=a,URI=spiffe://meshwork/operator"')).toBe("order");
    expect(identityOfForwardedCert('By=spiffe://meshwork/b;DNS="x,URI=spiffe://meshwork/operator"')).toBeUndefined();
    expect(identityOfForwardedCert('By=spiffe://meshwork/b;URI=spiffe://meshwork/order;URI=spiffe://meshwork/operator')).toBeUndefined();
    expect(identityOfForwardedCert('By=spiffe://meshwork/b;URI="spiffe://meshwork/operator')).toBeUndefined();
  });

  it("is refused at start without the sidecar's address, so it never fails open", () => {
    expect(() => meshTls({ MESH_TLS: "off" }, [])).toThrow(/TRUSTED_PROXIES/);
    expect(meshTls({ MESH_TLS: "off" }, ["127.0.0.1"])).toBe("off");
    expect(() => meshTls({}, [])).toThrow(/TLS_CERT_FILE/);
  });
});

/** Which caller may name a customer is the server's to say (startServer's customerAgent), not the kit's. */
describe("the customer agent", () => {
  const servers: RunningServer[] = [];
  const start = async (customerAgent?: string) => {
    const server = await startServer(
      {
        logger,
        services: [InventoryService],
        maxRequestBytes: 4096,
        shutdownGraceMs: 100,
        mesh: { forwardedBy: ["127.0.0.1"] },
        ...(customerAgent ? { customerAgent } : {}),
        routes: (router) => router.service(InventoryService, { listProducts: () => ({ products: [] }) }),
      },
      { host: "127.0.0.1", port: 0 },
    );
    servers.push(server);
    return server;
  };
  afterAll(() => Promise.all(servers.map((server) => server.close())));

  /** ListProducts (gateway, order and operators may call it) as `caller`, naming a customer. */
  const listFor = (server: RunningServer, caller: string) =>
    createClient(InventoryService, createGrpcTransport({ baseUrl: server.url }))
      .listProducts({}, { headers: { "x-forwarded-client-cert": `By=spiffe://meshwork/inventory;URI=spiffe://meshwork/${caller}`, [CUSTOMER_HEADER]: "ada" } })
      .then(() => "OK", (err: unknown) => ConnectError.from(err).rawMessage);

  it("lets the configured agent alone name a customer", async () => {
    const server = await start("gateway");
    expect(await listFor(server, "gateway")).toBe("OK");
    expect(await listFor(server, "order")).toBe(`only the gateway acts for customers; order may not send ${CUSTOMER_HEADER}`);
  });

  it("lets no caller name one where none is configured", async () => {
    const server = await start();
    expect(await listFor(server, "gateway")).toBe(`no caller acts for customers here; gateway may not send ${CUSTOMER_HEADER}`);
  });
});
