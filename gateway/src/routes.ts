import { Code, ConnectError, type ConnectRouter, type HandlerContext, type Client } from "@connectrpc/connect";
import { create } from "@bufbuild/protobuf";
import { StorefrontService, PartStatusSchema, type WatchOrderResponse } from "#gen/shop/gateway/v1/storefront_service_pb.js";
import { OrderStatus, type OrderService, type Order } from "#gen/shop/order/v1/order_service_pb.js";
import { ProductSchema, type InventoryService } from "#gen/shop/inventory/v1/inventory_service_pb.js";
import type { PaymentService } from "#gen/shop/payment/v1/payment_service_pb.js";
import { detachedFromDeadline, clientAddressKey, CUSTOMER_HEADER, accessOf } from "#platform";
import { stickyKeyOf } from "#platform/strangler/route-decision.js";
import type { CatalogRouter } from "#shop/catalog-router.js";
import { customerKey, type Authenticator } from "./auth.js";
import type { MeshStatus } from "./mesh-status.js";
import { customerTimeline } from "./order-timeline.js";
import { watchOrderEvents, type OrderEventFeed } from "./order-watch.js";
import { applyOrderEvent, type RecentOrders } from "./recent-orders.js";
import type { WatchSlots } from "./watch-slots.js";

export interface GatewayRouteDeps {
  order: Client<typeof OrderService>;
  inventory: Client<typeof InventoryService>;
  /** Names, descriptions and prices: the old shop or the catalog, as the strangler fig's route table says. */
  catalog: CatalogRouter;
  payment: Client<typeof PaymentService>;
  authenticator: Authenticator;
  meshStatus: MeshStatus;
  orderEvents: OrderEventFeed;
  /** Orders placed here lately, kept current, for the watch that follows. */
  recentOrders: RecentOrders;
  /** How long a WatchOrder stream may stay open. */
  maxWatchMs: number;
  /** Open WatchOrder streams per customer and per address. */
  watchSlots: WatchSlots;
}

/** Methods open to callers without a token. */
export const anonymousMethods: ReadonlySet<string> = new Set(StorefrontService.methods.filter((method) => accessOf(method).callers.has("anyone")).map((method) => method.name));

const partStatus = (err?: unknown) =>
  err === undefined
    ? create(PartStatusSchema, { code: "OK" })
    : create(PartStatusSchema, { code: Code[ConnectError.from(err).code]?.replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase() ?? "UNKNOWN", message: ConnectError.from(err).rawMessage });

const isTerminal = (order: Order) => order.status === OrderStatus.CONFIRMED || order.status === OrderStatus.CANCELLED;

