/** Ordering's domain errors; `kind` is mapped to a status code at the RPC edge. */
export class InvalidOrderError extends Error {
  override readonly name = "InvalidOrderError";
  readonly kind = "invalid_argument";
  constructor(
    readonly field: string,
    problem: string,
  ) {
    super(`${field}: ${problem}`);
  }
}

export class OrderNotFoundError extends Error {
  override readonly name = "OrderNotFoundError";
  readonly kind = "not_found";
  constructor(orderId: string) {
    super(`order ${orderId} not found`);
  }
}

export class OrderTransitionError extends Error {
  override readonly name = "OrderTransitionError";
  readonly kind = "failed_precondition";
  constructor(orderId: string, status: string, action: string) {
    super(`cannot ${action} order ${orderId}: it is ${status}`);
  }
}

export class RequestReusedError extends Error {
  override readonly name = "RequestReusedError";
  readonly kind = "already_exists";
  readonly field = "request_id";
  constructor() {
    super("request_id: already used for a different order");
  }
}

export class SagaNotFoundError extends Error {
  override readonly name = "SagaNotFoundError";
  readonly kind = "not_found";
  constructor(orderId: string) {
    super(`no saga for order ${orderId}`);
  }
}

/** An operator's action that the saga's state does not allow; the message says why. */
export class SagaActionRefusedError extends Error {
  override readonly name = "SagaActionRefusedError";
  readonly kind = "failed_precondition";
  constructor(action: string, orderId: string, reason: string) {
    super(`cannot ${action} the saga of order ${orderId}: ${reason}`);
  }
}
