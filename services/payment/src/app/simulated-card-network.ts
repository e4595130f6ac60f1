import { randomUUID } from "node:crypto";
import type { CardNetwork, CaptureResult } from "./card-network.js";

/**
 * A stand-in for a real card network, which cannot exist on this machine. It is a mock by
 * necessity, and the only one in the service: swap in a real processor behind CardNetwork.
 *
 * Demo tokens:
 *   tok_visa                 captured
 *   tok_3ds                  requires_action (3-D Secure) until captured again with the
 *                            customer's confirmation, then captured
 *   tok_decline              declined: card_declined
 *   tok_insufficient_funds   declined: insufficient_funds
 *   anything else            declined: unknown_token
 */
export function createSimulatedCardNetwork(): CardNetwork {
  /** Final answers by key. A challenge is not final: it waits for the confirmed capture or a void. */
  const captures = new Map<string, CaptureResult>();
  const declineReasons: Record<string, string> = { tok_decline: "card_declined", tok_insufficient_funds: "insufficient_funds" };

  return {
    async capture({ idempotencyKey, token, customerConfirmed }) {
      const previous = captures.get(idempotencyKey);
      if (previous) return previous;
      if (token === "tok_3ds" && !customerConfirmed) return { outcome: "requires_action", reason: "authentication_required" };
      const result: CaptureResult =
        token === "tok_visa" || token === "tok_3ds"
          ? { outcome: "captured", reference: `sim_${randomUUID()}` }
          : { outcome: "declined", reason: declineReasons[token] ?? "unknown_token" };
      captures.set(idempotencyKey, result);
      return result;
    },
    async refund() {},
    async void({ idempotencyKey }) {
      const settled = captures.get(idempotencyKey) ?? { outcome: "declined", reason: "voided" };
      captures.set(idempotencyKey, settled);
      return settled;
    },
  };
}
