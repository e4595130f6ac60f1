import type { Amount } from "../domain/payment.js";

/**
 * What a capture came to. `requires_action`: the issuer wants the cardholder to confirm
 * (3-D Secure) before it captures; nothing has moved, and `reason` says why, as a network's
 * decline code would ("authentication_required"), for a caller that cannot ask the customer.
 */
export type CaptureResult =
  | { outcome: "captured"; reference: string }
  | { outcome: "declined"; reason: string }
  | { outcome: "requires_action"; reason: string };

/**
 * The port to a card network (a payment processor such as a card acquirer). Every call is
 * idempotent by its key, as real processors are, so a retry after a lost answer is safe.
 * A failure worth retrying is thrown as a DomainError of kind "unavailable" (the caller sees
 * UNAVAILABLE, and may retry); anything else is a bug, and reaches the caller as INTERNAL.
 */
export interface CardNetwork {
  /**
   * Captures, or answers `requires_action` where the cardholder must confirm first; a capture
   * with the same key and `customerConfirmed` once they have then settles it.
   */
  capture(request: { idempotencyKey: string; token: string; amount: Amount; customerConfirmed?: boolean }): Promise<CaptureResult>;
  refund(request: { idempotencyKey: string; reference: string; amount: Amount }): Promise<void>;
  /**
   * Settles a capture whose outcome we never learned, or one still awaiting the cardholder's
   * confirmation: if the network captured it, returns that capture (the caller then refunds
   * it); otherwise it is voided, and a capture with the key arriving later is declined.
   */
  void(request: { idempotencyKey: string }): Promise<CaptureResult>;
}
