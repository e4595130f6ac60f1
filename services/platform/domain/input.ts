import { InvalidArgumentError } from "./errors.js";

/**
 * Checks of request fields, failing with an InvalidArgumentError that names the field. Plain
 * TypeScript, like errors.ts: a service's domain/ may use it.
 */

/** The longest free-text identifier a service stores: customer ids, SKUs, tokens, keys. */
const MAX_TEXT = 128;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Whether `value` is a UUID in its 8-4-4-4-12 hex form, in either case. */
export const isUuid = (value: string): boolean => UUID.test(value);

/** `value` if it is not blank. */
export function requirePresent(value: string, field: string): string {
  if (value.trim() === "") throw new InvalidArgumentError(field, "is required");
  return value;
}

/** `value` if it is not blank and at most `maxLength` characters long. */
export function requireText(value: string, field: string, maxLength = MAX_TEXT): string {
  requirePresent(value, field);
  if (value.length > maxLength) throw new InvalidArgumentError(field, `must be at most ${maxLength} characters`);
  return value;
}

/** The UUID in `value`, in lower case, as Postgres answers a uuid column. */
export function parseUuid(value: string, field: string): string {
  if (value === "") throw new InvalidArgumentError(field, "is required");
  if (!isUuid(value)) throw new InvalidArgumentError(field, "must be a UUID");
  return value.toLowerCase();
}
