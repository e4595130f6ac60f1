import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError, createClient, type Interceptor, type Transport } from "@connectrpc/connect";
import type { DescService } from "@bufbuild/protobuf";
import { Kvm } from "@nats-io/kv";
import { connectBus } from "#platform/messaging/connection.js";
import { InventoryService } from "#gen/shop/inventory/v1/inventory_service_pb.js";
import { NotificationService } from "#gen/shop/notification/v1/notification_service_pb.js";
import { OrderService, OrderStatus } from "#gen/shop/order/v1/order_service_pb.js";
import { SagaAdminService } from "#gen/shop/order/v1/saga_admin_service_pb.js";
import { PaymentService, PaymentStatus } from "#gen/shop/payment/v1/payment_service_pb.js";
import { DISCOVERY_BUCKET } from "#platform/discovery/registry.js";
import { CUSTOMER_HEADER } from "#platform/trust/mesh-identity.js";
import { loadMeshCredentials } from "#platform/trust/mesh-tls.js";
import { startServer, type RunningServer } from "#platform/rpc-server/server.js";
import { toMoney } from "#shop/money.js";
import { createCertificateAuthority, writeCredentials } from "#tools/infra/pki.js";
import { eventually } from "../support/eventually.js";
import { startTcpFaultProxy, type TcpFaultProxy } from "#tools/chaos/tcp-fault-proxy.js";
import { meshTransport } from "../support/mesh-clients.js";
import { silentLogger } from "../support/silent-logger.js";
import { startInProcessMesh, type InProcessMesh } from "../support/services.js";

/**
 * Issue 11's probe of the mesh, replayed: internal RPCs called by the wrong caller or by
 * nobody, a customer acted for by someone other than the gateway, and a poisoned registry
 * pointing payment's callers at an impostor. Each is refused; the real flow still works.
 */
