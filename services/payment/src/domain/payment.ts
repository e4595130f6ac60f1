import { InvalidArgumentError } from "#platform/domain/errors.js";
import { requireText } from "#platform/domain/input.js";

/** requires_action: the card network asks for the customer's confirmation (3-D Secure); no money has moved. */
export type PaymentStatus = "pending" | "captured" | "declined" | "refunded" | "requires_action";

export interface Amount {
  currency: string;
  minorUnits: number;
}

export interface ChargeCommand {
  orderId: string;
  amount: Amount;
  paymentToken: string;
  idempotencyKey: string;
  /** The customer has confirmed the payment (3-D Secure), so a charge awaiting it may capture. */
  customerConfirmed: boolean;
}

/** Another context's order, as payment knows it: an opaque id (order's are UUIDs, but payment never relies on it). */
export const requireOrderReference = (orderId: string) => requireText(orderId, "order_id");
export const requireIdempotencyKey = (key: string) => requireText(key, "idempotency_key");

export function validateCharge(command: {
  orderId: string;
  amount: { currency: string; minorUnits: bigint } | undefined;
  paymentToken: string;
  idempotencyKey: string;
  customerConfirmed: boolean;
}): ChargeCommand {
  const { amount } = command;
  if (!amount) throw new InvalidArgumentError("amount", "is required");
  if (!/^[A-Z]{3}$/.test(amount.currency)) throw new InvalidArgumentError("amount.currency_code", "must be an ISO 4217 code such as USD");
  if (amount.minorUnits <= 0n) throw new InvalidArgumentError("amount.minor_units", "must be greater than 0");
  if (amount.minorUnits > BigInt(Number.MAX_SAFE_INTEGER)) throw new InvalidArgumentError("amount.minor_units", "is too large");
  return {
    orderId: requireOrderReference(command.orderId),
    amount: { currency: amount.currency, minorUnits: Number(amount.minorUnits) },
    paymentToken: requireText(command.paymentToken, "payment_token"),
    idempotencyKey: requireIdempotencyKey(command.idempotencyKey),
    customerConfirmed: command.customerConfirmed,
  };
}

/** A key replayed with different terms is a client bug, not a retry. */
export function isSameCharge(existing: { orderId: string; amount: Amount }, command: ChargeCommand): boolean {
  return (
    existing.orderId === command.orderId &&
    existing.amount.currency === command.amount.currency &&
    existing.amount.minorUnits === command.amount.minorUnits
  );
}
