import { MAX_PRICE_MINOR_EXCLUSIVE } from "#platform/domain/decimal-price.js";
import { InvalidArgumentError } from "#platform/domain/errors.js";
import { requireText } from "#platform/domain/input.js";

/** The contract's bound on a SKU (the mesh's default string limit). */
const MAX_SKU_LENGTH = 128;
const CURRENCY = /^[A-Z]{3}$/;

/** A write as UpdateProduct takes it; the wire's Money is { currencyCode, minorUnits }. */
export interface ProductWrite {
  sku: string;
  name: string;
  description: string;
  price?: { currencyCode: string; minorUnits: bigint } | undefined;
}

const MAX_NAME_LENGTH = 200;
const CONTROL = /[\u0000-\u001f\u007f]/;
const ONLY_DOTS = /^\.+$/;
const MAX_DESCRIPTION_LENGTH = 2000;

/** A write checked: the catalog's row, in the mesh's vocabulary. */
export interface CheckedProductWrite {
  sku: string;
  name: string;
  description: string;
  priceMinor: number;
  currency: string;
}

/**
 * A SKU the old shop can hold, as every call naming a catalog product checks it (UpdateProduct,
 * DiscardRefusedWrites, ListProducts' skus): `field` names it, `sku` by default.
 */
export function requireSku(value: string, field = "sku"): string {
  const sku = requireText(value, field, MAX_SKU_LENGTH);
  // The old shop refuses these in a SKU (and Postgres a NUL in text): no product can have one.
  if (CONTROL.test(sku)) throw new InvalidArgumentError(field, "must not contain control characters");
  // The old shop's path /api/products/.. would resolve to another path: such a write could not be synced back.
  if (ONLY_DOTS.test(sku)) throw new InvalidArgumentError(field, "must not be only dots");
  return sku;
}

/**
 * A catalog write (UpdateProduct, at the gateway and at the catalog) checked field by field;
 * the first bad field names itself. It holds what either side can take: the gateway checks
 * before it knows which side the write route names, and the catalog before its sync back
 * must put the write in the old shop.
 */
export function requireProductWrite(write: ProductWrite): CheckedProductWrite {
  const sku = requireSku(write.sku);
  const name = requireText(write.name, "name", MAX_NAME_LENGTH);
  if (write.description.length > MAX_DESCRIPTION_LENGTH) throw new InvalidArgumentError("description", `must be at most ${MAX_DESCRIPTION_LENGTH} characters`);
  if (!write.price) throw new InvalidArgumentError("price", "is required");
  const { currencyCode, minorUnits } = write.price;
  if (!CURRENCY.test(currencyCode)) throw new InvalidArgumentError("price.currency_code", "must be 3 upper-case letters");
  if (minorUnits < 0n || minorUnits >= MAX_PRICE_MINOR_EXCLUSIVE) throw new InvalidArgumentError("price.minor_units", "must be from 0 to below 10^12");
  return { sku, name, description: write.description, priceMinor: Number(minorUnits), currency: currencyCode };
}
