/** Payment's domain errors; `kind` is mapped to a status code at the RPC edge. */
export class InvalidPaymentRequestError extends Error {
  override readonly name = "InvalidPaymentRequestError";
  readonly kind = "invalid_argument";
  constructor(
    readonly field: string,
    problem: string,
  ) {
    super(`${field}: ${problem}`);
  }
}

export class IdempotencyKeyReusedError extends Error {
  override readonly name = "IdempotencyKeyReusedError";
  readonly kind = "failed_precondition";
  constructor(key: string) {
    super(`idempotency_key "${key}" was already used for a different order or amount`);
  }
}

export class CardNetworkUnavailableError extends Error {
  override readonly name = "CardNetworkUnavailableError";
  readonly kind = "unavailable";
  constructor(detail: string) {
    super(`card network unavailable: ${detail}`);
  }
}
