import type { ConnectRouter } from "@connectrpc/connect";
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { PaymentService, PaymentSchema, PaymentStatus } from "#gen/shop/payment/v1/payment_service_pb.js";
import { toMoney } from "#shop/money.js";
import type { PaymentRow, Payments } from "../app/payments.js";
import { requireIdempotencyKey, requireOrderReference, validateCharge, type PaymentStatus as DomainStatus } from "../domain/payment.js";

export interface PaymentRouteDeps {
  payments: Payments;
}

const statusToWire: Record<DomainStatus, PaymentStatus> = {
  pending: PaymentStatus.PENDING,
  captured: PaymentStatus.CAPTURED,
  declined: PaymentStatus.DECLINED,
  refunded: PaymentStatus.REFUNDED,
  requires_action: PaymentStatus.REQUIRES_ACTION,
};

export const toPayment = (row: PaymentRow) =>
  create(PaymentSchema, {
    id: row.id,
    orderId: row.orderId,
    amount: toMoney(row.currency, row.amountMinor),
    status: statusToWire[row.status],
    declineReason: row.declineReason ?? "",
    createTime: timestampFromDate(row.createdAt),
    updateTime: timestampFromDate(row.updatedAt),
  });

/** Maps the wire contract onto payment's use cases; no business rules live here. */
export function createRoutes({ payments }: PaymentRouteDeps) {
  return (router: ConnectRouter) =>
    router.service(PaymentService, {
      async charge(req) {
        const command = validateCharge({
          orderId: req.orderId,
          amount: req.amount && { currency: req.amount.currencyCode, minorUnits: req.amount.minorUnits },
          paymentToken: req.paymentToken,
          idempotencyKey: req.idempotencyKey,
          customerConfirmed: req.customerConfirmed,
        });
        return { payment: toPayment(await payments.charge(command)) };
      },
      async refund(req) {
        const rows = await payments.refund(requireOrderReference(req.orderId), requireIdempotencyKey(req.idempotencyKey), req.reason);
        return { payments: rows.map(toPayment) };
      },
      async getPayment(req) {
        return { payments: (await payments.listForOrder(requireOrderReference(req.orderId))).map(toPayment) };
      },
    });
}
