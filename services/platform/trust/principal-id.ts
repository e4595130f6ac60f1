/**
 * The alphabet of customer ids (JWT subjects at the gateway, the customer the gateway
 * passes to services). Anything outside plain ASCII could make two ids that print alike
 * ("a\u200Bda" and "ada", a Cyrillic "а") name different customers, and control
 * characters could forge lines in logs and notifications.
 */
const PRINCIPAL_ID = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/;

/** Completes "customer_id: …" and similar error messages. */
export const PRINCIPAL_ID_RULE = "must be 1 to 64 ASCII letters, digits, '.', '_', '@' or '-', starting with a letter or digit";

export function isSafePrincipalId(id: string): boolean {
  return PRINCIPAL_ID.test(id);
}
