import { DomainError } from "#platform/domain/errors.js";

/**
 * Inventory's domain errors. Each carries a `kind` that the platform's RPC edge maps to a
 * status code; the domain itself knows nothing about RPC. Bad input is the kit's
 * InvalidArgumentError.
 */
export class InsufficientStockError extends DomainError {
  override readonly name = "InsufficientStockError";
  readonly kind = "failed_precondition";
  constructor(
    readonly sku: string,
    readonly requested: number,
    readonly available: number,
  ) {
    super(`insufficient stock for ${sku}: requested ${requested}, available ${available}`);
  }
}

export class ProductNotFoundError extends DomainError {
  override readonly name = "ProductNotFoundError";
  readonly kind = "not_found";
  constructor(readonly sku: string) {
    super(`product ${sku} not found`);
  }
}

export class ReservationNotFoundError extends DomainError {
  override readonly name = "ReservationNotFoundError";
  readonly kind = "not_found";
  constructor(readonly orderId: string) {
    super(`no reservation for order ${orderId}`);
  }
}

export class ReservationTransitionError extends DomainError {
  override readonly name = "ReservationTransitionError";
  readonly kind = "failed_precondition";
  constructor(orderId: string, from: string, action: string) {
    super(`cannot ${action} the reservation of order ${orderId}: it is ${from}`);
  }
}

export class StockAdjustmentError extends DomainError {
  override readonly name = "StockAdjustmentError";
  readonly kind = "failed_precondition";
  constructor(sku: string, delta: number, available: number) {
    super(`cannot adjust ${sku} by ${delta}: only ${available} available`);
  }
}
