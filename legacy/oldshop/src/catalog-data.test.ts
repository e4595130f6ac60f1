import { describe, expect, it } from "vitest";
import { demoCatalog } from "#services/inventory/src/domain/demo-catalog.js";
import { seedProducts } from "./catalog-data.js";

/** Minor units as the old shop's decimal string: 1299 -> "12.99". */
const decimal = (minor: number) => `${Math.trunc(minor / 100)}.${String(minor % 100).padStart(2, "0")}`;

describe("the old shop's seed", () => {
  it("is the demo catalog inventory stocks: the same SKUs, names, prices and currencies", () => {
    const bySku = (a: { sku: string }, b: { sku: string }) => a.sku.localeCompare(b.sku);
    expect(seedProducts.map(({ sku, title, price, currency }) => ({ sku, title, price, currency })).sort(bySku)).toEqual(
      demoCatalog.map(({ sku, name, priceMinor, currency }) => ({ sku, title: name, price: decimal(priceMinor), currency })).sort(bySku),
    );
    expect(seedProducts.every((p) => p.blurb.length > 0)).toBe(true);
  });
});
