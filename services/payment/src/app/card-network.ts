import type { Amount } from "../domain/payment.js";

export type CaptureResult = { outcome: "captured"; reference: string } | { outcome: "declined"; reason: string };

/**
 * The port to a card network (a payment processor such as a card acquirer). Every call is
 * idempotent by its key, as real processors are, so a retry after a lost answer is safe.
 * A failure worth retrying is thrown as a DomainError of kind "unavailable" (the caller sees
 * UNAVAILABLE, and may retry); anything else is a bug, and reaches the caller as INTERNAL.
 */
export interface CardNetwork {
  capture(request: { idempotencyKey: string; token: string; amount: Amount }): Promise<CaptureResult>;
  refund(request: { idempotencyKey: string; reference: string; amount: Amount }): Promise<void>;
  /**
   * Settles a capture whose outcome we never learned: if the network captured it, returns
   * that capture (the caller then refunds it); otherwise it is voided, and a capture with
   * the key arriving later is declined.
   */
  void(request: { idempotencyKey: string }): Promise<CaptureResult>;
}
