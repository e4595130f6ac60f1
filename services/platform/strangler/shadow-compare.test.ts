import { describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { ListProductsResponseSchema as CatalogList } from "#gen/shop/catalog/v1/catalog_service_pb.js";
import { ListProductsResponseSchema as InventoryList } from "#gen/shop/inventory/v1/inventory_service_pb.js";
import { MoneySchema } from "#gen/shop/common/v1/money_pb.js";
import { compareMessages } from "./shadow-compare.js";

const money = (minorUnits: number, currencyCode = "USD") => create(MoneySchema, { currencyCode, minorUnits: BigInt(minorUnits) });
const mug = { sku: "MW-MUG-001", name: "Mesh mug", description: "Holds coffee.", price: money(1299) };
const tee = { sku: "MW-TEE-002", name: "Mesh tee", description: "Cotton.", price: money(2499) };
const catalog = (...products: (typeof mug)[]) => create(CatalogList, { products });
const byKey = { keyBy: { products: "sku" } };

describe("compareMessages", () => {
  it("finds no difference between equal answers, whatever their order", () => {
    expect(compareMessages(CatalogList, catalog(mug, tee), catalog(tee, mug), byKey)).toEqual({ differences: [], more: 0 });
  });

  it("names a differing price by SKU and proto field, with both values as JSON", () => {
    const result = compareMessages(CatalogList, catalog(mug, tee), catalog(mug, { ...tee, price: money(2599) }), byKey);
    expect(result).toEqual({ differences: [{ path: "products[MW-TEE-002].price.minor_units", legacy: '"2499"', new: '"2599"' }], more: 0 });
  });

  it("reports a product one side lacks once, at its SKU", () => {
    const result = compareMessages(CatalogList, catalog(mug, tee), catalog(tee), byKey);
    expect(result.differences).toHaveLength(1);
    expect(result.differences[0]).toMatchObject({ path: "products[MW-MUG-001]", new: "(absent)" });
    expect(JSON.parse(result.differences[0]!.legacy)).toMatchObject({ sku: "MW-MUG-001", name: "Mesh mug" });
    expect(compareMessages(CatalogList, catalog(tee), catalog(mug, tee), byKey).differences).toEqual([expect.objectContaining({ path: "products[MW-MUG-001]", legacy: "(absent)" })]);
  });

  it("leaves out ignored fields such as inventory's available, and compares the rest", () => {
    const stock = (available: number, name = "Mesh mug") => create(InventoryList, { products: [{ sku: "MW-MUG-001", name, price: money(1299), available }] });
    expect(compareMessages(InventoryList, stock(3), stock(7), { ...byKey, ignore: ["available"] }).differences).toEqual([]);
    expect(compareMessages(InventoryList, stock(3), stock(7), byKey).differences).toEqual([{ path: "products[MW-MUG-001].available", legacy: "3", new: "7" }]);
    expect(compareMessages(InventoryList, stock(3), stock(7, "Mug"), { ...byKey, ignore: ["available"] }).differences).toEqual([{ path: "products[MW-MUG-001].name", legacy: '"Mesh mug"', new: '"Mug"' }]);
  });

  it("lists at most 10 differences and counts the rest, each value cut to 200 characters", () => {
    const many = (n: number, suffix: string) => Array.from({ length: n }, (_, i) => ({ ...mug, sku: `MW-${String(i).padStart(3, "0")}`, name: `${"n".repeat(300)}${suffix}` }));
    const result = compareMessages(CatalogList, catalog(...many(15, "a")), catalog(...many(15, "b")), byKey);
    expect(result.differences).toHaveLength(10);
    expect(result.more).toBe(5);
    expect(result.differences[0]!.path).toBe("products[MW-000].name");
    expect(result.differences[0]!.legacy).toHaveLength(200);
  });

  it("compares a list without a key by position", () => {
    const result = compareMessages(CatalogList, catalog(mug, tee), catalog(tee, mug));
    expect(result.differences.map((d) => d.path)).toEqual(expect.arrayContaining(["products[0].sku", "products[1].sku"]));
  });
});
