import { describe, expect, it } from "vitest";
import { UnmappableChangeError } from "./errors.js";
import { minorUnitsOf as priceToMinorUnits } from "#platform/domain/decimal-price.js";
import { fromLegacyRow } from "./product.js";

describe("the old shop's rows in the catalog's terms", () => {
  it("turns decimal prices into minor units digit by digit", () => {
    expect(priceToMinorUnits("12.99")).toBe(1299);
    expect(priceToMinorUnits("5")).toBe(500);
    expect(priceToMinorUnits("0.5")).toBe(50);
    expect(priceToMinorUnits("0.07")).toBe(7);
    // 0.29 * 100 is 28.999999999999996 in floating point.
    expect(priceToMinorUnits("0.29")).toBe(29);
    expect(priceToMinorUnits("9999999999.99")).toBe(999_999_999_999);
  });

  it("refuses what is not a non-negative decimal of at most two places", () => {
    for (const price of ["-1.00", "1.999", "1e3", "", " 1", "12.", "NaN", "10000000000"]) expect(priceToMinorUnits(price), price).toBeUndefined();
  });

  it("maps title, blurb and price, and names the field of a row it cannot map", () => {
    expect(fromLegacyRow({ sku: "MW-1", title: "Mug", blurb: "A mug.", price: "12.99", currency: "USD" })).toEqual({ sku: "MW-1", name: "Mug", description: "A mug.", priceMinor: 1299, currency: "USD" });
    expect(() => fromLegacyRow({ sku: "MW-1", title: "Mug", blurb: "", price: "1.00", currency: "usd" })).toThrow(new UnmappableChangeError("MW-1", "currency", 'must be 3 upper-case letters, got "usd"'));
    expect(() => fromLegacyRow({ sku: "MW-1", title: " ", blurb: "", price: "1.00", currency: "USD" })).toThrow(/title must not be blank/);
    expect(() => fromLegacyRow({ sku: "", title: "Mug", blurb: "", price: "1.00", currency: "USD" })).toThrow(/sku must be 1 to 128 characters/);
  });
});
