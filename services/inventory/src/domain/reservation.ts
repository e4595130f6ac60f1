import { InvalidArgumentError } from "#platform/domain/errors.js";
import { requireText } from "#platform/domain/input.js";
import { ReservationTransitionError } from "./errors.js";

export type ReservationStatus = "reserved" | "released" | "committed";

export interface StockLine {
  sku: string;
  quantity: number;
}

export interface Reservation {
  id: string;
  orderId: string;
  status: ReservationStatus;
  items: StockLine[];
}

const MAX_QUANTITY = 10_000;
const MAX_LINES = 100;

/** Another context's order, as inventory knows it: an opaque id (order's are UUIDs, but inventory never relies on it). */
export const requireOrderReference = (orderId: string) => requireText(orderId, "order_id");

export const requireSku = (sku: string, field = "sku") => requireText(sku, field);

/**
 * Validates requested lines and merges repeats of a SKU, sorted by SKU, so a reservation's
 * lines and its event read the same however they were asked for. (Row locks need no help
 * from this order: the statements take them in the database's own SKU order.)
 */
export function normalizeLines(items: readonly StockLine[]): StockLine[] {
  if (items.length === 0) throw new InvalidArgumentError("items", "must not be empty");
  if (items.length > MAX_LINES) throw new InvalidArgumentError("items", `must have at most ${MAX_LINES} lines`);
  const merged = new Map<string, number>();
  items.forEach((item, i) => {
    requireSku(item.sku, `items[${i}].sku`);
    if (!Number.isInteger(item.quantity) || item.quantity <= 0) {
      throw new InvalidArgumentError(`items[${i}].quantity`, "must be greater than 0");
    }
    if (item.quantity > MAX_QUANTITY) throw new InvalidArgumentError(`items[${i}].quantity`, `must be at most ${MAX_QUANTITY}`);
    merged.set(item.sku, (merged.get(item.sku) ?? 0) + item.quantity);
  });
  return sortBySku([...merged].map(([sku, quantity]) => ({ sku, quantity })));
}

/** SKU order: the monolith baseline takes its product rows in it. */
export function sortBySku(lines: readonly StockLine[]): StockLine[] {
  return [...lines].sort((a, b) => (a.sku < b.sku ? -1 : a.sku > b.sku ? 1 : 0));
}

/**
 * What releasing a reservation does: "release" returns its stock, "none" means it is already
 * released. A committed reservation is sold stock and can no longer be released.
 */
export function planRelease(reservation: Reservation): "release" | "none" {
  if (reservation.status === "released") return "none";
  if (reservation.status === "committed") throw new ReservationTransitionError(reservation.orderId, "committed", "release");
  return "release";
}

/** What committing does: "commit" turns reserved into sold, "none" means already committed. */
export function planCommit(reservation: Reservation): "commit" | "none" {
  if (reservation.status === "committed") return "none";
  if (reservation.status === "released") throw new ReservationTransitionError(reservation.orderId, "released", "commit");
  return "commit";
}
