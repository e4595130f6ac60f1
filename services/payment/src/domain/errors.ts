import { DomainError } from "#platform/domain/errors.js";

/** Payment's domain errors; `kind` is mapped to a status code at the RPC edge. Bad input is the kit's InvalidArgumentError. */
export class IdempotencyKeyReusedError extends DomainError {
  override readonly name = "IdempotencyKeyReusedError";
  readonly kind = "failed_precondition";
  constructor(key: string) {
    super(`idempotency_key "${key}" was already used for a different order or amount`);
  }
}
