/**
 * Prices as decimal text of two places ("12.99"), as a legacy schema's numeric(12,2) holds
 * them, and as minor units (1299), as the contracts' Money does. Converted digit by digit,
 * never through a float, which would make 0.29 into 28.999…
 */

/** At most 10 integer digits and 2 places: no sign, no exponent. */
const DECIMAL = /^(\d{1,10})(?:\.(\d{1,2}))?$/;

/** numeric(12,2) holds prices below 10^10, so minor units below 10^12. */
export const MAX_PRICE_MINOR_EXCLUSIVE = 10n ** 12n;

/** "12.99" -> 1299, "5" -> 500, "0.5" -> 50; undefined for anything else. */
export function minorUnitsOf(price: string): number | undefined {
  const match = DECIMAL.exec(price);
  if (!match) return undefined;
  return Number(match[1]) * 100 + Number((match[2] ?? "").padEnd(2, "0"));
}

/** 1299n -> "12.99", for a price from 0 to below 10^12 minor units; undefined outside that. */
export function decimalOf(minorUnits: bigint): string | undefined {
  if (minorUnits < 0n || minorUnits >= MAX_PRICE_MINOR_EXCLUSIVE) return undefined;
  return `${minorUnits / 100n}.${(minorUnits % 100n).toString().padStart(2, "0")}`;
}
