import type { Amount } from "../domain/payment.js";

export type CaptureResult = { outcome: "captured"; reference: string } | { outcome: "declined"; reason: string };

/**
 * The port to a card network (a payment processor such as a card acquirer). Every call is
 * idempotent by its key, as real processors are, so a retry after a lost answer is safe.
 * Implementations throw CardNetworkUnavailableError for failures worth retrying.
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
