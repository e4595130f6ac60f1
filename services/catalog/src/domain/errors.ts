import { DomainError } from "#platform/domain/errors.js";

/**
 * A change captured from the old shop that the catalog cannot represent (a price that is not
 * a decimal of at most two places, a blank title, a currency that is not three letters...).
 * The reader stops at it rather than skip it: a catalog that silently left a product behind
 * would serve a wrong price with nothing to show for it.
 */
export class UnmappableChangeError extends Error {
  override readonly name = "UnmappableChangeError";
  constructor(
    readonly sku: string,
    readonly field: string,
    readonly problem: string,
  ) {
    super(`old shop product ${JSON.stringify(sku)}: ${field} ${problem}`);
  }
}

/** UpdateProduct while the route table keeps catalog writes with the old shop. */
export class WritesRoutedToOldShopError extends DomainError {
  override readonly name = "WritesRoutedToOldShopError";
  readonly kind = "failed_precondition";
  constructor(route: string) {
    super(`catalog writes are routed to the old shop; the catalog takes them once ${route} is new`);
  }
}

/** UpdateProduct while this replica's view of the route table is behind the bucket's: where writes go is not known yet. */
export class RouteTableBehindError extends DomainError {
  override readonly name = "RouteTableBehindError";
  readonly kind = "unavailable";
  constructor() {
    super("the catalog's view of the route table is catching up with a change; retry");
  }
}

/** DiscardRefusedWrites of a product without a write the old shop refused: nothing to give up. */
export class NoRefusedWriteError extends DomainError {
  override readonly name = "NoRefusedWriteError";
  readonly kind = "not_found";
  override readonly field = "sku";
  constructor(sku: string) {
    super(`sku: ${sku} has no write the old shop refused`);
  }
}

/** The old shop did not give DiscardRefusedWrites its product in time; the discard was rolled back, so a retry may do it. */
export class OldShopReadTimeoutError extends DomainError {
  override readonly name = "OldShopReadTimeoutError";
  readonly kind = "unavailable";
  constructor(ms: number) {
    super(`the old shop did not answer within ${ms} ms; nothing was discarded, retry later`);
  }
}

/** DiscardRefusedWrites found the product held by another change of it for longer than it waits; nothing was discarded. */
export class ProductBusyError extends DomainError {
  override readonly name = "ProductBusyError";
  readonly kind = "unavailable";
  constructor(sku: string, ms: number) {
    super(`another change of ${sku} held it for more than ${ms} ms; nothing was discarded, retry`);
  }
}
