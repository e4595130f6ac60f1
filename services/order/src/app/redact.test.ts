import { describe, expect, it } from "vitest";
import { redactPaymentTokens } from "./redact.js";

describe("redactPaymentTokens", () => {
  it("hides a token under a token key, whatever its format, and leaves the rest", () => {
    const payload = { orderId: "o1", items: [{ sku: "MW-MUG-001", quantity: 2 }], totalMinor: 2400, paymentToken: "pm_4242 secret" };
    expect(redactPaymentTokens(payload)).toEqual({ orderId: "o1", items: [{ sku: "MW-MUG-001", quantity: 2 }], totalMinor: 2400, paymentToken: "[redacted]" });
    expect(payload.paymentToken).toBe("pm_4242 secret"); // a copy: the stored payload keeps it
  });

  it("hides tok_ tokens inside free text and nested values", () => {
    expect(redactPaymentTokens("charge: [invalid_argument] payment_token: unknown token tok_visa_9f3a")).toBe("charge: [invalid_argument] payment_token: unknown token [redacted]");
    expect(redactPaymentTokens({ steps: [{ lastError: "tok_decline declined" }] })).toEqual({ steps: [{ lastError: "[redacted] declined" }] });
  });

  it("keeps text without tokens, dates and empty values as they are", () => {
    const at = new Date(0);
    expect(redactPaymentTokens({ note: "stock_token_count is not a token value", at, none: null })).toEqual({ note: "stock_token_count is not a token value", at, none: null });
  });
});
