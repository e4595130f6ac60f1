import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { OrderStatus, SagaPhaseKind, SagaState } from "#gen/shop/order/v1/order_service_pb.js";
import { PaymentStatus } from "#gen/shop/payment/v1/payment_service_pb.js";
import { ReservationStatus } from "#gen/shop/inventory/v1/inventory_service_pb.js";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { CUSTOMER_HEADER } from "#platform/trust/mesh-identity.js";
import { connect } from "../support/databases.js";
import { eventually } from "../support/eventually.js";
import { expectInvariants } from "../support/invariants.js";
import { startProcessMesh, type ProcessMesh } from "../support/process-mesh.js";

/**
 * A saga waiting for a 3-D Secure confirmation holds no process and no lease: its wait is a
 * row. The order process is SIGKILLed for real while it waits, and the supervisor restarts
 * it, as in saga-crash.test.ts.
 */
describe("a 3-D Secure wait survives the order process", () => {
  // Long enough to outlast a restart of order with a confirmation to spare.
  const threeDsTimeoutMs = 15_000;
  let mesh: ProcessMesh;
  let sql: ReturnType<typeof connect>;

  beforeAll(async () => {
    mesh = await startProcessMesh({ env: { SAGA_LEASE_MS: "5000", SAGA_SWEEP_MS: "300", SAGA_STEP_TIMEOUT_MS: "1500", THREE_DS_TIMEOUT_MS: String(threeDsTimeoutMs) } });
    sql = connect(mesh.databaseUrl);
  });
  afterAll(async () => {
    await sql?.end();
    await mesh?.stop();
  });

  const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

  async function placeWaiting(customerId: string) {
    const { order } = await mesh.order.createOrder({ customerId, items: [{ sku: "MW-STK-003", quantity: 1 }], paymentToken: "tok_3ds", requestId: randomUUID() });
    const orderId = order!.id;
    // Waiting for the signal: the saga's state, and the wait's due time from its phase.
    const dueAt = await eventually(async () => {
      const { saga } = await mesh.order.getOrder({ orderId });
      expect(saga?.state).toBe(SagaState.WAITING);
      const wait = saga!.steps.find((s) => s.name === "charge")!.phases.find((p) => p.kind === SagaPhaseKind.SIGNAL && p.outcome === "waiting");
      expect(wait?.dueTime).toBeDefined();
      return timestampDate(wait!.dueTime!);
    }, 20_000);
    return { orderId, dueAt };
  }

  async function settled(orderId: string) {
    return eventually(async () => {
      const { order } = await mesh.order.getOrder({ orderId });
      expect(order?.status).not.toBe(OrderStatus.PENDING);
      return order!;
    }, 30_000);
  }

  /**
   * SIGKILLs every order process the supervisor starts until `until`, so order stays down
   * across that moment whatever its restart takes. Bounded by `until`.
   */
  async function keepOrderDown(until: Date) {
    const killed = new Set<number>();
    while (Date.now() < until.getTime()) {
      const pid = mesh.supervisor.pid("order");
      if (pid !== undefined && !killed.has(pid)) {
        killed.add(pid);
        process.kill(pid, "SIGKILL");
      }
      await sleep(20);
    }
    return killed.size;
  }

  it("order killed while a saga waits for the confirmation: still waiting after the restart, confirmed once", async () => {
    const { orderId, dueAt } = await placeWaiting("three-ds-crash-a");
    const killed = mesh.supervisor.pid("order");
    mesh.kill("order");
    await eventually(() => expect(mesh.supervisor.pid("order")).not.toBe(killed), 20_000);
    await mesh.supervisor.waitUntilServing(30_000);
    // The new process has nothing to run: the saga waits, as its rows say.
    expect((await mesh.order.getOrder({ orderId })).saga?.state).toBe(SagaState.WAITING);
    expect(Date.now()).toBeLessThan(dueAt.getTime()); // or the test proves nothing
    await mesh.order.confirmPayment({ orderId, confirmationId: randomUUID() }, { headers: { [CUSTOMER_HEADER]: "three-ds-crash-a" } });
    expect((await settled(orderId)).status).toBe(OrderStatus.CONFIRMED);
    expect((await mesh.payment.getPayment({ orderId })).payments.map((p) => p.status)).toEqual([PaymentStatus.CAPTURED]);
    await expectInvariants(sql);
  });

  it("the wait times out while order is down: after the restart the saga compensates", async () => {
    const { orderId, dueAt } = await placeWaiting("three-ds-crash-b");
    // Down from shortly before the deadline until shortly after it.
    await sleep(Math.max(0, dueAt.getTime() - Date.now() - 1_000));
    expect(await keepOrderDown(new Date(dueAt.getTime() + 1_000))).toBeGreaterThan(0);
    const order = await settled(orderId);
    expect(order.status).toBe(OrderStatus.CANCELLED);
    expect((await mesh.payment.getPayment({ orderId })).payments.map((p) => [p.status, p.declineReason])).toEqual([[PaymentStatus.DECLINED, "voided"]]);
    expect((await mesh.inventory.getReservation({ orderId })).reservation?.status).toBe(ReservationStatus.RELEASED);
    const { saga } = await mesh.order.getOrder({ orderId });
    expect(saga?.state).toBe(SagaState.COMPENSATED);
    expect(saga!.steps.find((s) => s.name === "charge")!.phases.map((p) => [p.kind, p.outcome])).toContainEqual([SagaPhaseKind.SIGNAL, "timed-out"]);
    await expectInvariants(sql);
  });
});
