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
  /** Cancels a capture that may still be in flight; a later capture with the key declines. */
  void(request: { idempotencyKey: string }): Promise<void>;
}
