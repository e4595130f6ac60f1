import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { toJson } from "@bufbuild/protobuf";
import { GetOrderTimelineResponseSchema, StorefrontService } from "#gen/shop/gateway/v1/storefront_service_pb.js";
import { OrderService, OrderStatus, SagaPhaseKind, SagaState } from "#gen/shop/order/v1/order_service_pb.js";
import { PaymentService, PaymentStatus } from "#gen/shop/payment/v1/payment_service_pb.js";
import { InventoryService, ReservationStatus } from "#gen/shop/inventory/v1/inventory_service_pb.js";
import { PaymentActionRequiredSchema } from "#gen/shop/payment/v1/payment_events_pb.js";
import { CUSTOMER_HEADER } from "#platform/trust/mesh-identity.js";
import type { RunningServer } from "#platform/rpc-server/server.js";
import { connect } from "../support/databases.js";
import { eventually } from "../support/eventually.js";
import { bearer, startGateway } from "../support/gateway.js";
import { expectInvariants } from "../support/invariants.js";
import { findUnconfirmedPayments } from "../support/invariant-violations.js";
import { startInProcessMesh, type InProcessMesh } from "../support/services.js";

/** Long enough for every confirmation below, short enough that the timeout test waits it out. */
const THREE_DS_TIMEOUT_MS = 3_000;

/**
 * tok_3ds end to end, through the gateway: the charge waits for the customer's confirmation
 * (a saga signal), captures once however often it is confirmed, keeps a confirmation that
 * comes before the wait, and compensates when none comes in time.
 */
