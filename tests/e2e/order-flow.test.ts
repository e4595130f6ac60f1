import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError } from "@connectrpc/connect";
import { OrderStatus, SagaState, type Order } from "#gen/shop/order/v1/order_service_pb.js";
import { PaymentStatus } from "#gen/shop/payment/v1/payment_service_pb.js";
import { ReservationStatus } from "#gen/shop/inventory/v1/inventory_service_pb.js";
import { demoCatalog } from "#services/inventory/src/domain/demo-catalog.js";
import { eventually } from "../support/eventually.js";
import { CUSTOMER_HEADER } from "#platform/trust/mesh-identity.js";
import { startProcessMesh, type ProcessMesh } from "../support/process-mesh.js";

/**
 * Orders through the mesh, whose four services and gateway each run as a real process, started
 * from its main.ts by the same supervisor `npm start` uses, talking gRPC and Connect over real
 * HTTP/2.
 */
describe("place an order end to end", () => {
  let mesh: ProcessMesh;
  const adjustments = new Map<string, number>();

  beforeAll(async () => {
    mesh = await startProcessMesh();
  });
  afterAll(() => mesh?.stop());

  const place = (items: { sku: string; quantity: number }[], paymentToken = "tok_visa", customerId = "alice", requestId = randomUUID()) =>
    mesh.order.createOrder({ customerId, items, paymentToken, requestId }).then((r) => r.order!);

  async function settled(orderId: string): Promise<Order> {
    const deadline = Date.now() + 30_000;
    for (;;) {
      const { order } = await mesh.order.getOrder({ orderId });
      if (order!.status !== OrderStatus.PENDING) return order!;
      if (Date.now() > deadline) throw new Error(`order ${orderId} still PENDING after 30 s`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  const stock = async (sku: string) => (await mesh.inventory.getStock({ sku })).stock!;
  const payments = async (orderId: string) => (await mesh.payment.getPayment({ orderId })).payments;

  it("confirms a paid order: one capture, stock sold, reservation committed", async () => {
    const before = await stock("MW-MUG-001");
    const placed = await place([{ sku: "MW-MUG-001", quantity: 2 }]);
    expect(placed.status).toBe(OrderStatus.PENDING);
    expect(placed.total).toMatchObject({ currencyCode: "USD", minorUnits: 2598n }); // priced by the server

    const order = await settled(placed.id);
    expect(order.status).toBe(OrderStatus.CONFIRMED);
    expect((await payments(order.id)).map((p) => [p.status, p.amount?.minorUnits])).toEqual([[PaymentStatus.CAPTURED, 2598n]]);
    await eventually(async () => {
      expect((await mesh.inventory.getReservation({ orderId: order.id })).reservation?.status).toBe(ReservationStatus.COMMITTED);
      expect(await stock("MW-MUG-001")).toMatchObject({ available: before.available - 2, sold: before.sold + 2, reserved: 0 });
    });
  });

  it("cancels an order that cannot be filled, with a reason, and charges nothing", async () => {
    const order = await settled((await place([{ sku: "MW-LMP-006", quantity: 4 }])).id);
    expect(order.status).toBe(OrderStatus.CANCELLED);
    expect(order.cancelReason).toMatch(/^out of stock: insufficient stock for MW-LMP-006/);
    expect(await payments(order.id)).toEqual([]);
    const { saga } = await mesh.order.getOrder({ orderId: order.id });
    expect(saga?.state).toBe(SagaState.COMPENSATED);
    expect(saga?.steps.map((s) => `${s.name}:${s.state}`)).toEqual(["reserve-stock:compensated"]);
  });

  it("releases the reservation of a declined payment, restoring stock", async () => {
    const before = await stock("MW-TEE-002");
    const order = await settled((await place([{ sku: "MW-TEE-002", quantity: 3 }], "tok_decline")).id);
    expect(order.status).toBe(OrderStatus.CANCELLED);
    expect(order.cancelReason).toBe("payment declined: card_declined");
    expect((await payments(order.id)).map((p) => p.status)).toEqual([PaymentStatus.DECLINED]);
    expect((await mesh.inventory.getReservation({ orderId: order.id })).reservation?.status).toBe(ReservationStatus.RELEASED);
    expect(await stock("MW-TEE-002")).toEqual(before);
  });

  it("gives one order and one charge for one request id, even sent concurrently", async () => {
    const requestId = randomUUID();
    const answers = await Promise.all(Array.from({ length: 4 }, () => place([{ sku: "MW-STK-003", quantity: 1 }], "tok_visa", "bob", requestId)));
    expect(new Set(answers.map((o) => o.id)).size).toBe(1);
    const order = await settled(answers[0]!.id);
    expect(order.status).toBe(OrderStatus.CONFIRMED);
    const again = await place([{ sku: "MW-STK-003", quantity: 1 }], "tok_visa", "bob", requestId);
    expect(again.id).toBe(order.id);
    expect((await payments(order.id)).filter((p) => p.status === PaymentStatus.CAPTURED)).toHaveLength(1);
  });

  it("lets exactly one of several concurrent orders take the last unit", async () => {
    const sku = "MW-HOD-004";
    const { available } = await stock(sku);
    await mesh.inventory.adjustStock({ sku, delta: 1 - available, reason: "test: leave one unit" });
    adjustments.set(sku, 1 - available);
    const placed = await Promise.all(Array.from({ length: 5 }, (_, i) => place([{ sku, quantity: 1 }], "tok_visa", `racer-${i}`)));
    const outcomes = await Promise.all(placed.map((o) => settled(o.id)));
    expect(outcomes.filter((o) => o.status === OrderStatus.CONFIRMED)).toHaveLength(1);
    expect(outcomes.filter((o) => o.status === OrderStatus.CANCELLED).every((o) => o.cancelReason.startsWith("out of stock"))).toBe(true);
    // The reservation commits just after the order confirms (the saga's last step).
    await eventually(async () => expect(await stock(sku)).toMatchObject({ available: 0, reserved: 0, sold: 1 }));
    const charged = await Promise.all(outcomes.map(async (o) => (await payments(o.id)).filter((p) => p.status === PaymentStatus.CAPTURED).length));
    expect(charged.reduce((a, b) => a + b, 0)).toBe(1);
  });

  it("pages a customer's orders newest first without gaps or repeats", async () => {
    const ids = [];
    for (let i = 0; i < 5; i++) ids.push((await place([{ sku: "MW-BTL-005", quantity: 1 }], "tok_visa", "pager")).id);
    const seen: string[] = [];
    let pageToken = "";
    do {
      const page = await mesh.order.listOrders({ customerId: "pager", pageSize: 2, pageToken });
      expect(page.orders.length).toBeLessThanOrEqual(2);
      seen.push(...page.orders.map((o) => o.id));
      pageToken = page.nextPageToken;
    } while (pageToken);
    expect(seen).toEqual([...ids].reverse());
    await expect(mesh.order.listOrders({ customerId: "pager", pageToken: "garbage" })).rejects.toMatchObject({ code: Code.InvalidArgument });
    const forged = Buffer.from(JSON.stringify({ t: "2026-01-01T00:00:00Z", id: "'; drop table" })).toString("base64url");
    await expect(mesh.order.listOrders({ customerId: "pager", pageToken: forged })).rejects.toMatchObject({ code: Code.InvalidArgument });
  });

  it("refuses to cancel a confirmed order", async () => {
    const order = await settled((await place([{ sku: "MW-STK-003", quantity: 1 }])).id);
    await expect(mesh.order.cancelOrder({ orderId: order.id }, { headers: { [CUSTOMER_HEADER]: order.customerId } })).rejects.toMatchObject({ code: Code.FailedPrecondition });
  });

  it("rejects bad input with the field named, and writes nothing", async () => {
    const cases: [Parameters<typeof mesh.order.createOrder>[0], string][] = [
      [{ customerId: "eve", items: [{ sku: "NOPE", quantity: 1 }], paymentToken: "tok_visa", requestId: "1" }, 'items[0].sku: unknown SKU "NOPE"'],
      [{ customerId: "eve", items: [{ sku: "MW-MUG-001", quantity: 0 }], paymentToken: "tok_visa", requestId: "2" }, "items[0].quantity: must be greater than 0"],
      [{ customerId: "eve", items: [{ sku: "MW-MUG-001", quantity: -2 }], paymentToken: "tok_visa", requestId: "3" }, "items[0].quantity: must be greater than 0"],
      [{ customerId: "eve", items: [], paymentToken: "tok_visa", requestId: "4" }, "items: must not be empty"],
      // The customer comes from the gateway's header, which access control requires (see tests/security/zero-trust.test.ts).
      [{ customerId: "eve", items: [{ sku: "MW-MUG-001", quantity: 1 }], paymentToken: "", requestId: "6" }, "payment_token: is required"],
      [{ customerId: "eve", items: [{ sku: "MW-MUG-001", quantity: 1 }], paymentToken: "tok\u0000visa", requestId: "7" }, "payment_token: must not contain NUL characters"],
      [{ customerId: "eve", items: [{ sku: "MW\u0000", quantity: 1 }], paymentToken: "tok_visa", requestId: "8" }, "items[0].sku: must not contain NUL characters"],
    ];
    for (const [request, message] of cases) {
      const err = await mesh.order.createOrder(request).catch((e: unknown) => ConnectError.from(e));
      expect(err).toMatchObject({ code: Code.InvalidArgument, rawMessage: message });
    }
    expect((await mesh.order.listOrders({ customerId: "eve" })).orders).toEqual([]);
    await expect(mesh.order.getOrder({ orderId: randomUUID() })).rejects.toMatchObject({ code: Code.NotFound });
    await expect(mesh.order.getOrder({ orderId: "not-a-uuid" })).rejects.toMatchObject({ code: Code.InvalidArgument });
  });

  it("restarts a service that dies, as an orchestrator would", async () => {
    const pid = mesh.supervisor.pid("payment")!;
    process.kill(pid, "SIGKILL");
    await new Promise((resolve) => setTimeout(resolve, 200));
    await mesh.supervisor.waitUntilServing(30_000);
    expect(mesh.supervisor.pid("payment")).not.toBe(pid);
    expect(mesh.output.some((line) => line.includes("payment exited (SIGKILL); restarting"))).toBe(true);
    expect((await settled((await place([{ sku: "MW-MUG-001", quantity: 1 }])).id)).status).toBe(OrderStatus.CONFIRMED);
  });

  it("conserves stock: available + reserved + sold is what was seeded and adjusted", async () => {
    for (const entry of demoCatalog) {
      const s = await stock(entry.sku);
      expect(s.available + s.reserved + s.sold, entry.sku).toBe(entry.initialStock + (adjustments.get(entry.sku) ?? 0));
      // Once every saga has finished, nothing is left reserved.
      await eventually(async () => expect((await stock(entry.sku)).reserved, entry.sku).toBe(0));
    }
  });
});
