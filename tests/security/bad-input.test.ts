import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError } from "@connectrpc/connect";
import { InventoryService } from "#gen/shop/inventory/v1/inventory_service_pb.js";
import { PaymentService, PaymentStatus } from "#gen/shop/payment/v1/payment_service_pb.js";
import { build as buildInventory } from "#services/inventory/src/build.js";
import { build as buildPayment } from "#services/payment/src/build.js";
import type { RunningServer } from "#platform/rpc-server/server.js";
import type { MeshPki } from "#tools/mesh/mesh-pki.js";
import { createTestDatabase } from "../support/databases.js";
import { contractClient, testPki } from "../support/mesh-clients.js";
import { startTestNats, type TestNats } from "../support/nats.js";
import { testRuntime } from "../support/services.js";

/**
 * Oversized input sent to the real services, each with the request size limit it runs with
 * by default (1 MiB), so the request reaches the contract's limits rather than the size cap.
 * Before the limits, each of these was stored, or failed as INTERNAL. Each call comes from
 * a caller its contract admits (order charges, an operator adjusts stock), so it is the
 * input that is refused, not the caller.
 */
describe("bad input at inventory and payment", () => {
  let nats: TestNats;
  let inventoryServer: RunningServer;
  let paymentServer: RunningServer;
  let pki: MeshPki;
  const catalog = [{ sku: "SEC-001", name: "Probe", priceMinor: 500, currency: "USD", initialStock: 10 }];

  beforeAll(async () => {
    const [databaseUrl, startedNats, meshPki] = await Promise.all([createTestDatabase(), startTestNats(), testPki()]);
    nats = startedNats;
    pki = meshPki;
    const runtime = (name: string) => ({ ...testRuntime(pki, name, databaseUrl, nats.url), maxRequestBytes: 1024 * 1024, shutdownGraceMs: 1_000 });
    [inventoryServer, paymentServer] = await Promise.all([buildInventory({ ...runtime("inventory"), catalog }), buildPayment(runtime("payment"))]);
  });
  afterAll(async () => {
    await Promise.all([inventoryServer?.close(), paymentServer?.close()]);
    await nats?.stop();
  });

  const inventory = () => contractClient(InventoryService, inventoryServer.url, pki, { peer: "inventory", protocol: "connect" });
  const payment = () => contractClient(PaymentService, paymentServer.url, pki, { peer: "payment", protocol: "connect" });
  const failure = (call: Promise<unknown>) => call.then(() => undefined, (err: unknown) => ConnectError.from(err));

  it("ListProducts with 70,000 SKUs is INVALID_ARGUMENT naming skus, not a query past Postgres's bind parameters", async () => {
    const skus = Array.from({ length: 70_000 }, (_, i) => `SKU-${String(i).padStart(6, "0")}`);
    expect(await failure(inventory().listProducts({ skus }))).toMatchObject({ code: Code.InvalidArgument, rawMessage: "skus: must have at most 100 items" });
    const within = await inventory().listProducts({ skus: ["SEC-001", ...skus.slice(0, 99)] });
    expect(within.products.map((p) => p.sku)).toEqual(["SEC-001"]);
  });

  it("AdjustStock with a 500 KB reason is INVALID_ARGUMENT naming reason, and stock is unchanged", async () => {
    const before = (await inventory().getStock({ sku: "SEC-001" })).stock?.available;
    expect(await failure(inventory().adjustStock({ sku: "SEC-001", delta: 5, reason: "x".repeat(500_000) }))).toMatchObject({
      code: Code.InvalidArgument,
      rawMessage: "reason: must be at most 1000 characters",
    });
    expect((await inventory().getStock({ sku: "SEC-001" })).stock?.available).toBe(before);
    const adjusted = await inventory().adjustStock({ sku: "SEC-001", delta: 5, reason: "r".repeat(1000) });
    expect(adjusted.stock?.available).toBe((before ?? 0) + 5);
  });

  it("Refund with a 500 KB reason is INVALID_ARGUMENT naming reason, and the charge stays captured", async () => {
    const charged = await payment().charge({ orderId: "sec-order-1", amount: { currencyCode: "USD", minorUnits: 500n }, paymentToken: "tok_visa", idempotencyKey: "sec-charge-1" });
    expect(charged.payment?.status).toBe(PaymentStatus.CAPTURED);
    expect(await failure(payment().refund({ orderId: "sec-order-1", idempotencyKey: "sec-refund-1", reason: "x".repeat(500_000) }))).toMatchObject({
      code: Code.InvalidArgument,
      rawMessage: "reason: must be at most 1000 characters",
    });
    expect((await payment().getPayment({ orderId: "sec-order-1" })).payments.map((p) => p.status)).toEqual([PaymentStatus.CAPTURED]);
    const refunded = await payment().refund({ orderId: "sec-order-1", idempotencyKey: "sec-refund-1", reason: "r".repeat(1000) });
    expect(refunded.payments.map((p) => p.status)).toEqual([PaymentStatus.REFUNDED]);
  });

  it("an id past the contract's 128 characters is INVALID_ARGUMENT naming it", async () => {
    expect(await failure(payment().getPayment({ orderId: "o".repeat(129) }))).toMatchObject({ code: Code.InvalidArgument, rawMessage: "order_id: must be at most 128 characters" });
    expect(await failure(inventory().getReservation({ orderId: "o".repeat(129) }))).toMatchObject({ code: Code.InvalidArgument, rawMessage: "order_id: must be at most 128 characters" });
  });
});
