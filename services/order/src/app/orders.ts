import { randomUUID } from "node:crypto";
import { Code, ConnectError } from "@connectrpc/connect";
import { pageRequest, readPage, type SagaRunner } from "#platform";
import type { CatalogRouter } from "#shop/catalog-router.js";
import { OrderNotFoundError, OrderTransitionError, SagaNotFoundError } from "../domain/errors.js";
import { assertCancellable, assertSameRequest, priceOrder, requestFingerprint, validateNewOrder, type CatalogPrice, type NewOrder } from "../domain/order.js";
import type { OrderStore, StoredOrder } from "./order-store.js";
import { paymentConfirmedSignal, type PlaceOrderPayload } from "./place-order-saga.js";

export interface OrderPage {
  orders: StoredOrder[];
  nextPageToken: string;
}

/** Ordering's use cases. */
export function createOrders(deps: { store: OrderStore; catalog: CatalogRouter; saga: SagaRunner<PlaceOrderPayload> }) {
  const { store, catalog, saga } = deps;

  /**
   * Prices from the side the catalog route serves this customer from (the old shop or
   * CatalogService), the storefront's own choice for them, so the price they were shown is
   * the price they are charged.
   */
  async function priceFromCatalog(order: NewOrder) {
    const { products } = await catalog.listProducts([...new Set(order.items.map((item) => item.sku))], `customer:${order.customerId}`);
    const prices = new Map<string, CatalogPrice>(
      products.map((p) => [p.sku, { sku: p.sku, name: p.name, priceMinor: Number(p.price?.minorUnits ?? 0n), currency: p.price?.currencyCode ?? "" }]),
    );
    return priceOrder(order.items, prices);
  }

  return {
    /**
     * Stores a PENDING order and its saga in one statement, then starts the saga without
     * waiting for it. A repeated request id answers with the order it created first, if it
     * asks for the same order; reused for a different one, it is refused. The insert finds
     * a repeat (its conflict), so a new order, the common case, reads nothing first.
     */
    async create(request: NewOrder): Promise<StoredOrder> {
      const order = validateNewOrder(request);
      const fingerprint = requestFingerprint(order);
      const priced = await priceFromCatalog(order);
      const orderId = randomUUID();
      const payload = {
        orderId,
        customerId: order.customerId,
        items: priced.lines.map(({ sku, quantity }) => ({ sku, quantity })),
        currency: priced.currency,
        totalMinor: priced.totalMinor,
        paymentToken: order.paymentToken,
      };
      const newSaga = saga.creation(orderId, payload);
      const inserted = await store.insert({ id: orderId, customerId: order.customerId, requestId: order.requestId, requestFingerprint: fingerprint, priced }, newSaga.within);
      if (!inserted) {
        const original = (await store.findByRequest(order.customerId, order.requestId))!;
        assertSameRequest(original.requestFingerprint, fingerprint);
        return original;
      }
      saga.drive(newSaga.sagaId, payload);
      return inserted;
    },

    /** The order; for a customer, only one of theirs: another's is as absent as one that never was. */
    async get(orderId: string, forCustomer?: string): Promise<StoredOrder> {
      const order = await store.find(orderId);
      if (!order || (forCustomer !== undefined && order.customerId !== forCustomer)) throw new OrderNotFoundError(orderId);
      return order;
    },

    /** The order with its saga's progress. */
    async inspect(orderId: string, forCustomer?: string) {
      const order = await this.get(orderId, forCustomer);
      return { order, saga: await saga.get(orderId) };
    },

    async list(customerId: string, requestedSize: number, pageToken: string): Promise<OrderPage> {
      const page = await readPage(pageRequest({ pageSize: requestedSize, pageToken }, "ListOrders"), (limit, after) => store.listByCustomer(customerId, limit, after));
      return { orders: page.rows, nextPageToken: page.nextPageToken };
    },

    /** Asks the saga to compensate; the order turns CANCELLED once it has. */
    async cancel(orderId: string, forCustomer?: string): Promise<StoredOrder> {
      const order = await this.get(orderId, forCustomer);
      assertCancellable(orderId, order.status);
      if (order.status === "pending" && (await saga.requestCancel(orderId)) === "past-point-of-no-return") {
        throw new OrderTransitionError(orderId, "being confirmed", "cancel");
      }
      return this.get(orderId);
    },

    /**
     * Hands the customer's 3-D Secure confirmation to the order's saga, once per
     * confirmation id; one that comes before the charge asks for it is kept until it does.
     * A finished order has nothing left to confirm, nor has one whose confirmation came too
     * late or that is being cancelled. The saga keeps a bounded number of confirmation ids.
     */
    async confirmPayment(orderId: string, confirmationId: string, forCustomer?: string): Promise<StoredOrder> {
      const order = await this.get(orderId, forCustomer);
      if (order.status !== "pending") throw new OrderTransitionError(orderId, order.status, "confirm the payment of");
      const delivered = await saga.deliverSignal({ aggregateId: orderId, name: paymentConfirmedSignal, signalId: confirmationId });
      switch (delivered) {
        case "not-found":
          throw new SagaNotFoundError(orderId);
        case "closed":
          throw new OrderTransitionError(orderId, "no longer waiting for a payment confirmation", "confirm the payment of");
        case "too-many": {
          const limit = saga.policy.maxSignalsPerSaga;
          throw new ConnectError(`confirmation_id: order ${orderId} has ${limit} confirmation ids already, the most it keeps (limit ${limit}); repeat one of them`, Code.ResourceExhausted);
        }
      }
      const now = await this.get(orderId);
      // Finished between the read above and the delivery: by now the order says how.
      if (delivered === "finished") throw new OrderTransitionError(orderId, now.status, "confirm the payment of");
      return now;
    },
  };
}

export type Orders = ReturnType<typeof createOrders>;
