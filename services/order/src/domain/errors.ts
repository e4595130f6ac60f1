import { DomainError } from "#platform/domain/errors.js";

/** Ordering's domain errors; `kind` is mapped to a status code at the RPC edge. Bad input is the kit's InvalidArgumentError. */
export class OrderNotFoundError extends DomainError {
  override readonly name = "OrderNotFoundError";
  readonly kind = "not_found";
  constructor(orderId: string) {
    super(`order ${orderId} not found`);
  }
}

export class OrderTransitionError extends DomainError {
  override readonly name = "OrderTransitionError";
  readonly kind = "failed_precondition";
  constructor(orderId: string, status: string, action: string) {
    super(`cannot ${action} order ${orderId}: it is ${status}`);
  }
}

export class RequestReusedError extends DomainError {
  override readonly name = "RequestReusedError";
  readonly kind = "already_exists";
  override readonly field = "request_id";
  constructor() {
    super("request_id: already used for a different order");
  }
}

export class SagaNotFoundError extends DomainError {
  override readonly name = "SagaNotFoundError";
  readonly kind = "not_found";
  constructor(orderId: string) {
    super(`no saga for order ${orderId}`);
  }
}

/** An operator's action that the saga's state does not allow; the message says why. */
export class SagaActionRefusedError extends DomainError {
  override readonly name = "SagaActionRefusedError";
  readonly kind = "failed_precondition";
  constructor(action: string, orderId: string, reason: string) {
    super(`cannot ${action} the saga of order ${orderId}: ${reason}`);
  }
}