describe("zero trust inside the mesh", () => {
  let mesh: InProcessMesh;
  const transports = new Map<string, Transport>();
  /** A client of `name`'s mesh port, presenting `as`'s certificate (none: anonymous TLS). */
  const as = <T extends DescService>(service: T, name: "order" | "inventory" | "payment" | "notification", caller?: string, customer?: string) => {
    const key = `${name}/${caller}/${customer}`;
    let transport = transports.get(key);
    if (!transport) {
      const naming: Interceptor = (next) => (req) => {
        req.header.set(CUSTOMER_HEADER, customer!);
        return next(req);
      };
      const interceptors = customer === undefined ? [] : [naming];
      transport = meshTransport(mesh[name].url, mesh.pki, { ...(caller ? { as: caller } : {}), peer: name, interceptors });
      transports.set(key, transport);
    }
    return createClient(service, transport);
  };
  const refusal = (call: Promise<unknown>) => call.then(() => undefined, (err: unknown) => ConnectError.from(err).code);
  const charge = () => ({ orderId: randomUUID(), amount: toMoney("USD", 99_999_999), paymentToken: "tok_visa", idempotencyKey: randomUUID() });

  beforeAll(async () => {
    mesh = await startInProcessMesh();
  });
  afterAll(() => mesh?.close());

  it("Charge and Refund answer only order: no certificate is UNAUTHENTICATED, another identity PERMISSION_DENIED", async () => {
    expect(await refusal(as(PaymentService, "payment").charge(charge()))).toBe(Code.Unauthenticated);
    for (const caller of ["gateway", "inventory", "notification", "operator"]) {
      expect(await refusal(as(PaymentService, "payment", caller).charge(charge()))).toBe(Code.PermissionDenied);
      expect(await refusal(as(PaymentService, "payment", caller).refund({ orderId: randomUUID(), idempotencyKey: randomUUID() }))).toBe(Code.PermissionDenied);
    }
    const { payment } = await as(PaymentService, "payment", "order").charge(charge());
    expect(payment?.status).toBe(PaymentStatus.CAPTURED);
  });

  it("stock moves only for order, and AdjustStock only for an operator", async () => {
    const items = [{ sku: "MW-MUG-001", quantity: 1 }];
    expect(await refusal(as(InventoryService, "inventory", "gateway").reserveStock({ orderId: randomUUID(), items }))).toBe(Code.PermissionDenied);
    expect(await refusal(as(InventoryService, "inventory", "order").adjustStock({ sku: "MW-MUG-001", delta: 1000, reason: "forged" }))).toBe(Code.PermissionDenied);
    expect(await refusal(as(InventoryService, "inventory", "gateway").adjustStock({ sku: "MW-MUG-001", delta: 1000, reason: "forged" }))).toBe(Code.PermissionDenied);
    expect(await refusal(as(InventoryService, "inventory", "operator").adjustStock({ sku: "MW-MUG-001", delta: 1, reason: "zero-trust test: an operator restocks" }))).toBeUndefined();
  });

  it("only the gateway acts for customers, and only for the one it names", async () => {
    const order = { customerId: "ada", items: [{ sku: "MW-MUG-001", quantity: 1 }], paymentToken: "tok_visa", requestId: randomUUID() };
    // Nobody but the gateway may create or cancel; the gateway must name the customer.
    expect(await refusal(as(OrderService, "order", "payment").createOrder(order))).toBe(Code.PermissionDenied);
    expect(await refusal(as(OrderService, "order", "operator").createOrder(order))).toBe(Code.PermissionDenied);
    expect(await refusal(as(OrderService, "order", "gateway").createOrder(order))).toBe(Code.PermissionDenied);
    // Another service cannot borrow a customer, even for a method it may call.
    expect(await refusal(as(OrderService, "order", "operator", "ada").getOrder({ orderId: randomUUID() }))).toBe(Code.PermissionDenied);
    // The body cannot name someone other than the customer the gateway vouches for.
    expect(await refusal(as(OrderService, "order", "gateway", "eve").createOrder(order))).toBe(Code.PermissionDenied);
    expect(await refusal(as(OrderService, "order", "gateway", "eve").listOrders({ customerId: "ada" }))).toBe(Code.PermissionDenied);
    expect(await refusal(as(NotificationService, "notification", "gateway", "eve").listNotifications({ customerId: "ada" }))).toBe(Code.PermissionDenied);
    // A customer id outside the safe alphabet is no customer (a zero-width look-alike cannot even be a header).
    expect(await refusal(as(OrderService, "order", "gateway", "ada eve").listOrders({}))).toBe(Code.InvalidArgument);

    const { order: placed } = await as(OrderService, "order", "gateway", "ada").createOrder(order);
    expect(placed?.customerId).toBe("ada");
    // Eve, through the gateway, sees and cancels nothing of Ada's.
    expect(await refusal(as(OrderService, "order", "gateway", "eve").getOrder({ orderId: placed!.id }))).toBe(Code.NotFound);
    expect(await refusal(as(OrderService, "order", "gateway", "eve").cancelOrder({ orderId: placed!.id }))).toBe(Code.NotFound);
    expect((await as(OrderService, "order", "gateway", "eve").listOrders({})).orders).toEqual([]);
    expect((await as(OrderService, "order", "gateway", "ada").listOrders({})).orders.map((o) => o.id)).toContain(placed!.id);
    // An operator reads anyone's orders, naming the customer.
    expect((await as(OrderService, "order", "operator").listOrders({ customerId: "ada" })).orders.map((o) => o.id)).toContain(placed!.id);
  });

  it("the saga admin service answers operators only", async () => {
    expect(await refusal(as(SagaAdminService, "order").listSagas({}))).toBe(Code.Unauthenticated);
    expect(await refusal(as(SagaAdminService, "order", "gateway").listSagas({}))).toBe(Code.PermissionDenied);
    expect(await refusal(as(SagaAdminService, "order", "operator").listSagas({}))).toBeUndefined();
  });

  describe("a poisoned registry", () => {
    const impostors: RunningServer[] = [];
    let charges = 0;
    const scratch = mkdtempSync(join(tmpdir(), "meshwork-impostor-"));

    const proxies: TcpFaultProxy[] = [];
    /** A PaymentService that captures everything, and counts what reaches it; under mTLS unless `files` is undefined. */
    const impostor = async (files: { certFile: string; keyFile: string; caFile: string } | undefined) => {
      const server = await startServer(
        {
          logger: silentLogger,
          services: [PaymentService],
          maxRequestBytes: 64 * 1024,
          shutdownGraceMs: 100,
          ...(files ? { mesh: { tls: loadMeshCredentials(files, { logger: silentLogger }) } } : {}),
          routes: (router) =>
            router.service(PaymentService, {
              charge(req) {
                charges++;
                return { payment: { orderId: req.orderId, status: PaymentStatus.CAPTURED, amount: req.amount } };
              },
            }),
        },
        { host: "127.0.0.1", port: 0 },
      );
      impostors.push(server);
      // In front of it, a proxy that counts the connections order makes to it.
      const proxy = await startTcpFaultProxy();
      proxy.setTarget(server.port);
      proxies.push(proxy);
      return { url: `${files ? "https" : "http"}://127.0.0.1:${new URL(proxy.url).port}`, connections: () => proxy.stats().accepted };
    };

    afterAll(async () => {
      await Promise.all(proxies.map((proxy) => proxy.close()));
      await Promise.all(impostors.map((server) => server.close()));
      rmSync(scratch, { recursive: true, force: true });
    });

    it("cannot confirm a declined order: order refuses every server that is not spiffe://meshwork/payment", async () => {
      // A compromised inventory (a real mesh certificate, the wrong identity), a server
      // claiming to be payment under a CA of its own, and one in cleartext.
      const foreignCa = await createCertificateAuthority();
      const forged = writeCredentials(scratch, "payment", await foreignCa.issue("payment"));
      const foreignCaFile = writeCredentials(scratch, "foreign-ca", { certPem: foreignCa.certPem, keyPem: foreignCa.keyPem }).certFile;
      const [wrongIdentity, foreign, cleartext] = [await impostor(mesh.pki.files("inventory")), await impostor({ ...forged, caFile: foreignCaFile }), await impostor(undefined)];
      const servers = [wrongIdentity, foreign, cleartext];
      // The registry is written as the issue's probe did: entries that look live and ready,
      // one dated far in the future. (NATS permissions stop services writing each other's
      // keys; this plays an attacker past them.)
      const bus = connectBus({ url: mesh.nats.url, name: "suite", logger: silentLogger });
      try {
        const kv = await new Kvm((await bus.ready).js).create(DISCOVERY_BUCKET, { history: 1, ttl: 15_000 });
        for (const [i, server] of servers.entries()) {
          for (const n of [1, 2]) {
            const id = `evil${i}${n}`;
            const entry = { service: PaymentService.typeName, id, address: server.url, version: "evil", health: "SERVING", updatedAt: Date.now() + (n === 2 ? 10 * 365 * 86_400_000 : 0) };
            await kv.put(`${PaymentService.typeName}.${id}`, JSON.stringify(entry));
          }
        }
        const orders = mesh.client(OrderService, "order");
        const placed = await Promise.all(
          Array.from({ length: 6 }, async () => (await orders.createOrder({ customerId: "mallory", items: [{ sku: "MW-MUG-001", quantity: 1 }], paymentToken: "tok_decline", requestId: randomUUID() })).order!),
        );
        const settled = await eventually(async () => {
          const now = await Promise.all(placed.map(async (o) => (await orders.getOrder({ orderId: o.id })).order!));
          expect(now.filter((o) => o.status === OrderStatus.PENDING)).toEqual([]);
          return now;
        }, 30_000);
        expect(settled.map((o) => o.status)).toEqual(placed.map(() => OrderStatus.CANCELLED));
        expect(charges).toBe(0); // no impostor ever saw a request, nor a payment token
        // Order did try the TLS impostors (the registry reached it) and refused them at the
        // handshake; the cleartext address it never dialled.
        expect(wrongIdentity.connections()).toBeGreaterThan(0);
        expect(foreign.connections()).toBeGreaterThan(0);
        expect(cleartext.connections()).toBe(0);
      } finally {
        await bus.close();
      }
    });
  });
});
