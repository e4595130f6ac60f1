import type { ConnectRouter } from "@connectrpc/connect";
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { toMoney as money } from "#shop/money.js";
import { OrderSchema, OrderService, OrderStatus } from "#gen/shop/order/v1/order_service_pb.js";
import type { StoredOrder } from "../app/order-store.js";
import type { Orders } from "../app/orders.js";
import { requireCustomerId, parseOrderId, type OrderStatus as DomainStatus } from "../domain/order.js";
import { toSagaStatus } from "./saga-messages.js";
import { actingCustomerOf, customerOf, parseUuid } from "#platform";

const statusToWire: Record<DomainStatus, OrderStatus> = {
  pending: OrderStatus.PENDING,
  confirmed: OrderStatus.CONFIRMED,
  cancelled: OrderStatus.CANCELLED,
};

export function toOrderMessage(order: StoredOrder) {
  return create(OrderSchema, {
    id: order.id,
    customerId: order.customerId,
    items: order.lines.map((line) => ({
      sku: line.sku,
      name: line.name,
      quantity: line.quantity,
      unitPrice: money(order.currency, line.unitPriceMinor),
      lineTotal: money(order.currency, line.unitPriceMinor * line.quantity),
    })),
    total: money(order.currency, order.totalMinor),
    status: statusToWire[order.status],
    cancelReason: order.cancelReason ?? "",
    createTime: timestampFromDate(order.createdAt),
    updateTime: timestampFromDate(order.updatedAt),
  });
}

/** Maps the wire contract onto ordering's use cases; no business rules live here. */
export function createRoutes({ orders }: { orders: Orders }) {
  return (router: ConnectRouter) =>
    router.service(OrderService, {
      async createOrder(req, ctx) {
        // The contract admits only the gateway, and makes it name the customer.
        const customerId = customerOf(ctx, req.customerId) ?? "";
        const order = await orders.create({ customerId, items: req.items, paymentToken: req.paymentToken, requestId: req.requestId });
        return { order: toOrderMessage(order) };
      },
      async getOrder(req, ctx) {
        const { order, saga } = await orders.inspect(parseOrderId(req.orderId), actingCustomerOf(ctx));
        return { order: toOrderMessage(order), ...(saga ? { saga: toSagaStatus(saga) } : {}) };
      },
      async listOrders(req, ctx) {
        const page = await orders.list(requireCustomerId(customerOf(ctx, req.customerId) ?? req.customerId), req.pageSize, req.pageToken);
        return { orders: page.orders.map(toOrderMessage), nextPageToken: page.nextPageToken };
      },
      async cancelOrder(req, ctx) {
        return { order: toOrderMessage(await orders.cancel(parseOrderId(req.orderId), actingCustomerOf(ctx))) };
      },
      async confirmPayment(req, ctx) {
        const orderId = parseOrderId(req.orderId);
        const order = await orders.confirmPayment(orderId, parseUuid(req.confirmationId, "confirmation_id"), actingCustomerOf(ctx));
        return { order: toOrderMessage(order) };
      },
    });
}
