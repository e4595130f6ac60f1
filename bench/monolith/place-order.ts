import { randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import type { PostgresJsDatabase } from "drizzle-orm/postgres-js";
import { toMoney } from "../../services/platform/money.js";
import { createInventory } from "../../services/inventory/src/app/inventory.js";
import { InsufficientStockError } from "../../services/inventory/src/domain/errors.js";
import { orderEventHandlers } from "../../services/notification/src/app/notifications.js";
import { inbox } from "../../services/notification/src/db/schema.js";
import { createOrderStore, type StoredOrder } from "../../services/order/src/app/order-store.js";
import { priceOrder, requestFingerprint, validateNewOrder, type CatalogPrice, type NewOrder } from "../../services/order/src/domain/order.js";
import { createPayments } from "../../services/payment/src/app/payments.js";
import { createSimulatedCardNetwork } from "../../services/payment/src/app/simulated-card-network.js";
import { OrderCancelledSchema, OrderConfirmedSchema } from "../../gen/shop/order/v1/order_events_pb.js";

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- one database over every service's schema
type AnyDb = PostgresJsDatabase<any>;

/**
 * The monolith baseline: the place-order flow the saga runs across three services, done by
 * the same use cases (inventory, payment, order store, notification handler) inside ONE
 * Postgres transaction per order. Each use case is handed the transaction as its database,
 * so its own transactions become savepoints: the same business logic and the same rows
 * (order, lines, reservation, payment, outbox events, notification and its inbox row). What
 * it does not have is exactly what distribution costs: RPC hops, saga bookkeeping, the
 * outbox relay and event consumers.
 */
export function createMonolith(db: AnyDb) {
  const cardNetwork = createSimulatedCardNetwork();
  const notify = new Map(orderEventHandlers.map((handler) => [handler.schema.typeName, handler]));

  async function recordNotification(tx: AnyDb, event: Parameters<NonNullable<ReturnType<typeof notify.get>>["handle"]>[1], typeName: string) {
    const eventId = randomUUID();
    await tx.insert(inbox).values({ consumer: "notification", eventId, eventType: typeName });
    await notify.get(typeName)!.handle(tx, event, { id: eventId, type: typeName } as never);
  }

  return {
    async placeOrder(request: NewOrder): Promise<StoredOrder> {
      const order = validateNewOrder(request);
      const orderId = randomUUID();
      return db.transaction(async (tx) => {
        const inventory = createInventory(tx as never);
        const payments = createPayments(tx as never, cardNetwork);
        const store = createOrderStore(tx as never);
        const existing = await store.findByRequest(order.customerId, order.requestId);
        if (existing) return existing;
        const catalog = new Map<string, CatalogPrice>(
          (await inventory.listProducts([...new Set(order.items.map((item) => item.sku))])).map((p) => [p.sku, { sku: p.sku, name: p.name, priceMinor: p.priceMinor, currency: p.currency }]),
        );
        const priced = priceOrder(order.items, catalog);
        await store.insert(tx, { id: orderId, customerId: order.customerId, requestId: order.requestId, requestFingerprint: requestFingerprint(order), priced });
        const items = priced.lines.map(({ sku, quantity }) => ({ sku, quantity }));
        const cancel = async (reason: string) => {
          await store.cancel(tx, orderId, reason);
          await recordNotification(tx as AnyDb, create(OrderCancelledSchema, { orderId, customerId: order.customerId, reason }), OrderCancelledSchema.typeName);
        };
        try {
          await inventory.reserve(orderId, items);
        } catch (err) {
          if (!(err instanceof InsufficientStockError)) throw err;
          await cancel(`out of stock: ${err.message}`);
          return (await store.find(orderId))!;
        }
        const payment = await payments.charge({
          orderId,
          amount: { currency: priced.currency, minorUnits: priced.totalMinor },
          paymentToken: order.paymentToken,
          idempotencyKey: `${orderId}:charge`,
        });
        if (payment.status !== "captured") {
          await inventory.release(orderId);
          await cancel(`payment declined: ${payment.declineReason}`);
          return (await store.find(orderId))!;
        }
        await store.confirm(orderId);
        await inventory.commit(orderId);
        await recordNotification(tx as AnyDb, create(OrderConfirmedSchema, { orderId, customerId: order.customerId, total: toMoney(priced.currency, priced.totalMinor) }), OrderConfirmedSchema.typeName);
        return (await store.find(orderId))!;
      });
    },
  };
}
