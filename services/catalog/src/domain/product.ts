import { minorUnitsOf } from "#platform/domain/decimal-price.js";
import { UnmappableChangeError } from "./errors.js";

/** A product as the catalog holds it: the old shop's row in the mesh's vocabulary. */
export interface CatalogProduct {
  sku: string;
  name: string;
  description: string;
  priceMinor: number;
  currency: string;
}

const CURRENCY = /^[A-Z]{3}$/;
/** The contract's bound on a SKU a caller can ask for; a longer one could never be listed. */
const MAX_SKU_LENGTH = 128;

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
  const priceMinor = typeof price === "string" ? minorUnitsOf(price) : undefined;
  if (priceMinor === undefined) throw fail("price", `must be a non-negative decimal of at most 2 places below 10^10, got ${JSON.stringify(price)}`);
  if (typeof currency !== "string" || !CURRENCY.test(currency)) throw fail("currency", `must be 3 upper-case letters, got ${JSON.stringify(currency)}`);
  return { sku, name: title, description: blurb, priceMinor, currency };
}
