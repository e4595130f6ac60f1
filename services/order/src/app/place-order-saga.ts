import { Code, ConnectError, type Client } from "@connectrpc/connect";
import { SignalTimeoutError, StepRejectedError, type SagaDefinition } from "#platform";
import { toMoney } from "#shop/money.js";
import { InventoryService, ReservationStatus } from "#gen/shop/inventory/v1/inventory_service_pb.js";
import { PaymentService, PaymentStatus } from "#gen/shop/payment/v1/payment_service_pb.js";
import type { OrderStore } from "./order-store.js";

/** What the saga needs, captured when the order is placed. */
export interface PlaceOrderPayload {
  orderId: string;
  /** Absent from sagas persisted before it was added; confirming then reads it. */
  customerId?: string;
  items: { sku: string; quantity: number }[];
  currency: string;
  totalMinor: number;
  paymentToken: string;
}

/** The signal ConfirmPayment delivers: the customer confirmed a 3-D Secure payment. */
export const paymentConfirmedSignal = "payment-confirmed";

/** How long a charge waits for the customer's confirmation by default (THREE_DS_TIMEOUT_MS). */
export const defaultThreeDsTimeoutMs = 10 * 60_000;

/** Codes with which a participant says "no" for good; retrying them cannot help. */
const definitiveCodes = new Set([Code.InvalidArgument, Code.FailedPrecondition, Code.NotFound, Code.AlreadyExists, Code.OutOfRange]);

async function rejectDefinitiveErrors<T>(prefix: string, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (err) {
    if (err instanceof ConnectError && definitiveCodes.has(err.code)) throw new StepRejectedError(`${prefix}: ${err.rawMessage}`);
    throw err;
  }
}

/**
 * The place-order saga: reserve stock, charge, confirm, commit the reservation. Confirming
 * is the point of no return; before it, any "no" releases the stock and refunds the charge.
 * A charge the card network holds for the customer's 3-D Secure confirmation waits for
 * the signal ConfirmPayment delivers, up to `threeDsTimeoutMs`; past that the saga
 * compensates, and the refund voids the charge.
 */
export function createPlaceOrderSaga(deps: {
  inventory: Client<typeof InventoryService>;
  payment: Client<typeof PaymentService>;
  store: OrderStore;
  threeDsTimeoutMs: number;
}): SagaDefinition<PlaceOrderPayload> {
  const { inventory, payment, store, threeDsTimeoutMs } = deps;
  return {
    type: "place-order",
    version: 1,
    steps: [
      {
        name: "reserve-stock",
        async run({ orderId, items }, { signal }) {
          const { reservation } = await rejectDefinitiveErrors("out of stock", () => inventory.reserveStock({ orderId, items }, { signal }));
          if (reservation?.status !== ReservationStatus.RESERVED) throw new StepRejectedError("stock reservation was already released");
        },
        async compensate({ orderId }, { signal }) {
          await inventory.releaseStock({ orderId }, { signal });
        },
      },
      {
        name: "charge",
        async run({ orderId, currency, totalMinor, paymentToken }, ctx) {
          const { idempotencyKey, signal } = ctx;
          const amount = toMoney(currency, totalMinor);
          const charge = async (customerConfirmed: boolean) =>
            (await rejectDefinitiveErrors("payment failed", () => payment.charge({ orderId, amount, paymentToken, idempotencyKey, customerConfirmed }, { signal }))).payment;
          let result = await charge(false);
          if (result?.status === PaymentStatus.REQUIRES_ACTION) {
            // The saga suspends here, holding no process, and the step runs again from the top
            // once the signal is in: the first charge then answers from its row, unchanged.
            await ctx.awaitSignal(paymentConfirmedSignal, { timeoutMs: threeDsTimeoutMs }).catch((err: unknown) => {
              // Said as the customer reads it, in the order's cancel reason.
              throw err instanceof SignalTimeoutError ? new StepRejectedError(`payment not confirmed: no 3-D Secure confirmation within ${threeDsTimeoutMs / 1000} s`) : err;
            });
            result = await charge(true);
          }
          if (result?.status === PaymentStatus.DECLINED) throw new StepRejectedError(`payment declined: ${result.declineReason}`);
          if (result?.status !== PaymentStatus.CAPTURED) throw new Error(`charge is ${result ? PaymentStatus[result.status] : "missing"}; retrying`);
        },
        async compensate({ orderId }, { idempotencyKey, signal }) {
          await payment.refund({ orderId, idempotencyKey, reason: "order cancelled" }, { signal });
        },
      },
      {
        name: "confirm-order",
        async run(order) {
          const { orderId } = order;
          const status = await store.confirm(order);
          if (status !== "confirmed") throw new Error(`order ${orderId} is ${status}; cannot confirm`);
        },
      },
      {
        name: "commit-reservation",
        async run({ orderId }, { signal }) {
          await inventory.commitReservation({ orderId }, { signal });
        },
      },
    ],
    onCompensated: (tx, { orderId }, reason) => store.cancel(tx, orderId, reason),
  };
}
