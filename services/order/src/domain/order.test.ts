import { describe, expect, it } from "vitest";
import { assertCancellable, assertSameRequest, priceOrder, requestFingerprint, parseOrderId, validateNewOrder, type CatalogPrice } from "./order.js";

const catalog = new Map<string, CatalogPrice>([
  ["A", { sku: "A", name: "Alpha", priceMinor: 1250, currency: "USD" }],
  ["B", { sku: "B", name: "Beta", priceMinor: 99, currency: "USD" }],
  ["E", { sku: "E", name: "Euro thing", priceMinor: 500, currency: "EUR" }],
]);
const valid = { customerId: "c1", items: [{ sku: "A", quantity: 1 }], paymentToken: "tok_visa", requestId: "r1" };

describe("validateNewOrder", () => {
  it.each([
    [{ customerId: "" }, "customer_id: is required"],
    [{ items: [] }, "items: must not be empty"],
    [{ items: [{ sku: "A", quantity: 0 }] }, "items[0].quantity: must be greater than 0"],
    [{ items: [{ sku: "A", quantity: 1 }, { sku: "B", quantity: -3 }] }, "items[1].quantity: must be greater than 0"],
    [{ items: [{ sku: " ", quantity: 1 }] }, "items[0].sku: is required"],
    [{ paymentToken: "" }, "payment_token: is required"],
    [{ requestId: "" }, "request_id: is required"],
    [{ customerId: "x".repeat(129) }, "customer_id: must be at most 128 characters"],
  ])("rejects %o with the field named", (patch, message) => {
    expect(() => validateNewOrder({ ...valid, ...patch })).toThrow(message);
  });

  it("accepts a well-formed order", () => {
    expect(validateNewOrder(valid)).toEqual(valid);
  });
});

describe("priceOrder", () => {
  it("prices from the catalog and merges repeated SKUs", () => {
    const priced = priceOrder(
      [
        { sku: "A", quantity: 2 },
        { sku: "B", quantity: 1 },
        { sku: "A", quantity: 1 },
      ],
      catalog,
    );
    expect(priced.lines).toEqual([
      { sku: "A", name: "Alpha", quantity: 3, unitPriceMinor: 1250 },
      { sku: "B", name: "Beta", quantity: 1, unitPriceMinor: 99 },
    ]);
    expect(priced.totalMinor).toBe(3 * 1250 + 99);
    expect(priced.currency).toBe("USD");
  });

  it("bounds the merged quantity of a SKU", () => {
    expect(() => priceOrder([{ sku: "A", quantity: 6000 }, { sku: "A", quantity: 6000 }], catalog)).toThrow("items[1].quantity: brings A to 12000; at most 10000 per SKU");
  });

  it("names the unknown SKU's field", () => {
    expect(() => priceOrder([{ sku: "A", quantity: 1 }, { sku: "Z", quantity: 1 }], catalog)).toThrow('items[1].sku: unknown SKU "Z"');
  });

  it("refuses to mix currencies", () => {
    expect(() => priceOrder([{ sku: "A", quantity: 1 }, { sku: "E", quantity: 1 }], catalog)).toThrow(/mixes currencies/);
  });
});

describe("order rules", () => {
  it("requires a UUID order id", () => {
    expect(() => parseOrderId("abc")).toThrow("order_id: must be a UUID");
    expect(parseOrderId("A47C7E31-90C3-4B87-A20F-56B3A60C588E")).toBe("a47c7e31-90c3-4b87-a20f-56b3a60c588e");
  });

  it("never cancels a confirmed order", () => {
    expect(() => assertCancellable("o1", "confirmed")).toThrow("cannot cancel order o1: it is confirmed");
    expect(() => assertCancellable("o1", "pending")).not.toThrow();
  });
});

describe("requestFingerprint", () => {
  it("is the same for the same order however its lines are listed, and differs for any other", () => {
    const base = { ...valid, items: [{ sku: "A", quantity: 2 }, { sku: "B", quantity: 1 }] };
    const same = [{ ...base, items: [{ sku: "B", quantity: 1 }, { sku: "A", quantity: 1 }, { sku: "A", quantity: 1 }] }, { ...base, requestId: "other" }];
    for (const order of same) expect(requestFingerprint(order)).toBe(requestFingerprint(base));
    const different = [{ ...base, items: [{ sku: "A", quantity: 3 }, { sku: "B", quantity: 1 }] }, { ...base, paymentToken: "tok_decline" }, { ...base, customerId: "c2" }];
    for (const order of different) expect(requestFingerprint(order)).not.toBe(requestFingerprint(base));
    expect(() => assertSameRequest(requestFingerprint(base), requestFingerprint(different[0]!))).toThrow("request_id: already used for a different order");
    expect(() => assertSameRequest(null, requestFingerprint(base))).not.toThrow();
  });
});