describe("3-D Secure payments", () => {
  let mesh: InProcessMesh;
  let gateway: RunningServer;
  let sql: ReturnType<typeof connect>;
  let anonymous: Client<typeof StorefrontService>;
  let orders: Client<typeof OrderService>;
  let payment: Client<typeof PaymentService>;
  let inventory: Client<typeof InventoryService>;
  const as = async (customerId: string) => {
    const { token } = await anonymous.issueDemoToken({ customerId });
    return createClient(StorefrontService, createGrpcTransport({ baseUrl: gateway.url, interceptors: [bearer(token)] }));
  };

  beforeAll(async () => {
    mesh = await startInProcessMesh({ threeDsTimeoutMs: THREE_DS_TIMEOUT_MS });
    gateway = await startGateway(mesh);
    sql = connect(mesh.databaseUrl);
    anonymous = createClient(StorefrontService, createGrpcTransport({ baseUrl: gateway.url }));
    orders = mesh.client(OrderService, "order");
    payment = mesh.client(PaymentService, "payment");
    inventory = mesh.client(InventoryService, "inventory");
  });
  afterAll(async () => {
    await sql?.end();
    await gateway?.close();
    await mesh?.close();
  });

  const place = async (storefront: Client<typeof StorefrontService>, sku = "MW-MUG-001") =>
    (await storefront.placeOrder({ items: [{ sku, quantity: 1 }], paymentToken: "tok_3ds", requestId: randomUUID() })).order!;

  async function settled(storefront: Client<typeof StorefrontService>, orderId: string) {
    return eventually(async () => {
      const { order } = await storefront.getOrderDetails({ orderId });
      expect(order?.status).not.toBe(OrderStatus.PENDING);
      return order!;
    }, 20_000);
  }

  const signals = (orderId: string) =>
    sql`select g.signal_id, g.consumed_at from orders.saga_signals g join orders.sagas s on s.id = g.saga_id where s.aggregate_id = ${orderId} and g.name = 'payment-confirmed'`;
  const payments = async (orderId: string) => (await payment.getPayment({ orderId })).payments.map((p) => [p.status, p.declineReason]);
  /** Locks payment's table until released: a charge cannot settle meanwhile. Resolves once held. */
  async function holdPayments(): Promise<() => Promise<void>> {
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    let held!: () => void;
    const holding = new Promise<void>((resolve) => (held = resolve));
    const done = sql.begin(async (tx) => {
      await tx`lock table payment.payments in exclusive mode`;
      held();
      await released;
    });
    await holding;
    return async () => {
      release();
      await done;
    };
  }
  const failure = (call: Promise<unknown>) => call.then(() => undefined, (err: unknown) => ConnectError.from(err));

  it("waits for the customer's confirmation, reported on WatchOrder, then captures once", async () => {
    const ada = await as("ada-3ds");
    // Held until the watch is open, so the event cannot go out before anyone listens.
    const releasePayments = await holdPayments();
    const placed = await place(ada);
    const seen: string[] = [];
    let last = OrderStatus.UNSPECIFIED;
    const confirmationId = randomUUID();
    try {
      for await (const update of ada.watchOrder({ orderId: placed.id }, { timeoutMs: 15_000 })) {
        if (seen.length === 0) await releasePayments();
        seen.push(update.eventType);
        last = update.order!.status;
        if (update.eventType !== PaymentActionRequiredSchema.typeName) continue;
        // Nothing moved yet, and the customer's timeline shows the wait, with its deadline.
        expect(await payments(placed.id)).toEqual([[PaymentStatus.REQUIRES_ACTION, ""]]);
        const timeline = await eventually(async () => {
          const found = await ada.getOrderTimeline({ orderId: placed.id });
          expect(found.sagaState).toBe(SagaState.WAITING);
          return found;
        });
        const wait = timeline.steps.find((s) => s.name === "charge")!.phases.find((p) => p.kind === SagaPhaseKind.SIGNAL)!;
        expect(wait).toMatchObject({ waitName: "payment-confirmed", outcome: "waiting" });
        expect(wait.dueTime).toBeDefined();
        // Confirmed twice with one id: a retry, which changes nothing.
        for (let i = 0; i < 2; i++) expect((await ada.confirmPayment({ orderId: placed.id, confirmationId })).order?.id).toBe(placed.id);
      }
    } finally {
      await releasePayments(); // if the watch failed before its first update
    }
    expect(last).toBe(OrderStatus.CONFIRMED);
    expect(seen).toContain(PaymentActionRequiredSchema.typeName);
    // A second confirmation, with a new id, once the order is over: nothing left to confirm.
    expect(await failure(ada.confirmPayment({ orderId: placed.id, confirmationId: randomUUID() }))).toMatchObject({ code: Code.FailedPrecondition });
    expect(await payments(placed.id)).toEqual([[PaymentStatus.CAPTURED, ""]]);
    const delivered = await signals(placed.id);
    expect(delivered.map((r) => r["signal_id"])).toEqual([confirmationId]);
    expect(delivered[0]?.["consumed_at"]).not.toBeNull();
  });

  it("shows the customer step names, states and times only", async () => {
    const bo = await as("bo-3ds");
    const placed = await place(bo);
    await eventually(async () => expect((await bo.getOrderTimeline({ orderId: placed.id })).sagaState).toBe(SagaState.WAITING));
    await bo.confirmPayment({ orderId: placed.id, confirmationId: randomUUID() });
    expect((await settled(bo, placed.id)).status).toBe(OrderStatus.CONFIRMED);
    // Confirmed, the saga still commits the reservation: its end comes a moment later.
    const timeline = await eventually(async () => {
      const found = await bo.getOrderTimeline({ orderId: placed.id });
      expect(found.sagaState).toBe(SagaState.COMPLETED);
      return found;
    });
    expect(timeline.order?.id).toBe(placed.id);
    // The same steps as the operator's view, with no field beyond the customer's.
    const { saga } = await orders.getOrder({ orderId: placed.id });
    expect(timeline.steps.map((s) => [s.name, s.state])).toEqual(saga!.steps.map((s) => [s.name, s.state]));
    const wire = toJson(GetOrderTimelineResponseSchema, timeline) as { steps: { phases: Record<string, unknown>[] }[] };
    const keys = new Set(wire.steps.flatMap((s) => s.phases.flatMap((p) => Object.keys(p))));
    expect([...keys].filter((k) => !["kind", "startTime", "endTime", "outcome", "waitName", "dueTime"].includes(k))).toEqual([]);
    // The charge: an attempt that reached the wait, the wait signalled, the attempt that captured.
    const charge = timeline.steps.find((s) => s.name === "charge")!.phases.map((p) => [p.kind, p.outcome]);
    expect(charge[0]?.[0]).toBe(SagaPhaseKind.ATTEMPT);
    expect(charge).toContainEqual([SagaPhaseKind.SIGNAL, "signalled"]);
    expect(charge.at(-1)).toEqual([SagaPhaseKind.ATTEMPT, "succeeded"]);
  });

  it("keeps a confirmation that arrives before the charge waits for it, and captures once", async () => {
    const cy = await as("cy-3ds");
    // The charge cannot settle while payment's table is locked, so the confirmation lands first.
    const releasePayments = await holdPayments();
    let placed;
    try {
      placed = await place(cy);
      // Straight to order, as the gateway calls it, before the saga has asked for anything.
      const early = randomUUID();
      const { order } = await orders.confirmPayment({ orderId: placed.id, confirmationId: early }, { headers: { [CUSTOMER_HEADER]: "cy-3ds" } });
      expect(order?.status).toBe(OrderStatus.PENDING);
      expect((await signals(placed.id)).map((r) => [r["signal_id"], r["consumed_at"]])).toEqual([[early, null]]);
      expect(await payments(placed.id)).toEqual([]);
    } finally {
      await releasePayments();
    }
    expect((await settled(cy, placed.id)).status).toBe(OrderStatus.CONFIRMED);
    expect(await payments(placed.id)).toEqual([[PaymentStatus.CAPTURED, ""]]);
    expect((await signals(placed.id)).every((r) => r["consumed_at"] !== null)).toBe(true);
  });

  it("cancels an order whose payment is not confirmed in time: stock released, payment voided, nothing captured", async () => {
    const dee = await as("dee-3ds");
    const before = (await inventory.getStock({ sku: "MW-TEE-002" })).stock!;
    const placed = await place(dee, "MW-TEE-002");
    const started = Date.now();
    const order = await settled(dee, placed.id);
    expect(order).toMatchObject({ status: OrderStatus.CANCELLED, cancelReason: "payment not confirmed: no 3-D Secure confirmation within 3 s" });
    expect(Date.now() - started).toBeGreaterThanOrEqual(THREE_DS_TIMEOUT_MS - 500);
    expect(await payments(placed.id)).toEqual([[PaymentStatus.DECLINED, "voided"]]);
    expect((await inventory.getReservation({ orderId: placed.id })).reservation?.status).toBe(ReservationStatus.RELEASED);
    expect((await inventory.getStock({ sku: "MW-TEE-002" })).stock).toMatchObject({ available: before.available, reserved: before.reserved, sold: before.sold });
    const charge = (await dee.getOrderTimeline({ orderId: placed.id })).steps.find((s) => s.name === "charge")!;
    expect(charge.state).toBe("compensated");
    expect(charge.phases.map((p) => [p.kind, p.outcome])).toContainEqual([SagaPhaseKind.SIGNAL, "timed-out"]);
    expect(charge.phases.some((p) => p.kind === SagaPhaseKind.COMPENSATION)).toBe(true);
    // Confirming now is too late, and moves no money.
    expect(await failure(dee.confirmPayment({ orderId: placed.id, confirmationId: randomUUID() }))).toMatchObject({ code: Code.FailedPrecondition });
    expect(await payments(placed.id)).toEqual([[PaymentStatus.DECLINED, "voided"]]);
  });

  it("answers NOT_FOUND for another customer's order, and names a bad field", async () => {
    const eve = await as("eve-3ds");
    const ada = await as("ada-3ds");
    const placed = await place(ada);
    expect(await failure(eve.confirmPayment({ orderId: placed.id, confirmationId: randomUUID() }))).toMatchObject({ code: Code.NotFound });
    expect(await failure(eve.getOrderTimeline({ orderId: placed.id }))).toMatchObject({ code: Code.NotFound });
    expect(await signals(placed.id)).toEqual([]); // the stranger's confirmation reached nothing
    expect(await failure(ada.confirmPayment({ orderId: "nope", confirmationId: randomUUID() }))).toMatchObject({ code: Code.InvalidArgument, rawMessage: "order_id: must be a UUID" });
    expect(await failure(ada.confirmPayment({ orderId: placed.id, confirmationId: "" }))).toMatchObject({ code: Code.InvalidArgument, rawMessage: "confirmation_id: is required" });
    expect(await failure(ada.confirmPayment({ orderId: placed.id, confirmationId: "not-a-uuid" }))).toMatchObject({ code: Code.InvalidArgument, rawMessage: "confirmation_id: must be a UUID" });
    expect(await failure(ada.getOrderTimeline({ orderId: "nope" }))).toMatchObject({ code: Code.InvalidArgument, rawMessage: "order_id: must be a UUID" });
    await ada.confirmPayment({ orderId: placed.id, confirmationId: randomUUID() });
    expect((await settled(ada, placed.id)).status).toBe(OrderStatus.CONFIRMED);
  });
  it("refuses a confirmation once the deadline has passed, even before the saga wakes: nothing captured", async () => {
    const fay = await as("fay-3ds");
    const placed = await place(fay);
    await eventually(async () => expect((await fay.getOrderTimeline({ orderId: placed.id })).sagaState).toBe(SagaState.WAITING));
    // Past the deadline the saga compensates, and its refund blocks on payment's table: the order stays pending.
    const releasePayments = await holdPayments();
    try {
      await eventually(async () => {
        const [wait] = await sql`select w.due_at < now() as past from orders.saga_waits w join orders.sagas s on s.id = w.saga_id where s.aggregate_id = ${placed.id}`;
        expect(wait?.["past"]).toBe(true);
      }, 10_000);
      expect(await failure(fay.confirmPayment({ orderId: placed.id, confirmationId: randomUUID() }))).toMatchObject({
        code: Code.FailedPrecondition,
        rawMessage: `cannot confirm the payment of order ${placed.id}: it is no longer waiting for a payment confirmation`,
      });
    } finally {
      await releasePayments();
    }
    expect(await settled(fay, placed.id)).toMatchObject({ status: OrderStatus.CANCELLED, cancelReason: "payment not confirmed: no 3-D Secure confirmation within 3 s" });
    expect(await payments(placed.id)).toEqual([[PaymentStatus.DECLINED, "voided"]]);
    expect(await signals(placed.id)).toEqual([]);
  });

  it("refuses a confirmation while the order is being cancelled", async () => {
    const gus = await as("gus-3ds");
    const placed = await place(gus);
    await eventually(async () => expect((await gus.getOrderTimeline({ orderId: placed.id })).sagaState).toBe(SagaState.WAITING));
    // The refund, compensation's first step, blocks on payment's table: the saga stays compensating.
    const releasePayments = await holdPayments();
    try {
      await gus.cancelOrder({ orderId: placed.id });
      await eventually(async () => expect((await gus.getOrderTimeline({ orderId: placed.id })).sagaState).toBe(SagaState.COMPENSATING));
      expect(await failure(gus.confirmPayment({ orderId: placed.id, confirmationId: randomUUID() }))).toMatchObject({
        code: Code.FailedPrecondition,
        rawMessage: `cannot confirm the payment of order ${placed.id}: it is no longer waiting for a payment confirmation`,
      });
    } finally {
      await releasePayments();
    }
    expect((await settled(gus, placed.id)).status).toBe(OrderStatus.CANCELLED);
    expect(await payments(placed.id)).toEqual([[PaymentStatus.DECLINED, "voided"]]);
  });

  it("keeps at most 16 confirmation ids per order: past them RESOURCE_EXHAUSTED names the limit", async () => {
    const hal = await as("hal-3ds");
    // The charge cannot settle while payment's table is locked: every confirmation is kept, none taken yet.
    const releasePayments = await holdPayments();
    let placed;
    const ids = Array.from({ length: 16 }, () => randomUUID());
    try {
      placed = await place(hal);
      for (const confirmationId of ids) await hal.confirmPayment({ orderId: placed.id, confirmationId });
      expect(await failure(hal.confirmPayment({ orderId: placed.id, confirmationId: randomUUID() }))).toMatchObject({
        code: Code.ResourceExhausted,
        rawMessage: `confirmation_id: order ${placed.id} has 16 confirmation ids already, the most it keeps (limit 16); repeat one of them`,
      });
      // A repeat of a kept one is still answered.
      expect((await hal.confirmPayment({ orderId: placed.id, confirmationId: ids[3]! })).order?.id).toBe(placed.id);
    } finally {
      await releasePayments();
    }
    expect((await settled(hal, placed.id)).status).toBe(OrderStatus.CONFIRMED);
    expect(await payments(placed.id)).toEqual([[PaymentStatus.CAPTURED, ""]]);
    expect(await signals(placed.id)).toHaveLength(16);
  });

  it("leaves the invariants holding, and the 3-D Secure check finds a capture without a confirmation", async () => {
    // An order of this test's own, confirmed: nothing here depends on what earlier tests left.
    const ivy = await as("ivy-3ds");
    const placed = await place(ivy);
    await eventually(async () => expect((await ivy.getOrderTimeline({ orderId: placed.id })).sagaState).toBe(SagaState.WAITING));
    await ivy.confirmPayment({ orderId: placed.id, confirmationId: randomUUID() });
    expect((await settled(ivy, placed.id)).status).toBe(OrderStatus.CONFIRMED);
    await expectInvariants(sql);
    const orderId = placed.id;
    expect(await findUnconfirmedPayments(sql, [orderId])).toEqual([`1 tok_3ds orders never confirmed by their customer did not end cancelled: ${orderId}`]);
    // Inside transactions rolled back: its confirmation gone, or arrived after the deadline,
    // or the capture before the confirmation: each reads as captured without one.
    const rollback = new Error("rolled back on purpose");
    const withinRollback = async (change: (tx: typeof sql) => Promise<unknown>) => {
      let found: string[] = [];
      await sql
        .begin(async (tx) => {
          await change(tx as unknown as typeof sql);
          found = await findUnconfirmedPayments(tx as unknown as typeof sql, []);
          throw rollback;
        })
        .catch((err: unknown) => {
          if (err !== rollback) throw err;
        });
      return found;
    };
    const saga = sql`(select id from orders.sagas where aggregate_id = ${orderId})`;
    const unconfirmed = [expect.stringMatching(new RegExp(`^1 tok_3ds orders confirmed without the customer's confirmation signal: ${orderId}$`))];
    expect(await withinRollback((tx) => tx`delete from orders.saga_signals where saga_id = ${saga}`)).toEqual(unconfirmed);
    expect(await withinRollback((tx) => tx`update orders.saga_signals set consumed_at = null where saga_id = ${saga}`)).toEqual(unconfirmed);
    expect(await withinRollback((tx) => tx`update orders.saga_waits w set due_at = g.received_at - interval '1 ms' from orders.saga_signals g where g.saga_id = w.saga_id and w.saga_id = ${saga}`)).toEqual(unconfirmed);
    expect(await withinRollback((tx) => tx`update payment.payments p set updated_at = g.received_at - interval '1 ms' from orders.saga_signals g where g.saga_id = ${saga} and p.order_id = ${orderId}`)).toEqual(unconfirmed);
  });
});
