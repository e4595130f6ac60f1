import { InvalidArgumentError } from "#platform/domain/errors.js";
import { requireText } from "#platform/domain/input.js";
import { UnmappableChangeError } from "./errors.js";

/** A product as the catalog holds it: the old shop's row in the mesh's vocabulary. */
export interface CatalogProduct {
  sku: string;
  name: string;
  description: string;
  priceMinor: number;
  currency: string;
}

export const requireSku = (sku: string, field = "sku") => requireText(sku, field);

/** A decimal of at most 10 integer digits and 2 places, as the source's numeric(12,2) holds prices. */
const PRICE = /^(\d{1,10})(?:\.(\d{1,2}))?$/;
const CURRENCY = /^[A-Z]{3}$/;
/** The contract's bound on a SKU a caller can ask for; a longer one could never be listed. */
const MAX_SKU_LENGTH = 128;

/**
 * Minor units of a decimal price, exactly: "12.99" is 1299, "5" is 500, "0.5" is 50. Digits
 * are taken as digits, never through a float, so no price is off by a rounding.
 */
export function priceToMinorUnits(price: string): number | undefined {
  const match = PRICE.exec(price);
  if (!match) return undefined;
  return Number(match[1]) * 100 + Number((match[2] ?? "").padEnd(2, "0"));
}

/**
 * A product as a captured change carries it. The description is undefined when the source
 * sent the blurb as "unchanged" (an update that left a TOASTed blurb alone): the stored one stands.
 */
export type CapturedProduct = Omit<CatalogProduct, "description"> & { description: string | undefined };

/** The old shop's column values of one row, as change capture and the backfill read them. */
export type LegacyProductRow = Readonly<Record<string, unknown>>;

/**
 * The anti-corruption mapping of a legacy row: title is the name, blurb the description, the
 * decimal price minor units. Anything it cannot map exactly is an UnmappableChangeError.
 */
export function fromLegacyRow(row: LegacyProductRow): CapturedProduct {
  const { sku: rawSku, title, blurb, price, currency } = row;
  const sku = typeof rawSku === "string" ? rawSku : "";
  const fail = (field: string, problem: string) => new UnmappableChangeError(sku, field, problem);
  if (sku.trim() === "" || sku.length > MAX_SKU_LENGTH) throw fail("sku", `must be 1 to ${MAX_SKU_LENGTH} characters`);
  if (typeof title !== "string" || title.trim() === "") throw fail("title", "must not be blank");
  if (typeof blurb !== "string" && blurb !== undefined) throw fail("blurb", "must be text");
  const priceMinor = typeof price === "string" ? priceToMinorUnits(price) : undefined;
  if (priceMinor === undefined) throw fail("price", `must be a non-negative decimal of at most 2 places below 10^10, got ${JSON.stringify(price)}`);
  if (typeof currency !== "string" || !CURRENCY.test(currency)) throw fail("currency", `must be 3 upper-case letters, got ${JSON.stringify(currency)}`);
  return { sku, name: title, description: blurb, priceMinor, currency };
}

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
/** The old shop's numeric(12,2) holds below 10^10, so minor units below 10^12: every write must fit the sync back. */
const MAX_MINOR_EXCLUSIVE = 10n ** 12n;

/** A write checked field by field, as the catalog holds it; the first bad field names itself. */
export function requireProductWrite(write: ProductWrite): CatalogProduct {
  const sku = requireText(write.sku, "sku", MAX_SKU_LENGTH);
  // The old shop refuses these in a SKU: a write it cannot take must not be taken here either.
  if (CONTROL.test(sku)) throw new InvalidArgumentError("sku", "must not contain control characters");
  // The old shop's path /api/products/.. would resolve to another path: such a write could not be synced back.
  if (ONLY_DOTS.test(sku)) throw new InvalidArgumentError("sku", "must not be only dots");
  const name = requireText(write.name, "name", MAX_NAME_LENGTH);
  if (write.description.length > MAX_DESCRIPTION_LENGTH) throw new InvalidArgumentError("description", `must be at most ${MAX_DESCRIPTION_LENGTH} characters`);
  if (!write.price) throw new InvalidArgumentError("price", "is required");
  const { currencyCode, minorUnits } = write.price;
  if (!CURRENCY.test(currencyCode)) throw new InvalidArgumentError("price.currency_code", "must be 3 upper-case letters");
  if (minorUnits < 0n || minorUnits >= MAX_MINOR_EXCLUSIVE) throw new InvalidArgumentError("price.minor_units", "must be from 0 to below 10^12");
  return { sku, name, description: write.description, priceMinor: Number(minorUnits), currency: currencyCode };
}