/** The public API: it checks who is calling, then delegates to the services behind it. */
export function createRoutes(deps: GatewayRouteDeps) {
  const { order, inventory, payment } = deps;
  const customerOf = (ctx: HandlerContext) => ctx.values.get(customerKey);
  /**
   * Call options for acting for the caller: order and notification take the customer from
   * this header, which they believe from the gateway's certificate alone, and answer
   * NOT_FOUND for another customer's order.
   */
  const forCustomer = (customer: string, signal: AbortSignal) => ({ signal, headers: { [CUSTOMER_HEADER]: customer } });
  const present = (found: Order | undefined, orderId: string): Order => {
    if (!found) throw new ConnectError(`order ${orderId} not found`, Code.NotFound);
    return found;
  };

  /** The order's current state, then each change, until it is terminal or the watch ends. */
  async function* followOrder(orderId: string, customer: string, ctx: HandlerContext): AsyncGenerator<WatchOrderResponse> {
    // A watch may outlive the per-call deadline cap (MAX_TIMEOUT_MS) the server puts on
    // every call, this stream included: maxWatchMs and the caller leaving bound it. So
    // each read gets the order client's own budget, not what is left of the stream's.
    const read = async () => present((await detachedFromDeadline(() => order.getOrder({ orderId }, forCustomer(customer, ctx.signal)))).order, orderId);
    // Listening starts before the first read, so an event that lands in between is queued,
    // not missed; applying one the read already reflects changes nothing.
    const events = watchOrderEvents(deps.orderEvents, orderId, 2_000);
    const giveUp = AbortSignal.any([ctx.signal, AbortSignal.timeout(deps.maxWatchMs)]);
    giveUp.addEventListener("abort", events.close, { once: true }); // also if abandoned at a yield
    try {
      let current = deps.recentOrders.latest(orderId, customer) ?? (await read());
      yield { $typeName: "shop.gateway.v1.WatchOrderResponse", order: current, eventType: "" };
      if (isTerminal(current)) return;
      for (;;) {
        const event = await events.next(giveUp);
        if (event === undefined) return;
        if (event === "poll") {
          // The fallback while NATS is away: read, and report only a change.
          const next = await read();
          if (next.status === current.status) continue;
          current = next;
          yield { $typeName: "shop.gateway.v1.WatchOrderResponse", order: current, eventType: "" };
        } else {
          // An order leaves PENDING once, and its event says how, so the watch applies it
          // instead of reading the order again. Another context's event (stock reserved,
          // payment captured) cannot change the order; it is reported against it as is.
          current = applyOrderEvent(current, event);
          yield { $typeName: "shop.gateway.v1.WatchOrderResponse", order: current, eventType: event.type };
        }
        if (isTerminal(current)) return;
      }
    } finally {
      events.close();
    }
  }

  return (router: ConnectRouter) =>
    router.service(StorefrontService, {
      async listProducts(_req, ctx) {
        // Sticky per customer when a token came with the call, else per client address.
        const stickyKey = stickyKeyOf({ customerId: customerOf(ctx), clientAddress: ctx.values.get(clientAddressKey) });
        const [catalog, stock] = await Promise.all([deps.catalog.listProducts([], stickyKey, ctx.signal), inventory.listProducts({}, { signal: ctx.signal })]);
        // The catalog says what is sold and at what price; inventory only how many are there.
        const available = new Map(stock.products.map((product) => [product.sku, product.available]));
        return {
          products: catalog.products.map((product) =>
            create(ProductSchema, { sku: product.sku, name: product.name, description: product.description, ...(product.price ? { price: product.price } : {}), available: available.get(product.sku) ?? 0 }),
          ),
        };
      },

      async placeOrder(req, ctx) {
        const { order: placed } = await order.createOrder(
          { customerId: customerOf(ctx), items: req.items, paymentToken: req.paymentToken, requestId: req.requestId },
          forCustomer(customerOf(ctx), ctx.signal),
        );
        if (placed) deps.recentOrders.remember(placed);
        return { order: placed };
      },

      async listMyOrders(req, ctx) {
        const page = await order.listOrders({ customerId: customerOf(ctx), pageSize: req.pageSize, pageToken: req.pageToken }, forCustomer(customerOf(ctx), ctx.signal));
        return { orders: page.orders, nextPageToken: page.nextPageToken };
      },

      async getOrderDetails(req, ctx) {
        const [orderPart, paymentPart, reservationPart] = await Promise.allSettled([
          order.getOrder({ orderId: req.orderId }, forCustomer(customerOf(ctx), ctx.signal)),
          payment.getPayment({ orderId: req.orderId }, { signal: ctx.signal }),
          inventory.getReservation({ orderId: req.orderId }, { signal: ctx.signal }),
        ]);
        if (orderPart.status === "rejected") throw orderPart.reason;
        const found = present(orderPart.value.order, req.orderId);
        return {
          order: found,
          payment:
            paymentPart.status === "fulfilled" ? { status: partStatus(), payments: paymentPart.value.payments } : { status: partStatus(paymentPart.reason) },
          reservation:
            reservationPart.status === "fulfilled"
              ? { status: partStatus(), ...(reservationPart.value.reservation ? { reservation: reservationPart.value.reservation } : {}) }
              : { status: partStatus(reservationPart.reason) },
        };
      },

      async cancelOrder(req, ctx) {
        return { order: (await order.cancelOrder({ orderId: req.orderId }, forCustomer(customerOf(ctx), ctx.signal))).order };
      },

      async confirmPayment(req, ctx) {
        const { order: confirmed } = await order.confirmPayment({ orderId: req.orderId, confirmationId: req.confirmationId }, forCustomer(customerOf(ctx), ctx.signal));
        return { order: present(confirmed, req.orderId) };
      },

      async getOrderTimeline(req, ctx) {
        const found = await order.getOrder({ orderId: req.orderId }, forCustomer(customerOf(ctx), ctx.signal));
        present(found.order, req.orderId);
        return customerTimeline(found);
      },

      async *watchOrder(req, ctx): AsyncGenerator<WatchOrderResponse> {
        const customer = customerOf(ctx);
        const release = deps.watchSlots.acquire(customer, ctx.values.get(clientAddressKey));
        // The signal aborts however the stream ends, even where the generator is abandoned
        // at a yield without being returned (a write that never drains), so the slot is not
        // left held; the finally below covers the ends that come first.
        ctx.signal.addEventListener("abort", release, { once: true });
        try {
          yield* followOrder(req.orderId, customer, ctx);
        } finally {
          release();
        }
      },

      async getMeshStatus() {
        return deps.meshStatus.read();
      },

      async issueDemoToken(req) {
        if (!deps.authenticator.issue) throw new ConnectError("demo tokens are only issued in local auth mode", Code.FailedPrecondition);
        const customerId = req.customerId.trim();
        if (!customerId) throw new ConnectError("customer_id: is required", Code.InvalidArgument);
        const { token, expiresInSeconds } = await deps.authenticator.issue(customerId);
        return { token, expiresInSeconds: BigInt(expiresInSeconds) };
      },
    });
}
