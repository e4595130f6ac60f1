import { createHash } from "node:crypto";
import { InvalidArgumentError } from "#platform/domain/errors.js";
import { parseUuid, requireText } from "#platform/domain/input.js";
import { OrderTransitionError, RequestReusedError } from "./errors.js";

export type OrderStatus = "pending" | "confirmed" | "cancelled";

export interface RequestedLine {
  sku: string;
  quantity: number;
}

export interface NewOrder {
  customerId: string;
  items: RequestedLine[];
  paymentToken: string;
  requestId: string;
}

/** A catalog entry as the pricing authority (inventory) reports it right now. */
export interface CatalogPrice {
  sku: string;
  name: string;
  priceMinor: number;
  currency: string;
}

export interface PricedLine {
  sku: string;
  name: string;
  quantity: number;
  unitPriceMinor: number;
}

export interface PricedOrder {
  lines: PricedLine[];
  currency: string;
  totalMinor: number;
}

const MAX_LINES = 100;
const MAX_QUANTITY = 10_000;

export const requireCustomerId = (customerId: string) => requireText(customerId, "customer_id");

/** An id of one of ordering's own orders, which are UUIDs: in lower case, as they are stored. */
export const parseOrderId = (orderId: string) => parseUuid(orderId, "order_id");

/** Checks a new order's fields, reporting the first bad one by its wire name. */
export function validateNewOrder(order: NewOrder): NewOrder {
  requireCustomerId(order.customerId);
  if (order.items.length === 0) throw new InvalidArgumentError("items", "must not be empty");
  if (order.items.length > MAX_LINES) throw new InvalidArgumentError("items", `must have at most ${MAX_LINES} lines`);
  order.items.forEach((item, i) => {
    requireText(item.sku, `items[${i}].sku`);
    if (!Number.isInteger(item.quantity) || item.quantity <= 0) throw new InvalidArgumentError(`items[${i}].quantity`, "must be greater than 0");
    if (item.quantity > MAX_QUANTITY) throw new InvalidArgumentError(`items[${i}].quantity`, `must be at most ${MAX_QUANTITY}`);
  });
  requireText(order.paymentToken, "payment_token");
  requireText(order.requestId, "request_id");
  return order;
}

/**
 * Prices an order from the catalog. Prices come from the server, never the client; repeats
 * of a SKU are merged into one line.
 */
export function priceOrder(items: readonly RequestedLine[], catalog: ReadonlyMap<string, CatalogPrice>): PricedOrder {
  const lines = new Map<string, PricedLine>();
  items.forEach((item, i) => {
    const entry = catalog.get(item.sku);
    if (!entry) throw new InvalidArgumentError(`items[${i}].sku`, `unknown SKU "${item.sku}"`);
    const line = lines.get(item.sku);
    if (line) {
      line.quantity += item.quantity;
      if (line.quantity > MAX_QUANTITY) throw new InvalidArgumentError(`items[${i}].quantity`, `brings ${item.sku} to ${line.quantity}; at most ${MAX_QUANTITY} per SKU`);
    } else lines.set(item.sku, { sku: item.sku, name: entry.name, quantity: item.quantity, unitPriceMinor: entry.priceMinor });
  });
  const currencies = new Set(items.map((item) => catalog.get(item.sku)!.currency));
  if (currencies.size > 1) throw new InvalidArgumentError("items", `mixes currencies (${[...currencies].join(", ")}); place one order per currency`);
  const priced = [...lines.values()];
  return {
    lines: priced,
    currency: [...currencies][0]!,
    totalMinor: priced.reduce((sum, line) => sum + line.unitPriceMinor * line.quantity, 0),
  };
}

/** A customer may cancel only while the order is still pending. */
export function assertCancellable(orderId: string, status: OrderStatus): void {
  if (status === "confirmed") throw new OrderTransitionError(orderId, status, "cancel");
}

/**
 * A canonical digest of what a CreateOrder asks for: customer, payment token, and quantity
 * per SKU (repeats merged, in SKU order, as pricing merges them). Two requests with the same
 * request_id are the same order exactly when their fingerprints match.
 */
export function requestFingerprint(order: NewOrder): string {
  const quantities = new Map<string, number>();
  for (const { sku, quantity } of order.items) quantities.set(sku, (quantities.get(sku) ?? 0) + quantity);
  const items = [...quantities].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return createHash("sha256").update(JSON.stringify([order.customerId, order.paymentToken, items])).digest("base64url");
}

/**
 * A request id names one order: reusing it for a different one is refused (as Stripe refuses
 * a reused idempotency key), never answered with the first order. Orders stored before
 * fingerprints were kept have none, and are taken at their word.
 */
export function assertSameRequest(storedFingerprint: string | null, fingerprint: string): void {
  if (storedFingerprint !== null && storedFingerprint !== fingerprint) throw new RequestReusedError();
}
