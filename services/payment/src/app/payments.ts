import { randomUUID } from "node:crypto";
import { and, asc, eq, inArray, sql } from "drizzle-orm";
import type { PostgresJsDatabase } from "drizzle-orm/postgres-js";
import { create } from "@bufbuild/protobuf";
import { rowsOf, appendToOutbox, outboxAppend, type SqlExecutor } from "#platform";
import { toMoney } from "#shop/money.js";
import { PaymentActionRequiredSchema, PaymentCapturedSchema, PaymentDeclinedSchema, PaymentRefundedSchema } from "#gen/shop/payment/v1/payment_events_pb.js";
import { IdempotencyKeyReusedError } from "../domain/errors.js";
import { isSameCharge, type ChargeCommand } from "../domain/payment.js";
import { outbox, payments, voidedOrders, type tables } from "../db/schema.js";
import type { CaptureResult, CardNetwork } from "./card-network.js";

type Db = PostgresJsDatabase<typeof tables>;
export type PaymentRow = typeof payments.$inferSelect;
type Settled = Pick<PaymentRow, "status" | "providerReference" | "declineReason">;

/** Payment's use cases. */
export interface Payments {
  charge(command: ChargeCommand): Promise<PaymentRow>;
  refund(orderId: string, idempotencyKey: string, reason: string): Promise<PaymentRow[]>;
  listForOrder(orderId: string): Promise<PaymentRow[]>;
}

const money = (row: PaymentRow) => toMoney(row.currency, row.amountMinor);
const aggregate = (row: PaymentRow) => ({ aggregateType: "payment", aggregateId: row.orderId });

/**
 * A charge is recorded as `pending` before the card network is called and settled after,
 * so a crash in between leaves a row that a retry with the same key completes, never a
 * capture the database does not know about. Charges and refunds of one order serialize on
 * a transaction-scoped advisory lock, and a refund leaves a voided-order marker, so a
 * charge that arrives after its order was given up is declined instead of captured.
 *
 * A charge the network answers `requires_action` (3-D Secure) stays open, with no money
 * moved, until the same key is charged again with the customer's confirmation (it then
 * settles as any pending charge does) or the order is refunded (it is voided).
 */
