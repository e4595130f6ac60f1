import type { ProductChange } from "./products.js";

/** Bad input, answered 400 with the field it concerns. */
export class BadRequest extends Error {
  constructor(
    message: string,
    readonly field: string,
  ) {
    super(message);
  }
}

const MAX_SKUS = 100;
const MAX_SKU_LENGTH = 128;
const MAX_TITLE_LENGTH = 200;
const MAX_BLURB_LENGTH = 2000;
/** Up to 10 integer digits (below 1e10, what numeric(12,2) holds) and at most 2 decimals; no sign, no exponent. */
const DECIMAL_PRICE = /^\d{1,10}(\.\d{1,2})?$/;
const CURRENCY = /^[A-Z]{3}$/;
const CONTROL = /[\u0000-\u001f\u007f]/;
/** "." and ".." (any run of dots alone): a client putting the SKU in a URL path would resolve it to another path. */
const DOTS_ONLY = /^\.+$/;

export function validSku(sku: string, field = "sku"): string {
  if (sku.length === 0 || sku.length > MAX_SKU_LENGTH) throw new BadRequest(`${field} must be 1 to ${MAX_SKU_LENGTH} characters`, field);
  if (CONTROL.test(sku)) throw new BadRequest(`${field} must not contain control characters`, field);
  // The catalog's change capture cannot map a blank SKU and would halt on it.
  if (sku.trim() === "") throw new BadRequest(`${field} must not be blank`, field);
  if (DOTS_ONLY.test(sku)) throw new BadRequest(`${field} must not be made of dots alone`, field);
  return sku;
}

/** The ?sku= filter: undefined when absent (every product). */
export function validSkuFilter(values: readonly string[]): string[] | undefined {
  if (values.length === 0) return undefined;
  if (values.length > MAX_SKUS) throw new BadRequest(`at most ${MAX_SKUS} sku values, got ${values.length}`, "sku");
  return values.map((sku) => validSku(sku));
}

/** A text field of at most `max` characters; `required`: not blank after trimming, as the catalog's change capture cannot map a blank one and would halt on it. */
const text = (body: Record<string, unknown>, field: string, required: boolean, max: number, fallback?: string): string => {
  const value = body[field] ?? fallback;
  if (typeof value !== "string") throw new BadRequest(`${field} must be a string`, field);
  if (value.length > max) throw new BadRequest(`${field} must be at most ${max} characters`, field);
  if (required && value.trim() === "") throw new BadRequest(`${field} must not be blank`, field);
  return value;
};

/** A PUT body: {"title","blurb","price":"12.99","currency":"USD"}; blurb may be left out (empty). */
export function validProductChange(body: unknown): ProductChange {
  if (typeof body !== "object" || body === null || Array.isArray(body)) throw new BadRequest("the body must be a JSON object", "body");
  const fields = body as Record<string, unknown>;
  const title = text(fields, "title", true, MAX_TITLE_LENGTH);
  const blurb = text(fields, "blurb", false, MAX_BLURB_LENGTH, "");
  const price = fields["price"];
  if (typeof price !== "string" || !DECIMAL_PRICE.test(price)) throw new BadRequest('price must be a decimal string such as "12.99": at least 0, below 1e10, at most 2 decimals', "price");
  const currency = fields["currency"];
  if (typeof currency !== "string" || !CURRENCY.test(currency)) throw new BadRequest("currency must be 3 upper-case letters, e.g. USD", "currency");
  return { title, blurb, price, currency };
}
