/**
 * The errors domain code throws. Each carries a `kind`, which the RPC edge
 * (rpc-server/errors.ts) turns into a status code, so the domain itself knows nothing about
 * RPC. This module is plain TypeScript and imports nothing: a service's domain/ may use it.
 */

/** The kinds of failure a client is told about; anything else reaches it as INTERNAL. */
export type ErrorKind = "invalid_argument" | "not_found" | "failed_precondition" | "already_exists" | "unavailable";

/**
 * A failure the client is meant to see, with a message written for it. `kind` is one the
 * compiler checks: a misspelt kind fails to compile instead of becoming INTERNAL.
 */
export abstract class DomainError extends Error {
  abstract readonly kind: ErrorKind;
  /** Request field path, e.g. "items[1].quantity", when one field is at fault. */
  declare readonly field?: string;
}

/** Bad input, named by the request field at fault: "items[1].quantity: must be greater than 0". */
export class InvalidArgumentError extends DomainError {
  override readonly name = "InvalidArgumentError";
  readonly kind = "invalid_argument";
  constructor(
    override readonly field: string,
    problem: string,
  ) {
    super(`${field}: ${problem}`);
  }
}