export function createPayments(db: Db, network: CardNetwork): Payments {
  const lockOrder = (tx: SqlExecutor, orderId: string) => tx.execute(sql`select pg_advisory_xact_lock(hashtext(${`payment:order:${orderId}`}))`);

  async function recordIntent(command: ChargeCommand): Promise<PaymentRow> {
    return db.transaction(async (tx) => {
      // Its own statement: the insert's snapshot must be taken once the lock is ours, so it
      // sees a refund's voided marker committed while this waited.
      await lockOrder(tx, command.orderId);
      const voided = sql`exists (select from ${voidedOrders} where ${voidedOrders.orderId} = ${command.orderId})`;
      const [inserted] = await tx
        .insert(payments)
        .values({
          id: randomUUID(),
          orderId: command.orderId,
          idempotencyKey: command.idempotencyKey,
          amountMinor: command.amount.minorUnits,
          currency: command.amount.currency,
          status: sql`case when ${voided} then 'declined' else 'pending' end`,
          declineReason: sql`case when ${voided} then 'order_voided' end`,
        })
        .onConflictDoNothing({ target: payments.idempotencyKey })
        .returning();
      // A repeat of the key: its first charge's row answers, if it was for the same charge.
      const row = inserted ?? (await tx.select().from(payments).where(eq(payments.idempotencyKey, command.idempotencyKey)))[0];
      if (!row) throw new Error(`payment ${command.idempotencyKey} vanished after insert`);
      if (!isSameCharge({ orderId: row.orderId, amount: { currency: row.currency, minorUnits: row.amountMinor } }, command)) {
        throw new IdempotencyKeyReusedError(command.idempotencyKey);
      }
      return row;
    });
  }

  /**
   * Records the card network's answer and its event in one statement, atomic without BEGIN
   * and COMMIT: the event is appended only if the row was still open. A challenge settles
   * only a pending row, so a late one never reopens a charge that captured meanwhile.
   */
  async function settle(open: PaymentRow, command: ChargeCommand): Promise<PaymentRow> {
    const result = await network.capture({
      idempotencyKey: command.idempotencyKey,
      token: command.paymentToken,
      amount: command.amount,
      customerConfirmed: command.customerConfirmed,
    });
    const { outcome, event } = answerOf(open, result);
    const from = outcome.status === "requires_action" ? ["pending"] : ["pending", "requires_action"];
    const appended = outboxAppend(outbox, [{ ...event, ...aggregate(open) }], sql`exists (select from settled)`);
    const [settled] = await rowsOf<{ updatedAt: string | null }>(db, sql`
      with settled as (
        update ${payments} set status = ${outcome.status}, provider_reference = ${outcome.providerReference}::text,
          decline_reason = ${outcome.declineReason}::text, updated_at = now()
        where id = ${open.id}::uuid and status in ${from} returning updated_at),
      ${appended.cte}
      select (select updated_at from settled) as "updatedAt", ${appended.notify} as notified`);
    // A concurrent retry or a refund settled it first; its answer is the answer.
    if (settled?.updatedAt == null) return (await db.select().from(payments).where(eq(payments.id, open.id)))[0]!;
    return { ...open, ...outcome, updatedAt: payments.updatedAt.mapFromDriverValue(settled.updatedAt) as Date };
  }

  /** The row's new state for the network's answer, and the event that announces it. */
  function answerOf(open: PaymentRow, result: CaptureResult) {
    const fields = { paymentId: open.id, orderId: open.orderId, amount: money(open) };
    switch (result.outcome) {
      case "captured":
        return {
          outcome: { status: "captured", providerReference: result.reference, declineReason: open.declineReason } satisfies Settled,
          event: { schema: PaymentCapturedSchema, message: create(PaymentCapturedSchema, fields) },
        };
      case "requires_action":
        return {
          outcome: { status: "requires_action", providerReference: open.providerReference, declineReason: null } satisfies Settled,
          event: { schema: PaymentActionRequiredSchema, message: create(PaymentActionRequiredSchema, fields) },
        };
      case "declined":
        return {
          outcome: { status: "declined", providerReference: open.providerReference, declineReason: result.reason } satisfies Settled,
          event: { schema: PaymentDeclinedSchema, message: create(PaymentDeclinedSchema, { ...fields, reason: result.reason }) },
        };
    }
  }

  async function refundCapture(tx: SqlExecutor, row: PaymentRow, reference: string, idempotencyKey: string, reason: string) {
    await network.refund({ idempotencyKey: `${idempotencyKey}:${row.id}`, reference, amount: { currency: row.currency, minorUnits: row.amountMinor } });
    await tx.update(payments).set({ status: "refunded", providerReference: reference, updatedAt: sql`now()` }).where(eq(payments.id, row.id));
    await appendToOutbox(tx, outbox, [
      { schema: PaymentRefundedSchema, message: create(PaymentRefundedSchema, { paymentId: row.id, orderId: row.orderId, amount: money(row), reason }), ...aggregate(row) },
    ]);
  }

  return {
    async charge(command) {
      const row = await recordIntent(command);
      const open = row.status === "pending" || (row.status === "requires_action" && command.customerConfirmed);
      return open ? settle(row, command) : row;
    },

    async refund(orderId, idempotencyKey, reason) {
      return db.transaction(async (tx) => {
        await lockOrder(tx, orderId);
        await tx.insert(voidedOrders).values({ orderId, reason }).onConflictDoNothing();
        const open = await tx
          .select()
          .from(payments)
          .where(and(eq(payments.orderId, orderId), inArray(payments.status, ["pending", "requires_action", "captured"])))
          .for("update");
        for (const row of open) {
          if (row.status === "captured") {
            await refundCapture(tx, row, row.providerReference ?? "", idempotencyKey, reason);
            continue;
          }
          // The capture's outcome is unknown (its call is in flight, or was lost in a crash), or
          // it awaits the customer's confirmation: either way it is voided unless it captured.
          const outcome = await network.void({ idempotencyKey: row.idempotencyKey });
          if (outcome.outcome === "captured") await refundCapture(tx, row, outcome.reference, idempotencyKey, reason);
          else await tx.update(payments).set({ status: "declined", declineReason: "voided", updatedAt: sql`now()` }).where(eq(payments.id, row.id));
        }
        return tx.select().from(payments).where(eq(payments.orderId, orderId)).orderBy(asc(payments.createdAt));
      });
    },

    listForOrder(orderId) {
      return db.select().from(payments).where(eq(payments.orderId, orderId)).orderBy(asc(payments.createdAt));
    },
  };
}
