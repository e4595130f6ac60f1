import { resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openDatabase, type Database } from "#platform";
import { connect, createTestDatabase } from "#tests/support/databases.js";
import { silentLogger } from "#tests/support/silent-logger.js";
import { tables } from "../db/schema.js";
import type { CardNetwork } from "./card-network.js";
import { createPayments, type Payments } from "./payments.js";
import { createSimulatedCardNetwork } from "./simulated-card-network.js";

/** The simulated network, counting what reaches it. */
function countingNetwork() {
  const inner = createSimulatedCardNetwork();
  const calls = { capture: 0, refund: 0, void: 0 };
  const network: CardNetwork = {
    capture: (r) => (calls.capture++, inner.capture(r)),
    refund: (r) => (calls.refund++, inner.refund(r)),
    void: (r) => (calls.void++, inner.void(r)),
  };
  return { network, calls };
}

const usd = (minorUnits: number) => ({ currency: "USD", minorUnits });

describe("payments against real Postgres", () => {
  let database: Database<typeof tables>;
  let sql: ReturnType<typeof connect>;
  let payments: Payments;
  let calls: ReturnType<typeof countingNetwork>["calls"];

  beforeAll(async () => {
    const url = await createTestDatabase();
    database = await openDatabase({ url, schemaName: "payment", tables, migrationsFolder: resolve(import.meta.dirname, "../../migrations"), logger: silentLogger });
    const counting = countingNetwork();
    calls = counting.calls;
    payments = createPayments(database.db, counting.network);
    sql = connect(url);
  });
  afterAll(async () => {
    await sql.end();
    await database.close();
  });

  it("charges once per idempotency key, even when retried concurrently", async () => {
    const command = { orderId: "o1", amount: usd(2599), paymentToken: "tok_visa", idempotencyKey: "k1", customerConfirmed: false };
    const results = await Promise.all(Array.from({ length: 5 }, () => payments.charge(command)));
    expect(new Set(results.map((p) => p.id)).size).toBe(1);
    expect(results.every((p) => p.status === "captured")).toBe(true);
    const rows = await sql`select status, amount_minor from payment.payments where order_id = 'o1'`;
    expect(rows).toEqual([{ status: "captured", amount_minor: "2599" }]);
    const events = await sql`select event_type from payment.outbox where aggregate_id = 'o1'`;
    expect(events.map((e) => e["event_type"])).toEqual(["shop.payment.v1.PaymentCaptured"]);
  });

  it("records a decline with its reason", async () => {
    const payment = await payments.charge({ orderId: "o2", amount: usd(100), paymentToken: "tok_decline", idempotencyKey: "k2", customerConfirmed: false });
    expect(payment).toMatchObject({ status: "declined", declineReason: "card_declined" });
    const again = await payments.charge({ orderId: "o2", amount: usd(100), paymentToken: "tok_decline", idempotencyKey: "k2", customerConfirmed: false });
    expect(again.id).toBe(payment.id);
  });

  it("rejects a key reused for a different charge", async () => {
    await expect(payments.charge({ orderId: "o1", amount: usd(1), paymentToken: "tok_visa", idempotencyKey: "k1", customerConfirmed: false })).rejects.toMatchObject({
      kind: "failed_precondition",
    });
  });

  it("refunds captured payments once", async () => {
    const before = calls.refund;
    const first = await payments.refund("o1", "r1", "order cancelled");
    const second = await payments.refund("o1", "r1", "order cancelled");
    expect(first.map((p) => p.status)).toEqual(["refunded"]);
    expect(second.map((p) => p.status)).toEqual(["refunded"]);
    expect(calls.refund - before).toBe(1);
    expect(await payments.refund("no-such-order", "r2", "x")).toEqual([]);
  });

  it("refunds a capture that completed while its refund was deciding", async () => {
    // The network captured k4, but the answer never reached the database (a crash, or a
    // retry still in flight): the row is still pending when the saga compensates.
    await sql`insert into payment.payments (id, order_id, idempotency_key, amount_minor, currency, status)
              values (gen_random_uuid(), 'o4', 'k4', 700, 'USD', 'pending')`;
    const { network } = countingNetwork();
    await network.capture({ idempotencyKey: "k4", token: "tok_visa", amount: usd(700) });
    const withCapture = createPayments(database.db, network);
    const [refunded] = await withCapture.refund("o4", "r4", "order cancelled");
    expect(refunded).toMatchObject({ status: "refunded" });
    const events = await sql`select event_type from payment.outbox where aggregate_id = 'o4'`;
    expect(events.map((e) => e["event_type"])).toEqual(["shop.payment.v1.PaymentRefunded"]);
  });

  it("declines a charge that arrives after its order was refunded", async () => {
    expect(await payments.refund("o5", "r5", "order cancelled")).toEqual([]);
    const late = await payments.charge({ orderId: "o5", amount: usd(300), paymentToken: "tok_visa", idempotencyKey: "k5", customerConfirmed: false });
    expect(late).toMatchObject({ status: "declined", declineReason: "order_voided" });
  });

  it("voids a charge whose outcome is unknown, so it can never capture later", async () => {
    await sql`insert into payment.payments (id, order_id, idempotency_key, amount_minor, currency, status)
              values (gen_random_uuid(), 'o3', 'k3', 500, 'USD', 'pending')`;
    const [voided] = await payments.refund("o3", "r3", "order cancelled");
    expect(voided).toMatchObject({ status: "declined", declineReason: "voided" });
    const retried = await payments.charge({ orderId: "o3", amount: usd(500), paymentToken: "tok_visa", idempotencyKey: "k3", customerConfirmed: false });
    expect(retried.status).toBe("declined");
  });
  it("holds a 3-D Secure charge until the customer confirms, then captures it once", async () => {
    const command = { orderId: "o6", amount: usd(1200), paymentToken: "tok_3ds", idempotencyKey: "k6", customerConfirmed: false };
    const challenged = await payments.charge(command);
    expect(challenged).toMatchObject({ status: "requires_action", declineReason: null });
    expect((await payments.charge(command)).status).toBe("requires_action"); // a retry before the confirmation
    const confirmed = await Promise.all(Array.from({ length: 3 }, () => payments.charge({ ...command, customerConfirmed: true })));
    expect(confirmed.map((p) => [p.id, p.status])).toEqual(confirmed.map(() => [challenged.id, "captured"]));
    // A retry of the unconfirmed call, arriving late, finds the capture.
    expect((await payments.charge(command)).status).toBe("captured");
    const events = await sql`select event_type from payment.outbox where aggregate_id = 'o6' order by seq`;
    expect(events.map((e) => e["event_type"])).toEqual(["shop.payment.v1.PaymentActionRequired", "shop.payment.v1.PaymentCaptured"]);
  });

  it("voids a charge awaiting confirmation when its order is refunded: no money moves, a later confirmation declines", async () => {
    const before = { ...calls };
    const command = { orderId: "o7", amount: usd(900), paymentToken: "tok_3ds", idempotencyKey: "k7", customerConfirmed: false };
    expect((await payments.charge(command)).status).toBe("requires_action");
    const [voided] = await payments.refund("o7", "r7", "order cancelled");
    expect(voided).toMatchObject({ status: "declined", declineReason: "voided" });
    expect(calls.refund - before.refund).toBe(0); // nothing was captured, so nothing is returned
    expect(await payments.charge({ ...command, customerConfirmed: true })).toMatchObject({ status: "declined", declineReason: "voided" });
    const events = await sql`select event_type from payment.outbox where aggregate_id = 'o7' order by seq`;
    expect(events.map((e) => e["event_type"])).toEqual(["shop.payment.v1.PaymentActionRequired"]);
  });
});
