/** What a redacted secret reads as. */
export const REDACTED = "[redacted]";

/** A demo or card-network payment token as it may appear in free text, e.g. an error message. */
const TOKEN_IN_TEXT = /\btok_[A-Za-z0-9_-]*/g;
/** Keys whose values are payment tokens, whatever their format (e.g. the saga's paymentToken). */
const TOKEN_KEY = /token/i;

/**
 * Hides payment tokens in anything shown to operators (saga views, the admin CLI, logs):
 * values under a key that names a token, whatever they look like, and `tok_…` anywhere in
 * a string. Returns a copy; the stored saga keeps the token, which its charge step needs.
 */
export function redactPaymentTokens<T>(value: T): T {
  if (typeof value === "string") return value.replace(TOKEN_IN_TEXT, REDACTED) as T;
  if (Array.isArray(value)) return value.map((item: unknown) => redactPaymentTokens(item)) as T;
  if (value !== null && typeof value === "object" && !(value instanceof Date)) {
    return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, TOKEN_KEY.test(key) && item != null ? REDACTED : redactPaymentTokens(item)])) as T;
  }
  return value;
}
