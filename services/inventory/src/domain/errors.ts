/**
 * Inventory's domain errors. Each carries a `kind` that the platform's RPC edge maps to a
 * status code; the domain itself knows nothing about RPC.
 */
export class InvalidStockRequestError extends Error {
  override readonly name = "InvalidStockRequestError";
  readonly kind = "invalid_argument";
  constructor(
    readonly field: string,
    problem: string,
  ) {
    super(`${field}: ${problem}`);
  }
}

export class InsufficientStockError extends Error {
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

export class ProductNotFoundError extends Error {
  override readonly name = "ProductNotFoundError";
  readonly kind = "not_found";
  constructor(readonly sku: string) {
    super(`product ${sku} not found`);
  }
}

export class ReservationNotFoundError extends Error {
  override readonly name = "ReservationNotFoundError";
  readonly kind = "not_found";
  constructor(readonly orderId: string) {
    super(`no reservation for order ${orderId}`);
  }
}

export class ReservationTransitionError extends Error {
  override readonly name = "ReservationTransitionError";
  readonly kind = "failed_precondition";
  constructor(orderId: string, from: string, action: string) {
    super(`cannot ${action} the reservation of order ${orderId}: it is ${from}`);
  }
}

export class StockAdjustmentError extends Error {
  override readonly name = "StockAdjustmentError";
  readonly kind = "failed_precondition";
  constructor(sku: string, delta: number, available: number) {
    super(`cannot adjust ${sku} by ${delta}: only ${available} available`);
  }
}
