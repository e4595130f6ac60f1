import type { ConnectRouter } from "@connectrpc/connect";
import { create } from "@bufbuild/protobuf";
import {
  InventoryService,
  ReservationStatus,
  ReservationSchema,
  ProductSchema,
  StockSchema,
  type Reservation as ReservationMessage,
} from "#gen/shop/inventory/v1/inventory_service_pb.js";
import { toMoney } from "#shop/money.js";
import type { Inventory, Product } from "../app/inventory.js";
import { requireOrderReference, requireSku, type Reservation } from "../domain/reservation.js";
import { InvalidArgumentError, requirePresent } from "#platform";

export interface InventoryRouteDeps {
  inventory: Inventory;
}

const statusToWire: Record<Reservation["status"], ReservationStatus> = {
  reserved: ReservationStatus.RESERVED,
  released: ReservationStatus.RELEASED,
  committed: ReservationStatus.COMMITTED,
};

export const toReservation = (r: Reservation): ReservationMessage =>
  create(ReservationSchema, { id: r.id, orderId: r.orderId, items: r.items, status: statusToWire[r.status] });

export const toProduct = (p: Product) =>
  create(ProductSchema, {
    sku: p.sku,
    name: p.name,
    price: toMoney(p.currency, p.priceMinor),
    available: p.available,
  });

const toStock = (p: Product) => create(StockSchema, { sku: p.sku, available: p.available, reserved: p.reserved, sold: p.sold });

/** Maps the wire contract onto inventory's use cases; no business rules live here. */
export function createRoutes({ inventory }: InventoryRouteDeps) {
  return (router: ConnectRouter) =>
    router.service(InventoryService, {
      async listProducts(req) {
        req.skus.forEach((sku, i) => requireSku(sku, `skus[${i}]`));
        return { products: (await inventory.listProducts(req.skus)).map(toProduct) };
      },
      async reserveStock(req) {
        return { reservation: toReservation(await inventory.reserve(requireOrderReference(req.orderId), req.items)) };
      },
      async releaseStock(req) {
        return { reservation: toReservation(await inventory.release(requireOrderReference(req.orderId))) };
      },
      async commitReservation(req) {
        return { reservation: toReservation(await inventory.commit(requireOrderReference(req.orderId))) };
      },
      async getReservation(req) {
        return { reservation: toReservation(await inventory.getReservation(requireOrderReference(req.orderId))) };
      },
      async getStock(req) {
        return { stock: toStock(await inventory.getStock(requireSku(req.sku))) };
      },
      async adjustStock(req) {
        if (req.delta === 0) throw new InvalidArgumentError("delta", "must not be 0");
        requirePresent(req.reason, "reason");
        return { stock: toStock(await inventory.adjust(requireSku(req.sku), req.delta, req.reason)) };
      },
    });
}
