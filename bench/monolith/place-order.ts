import { randomUUID } from "node:crypto";
import postgres, { type Sql } from "postgres";
import type { Product } from "#services/inventory/src/app/inventory.js";
import { InsufficientStockError } from "#services/inventory/src/domain/errors.js";
import { sortBySku } from "#services/inventory/src/domain/reservation.js";
import { notificationText } from "#services/notification/src/domain/notification.js";
import type { OrderLineRow, OrderRow, StoredOrder } from "#services/order/src/app/order-store.js";
import { assertSameRequest, priceOrder, requestFingerprint, validateNewOrder, type NewOrder, type PricedOrder } from "#services/order/src/domain/order.js";
import type { CardNetwork } from "#services/payment/src/app/card-network.js";
import type { PaymentRow } from "#services/payment/src/app/payments.js";

/**
 * The monolith's pool: rows come back in the services' own shapes (camelCase, minor units as
 * numbers, as drizzle's `mode: "number"` gives them), so the services' wire mappers serve it.
 * Every query below is a tagged template with a fixed text, so postgres.js prepares it once
 * per connection.
 */
export function openMonolithPool(url: string): Sql {
  return postgres(url, {
    max: 10,
    onnotice: () => {},
    transform: postgres.toCamel,
    types: { int8AsNumber: { to: 20, from: [20], serialize: (x: number) => String(x), parse: (x: string) => Number(x) } },
  });
}

/** An order row joined with one of its lines. */
type OrderWithLine = OrderRow & Omit<OrderLineRow, "orderId">;
type Settled = Pick<PaymentRow, "status" | "declineReason" | "providerReference">;
type Outcome = { status: "confirmed"; payment: Settled } | { status: "cancelled"; reason: string; payment?: Settled };

/** A concurrent request with the same request id stored its order first. */
class RequestReplayed extends Error {}

/**
 * The monolith baseline: the place-order flow the saga runs across three services, as one
 * process with one database would do it well, in ONE Postgres transaction per order, with the
 * services' own domain rules (validation, pricing, request fingerprints, notification text)
 * and their tables.
 *
 * Everything that can be decided without a lock is decided first: the catalog is read (prices
 * and a first look at stock), and the card network is called (in-process here; never inside a
 * transaction). The transaction then writes the order, its lines, the payment and the
 * notification, and takes the product rows last, with one conditional UPDATE per line in SKU
 * order (no deadlocks), so a row lock is held for that statement and the COMMIT alone. If the
 * stock went between the first look and the UPDATE, the transaction rolls back, the capture
 * is refunded and the order is stored as out of stock.
 *
 * What it does not have is what distribution costs: RPC hops, saga bookkeeping, reservations
 * held between steps, outboxes, their relay and consumers, inboxes. Stock moves straight from
 * available to sold. One thing favours it: the mesh records a payment intent durably before
 * calling the card network; here a crash between capture and COMMIT leaves a capture that
 * only the client's retry (same request id, same order) would not repeat.
 */
export function createMonolith(sql: Sql, cardNetwork: CardNetwork) {
  function foldLines(rows: readonly OrderWithLine[]): StoredOrder | undefined {
    const [first] = rows;
    if (!first) return undefined;
    const { id, customerId, requestId, requestFingerprint, status, totalMinor, currency, cancelReason, createdAt, updatedAt } = first;
    const lines = rows.map(({ lineNo, sku, name, quantity, unitPriceMinor }) => ({ orderId: id, lineNo, sku, name, quantity, unitPriceMinor }));
    return { id, customerId, requestId, requestFingerprint, status, totalMinor, currency, cancelReason, createdAt, updatedAt, lines };
  }

  const orderById = async (orderId: string) =>
    foldLines(await sql<OrderWithLine[]>`
      select o.*, l.line_no, l.sku, l.name, l.quantity, l.unit_price_minor
      from orders.orders o join orders.order_lines l on l.order_id = o.id
      where o.id = ${orderId} order by l.line_no`);

  const orderByRequest = async (customerId: string, requestId: string) =>
    foldLines(await sql<OrderWithLine[]>`
      select o.*, l.line_no, l.sku, l.name, l.quantity, l.unit_price_minor
      from orders.orders o join orders.order_lines l on l.order_id = o.id
      where o.customer_id = ${customerId} and o.request_id = ${requestId} order by l.line_no`);

  /** A replay answers with the order its request id made, if it asks for the same order. */
  async function original(order: NewOrder, fingerprint: string): Promise<StoredOrder | undefined> {
    const existing = await orderByRequest(order.customerId, order.requestId);
    if (existing) assertSameRequest(existing.requestFingerprint, fingerprint);
    return existing;
  }

  async function charge(orderId: string, priced: PricedOrder, token: string): Promise<Settled> {
    const amount = { currency: priced.currency, minorUnits: priced.totalMinor };
    const result = await cardNetwork.capture({ idempotencyKey: `${orderId}:charge`, token, amount });
    return result.outcome === "captured"
      ? { status: "captured", declineReason: null, providerReference: result.reference }
      : { status: "declined", declineReason: result.reason, providerReference: null };
  }

  async function refund(orderId: string, priced: PricedOrder, payment: Settled | undefined): Promise<void> {
    if (payment?.status !== "captured") return;
    await cardNetwork.refund({ idempotencyKey: `${orderId}:refund`, reference: payment.providerReference!, amount: { currency: priced.currency, minorUnits: priced.totalMinor } });
  }

  /** The one transaction: every row of the order, the product rows last. */
  async function record(orderId: string, order: NewOrder, fingerprint: string, priced: PricedOrder, outcome: Outcome): Promise<StoredOrder> {
    const cancelReason = outcome.status === "cancelled" ? outcome.reason : null;
    const { currency, totalMinor, lines } = priced;
    const stored = await sql.begin(async (tx) => {
      const [row] = await tx<Pick<OrderRow, "createdAt" | "updatedAt">[]>`
        insert into orders.orders (id, customer_id, request_id, request_fingerprint, status, total_minor, currency, cancel_reason)
        values (${orderId}, ${order.customerId}, ${order.requestId}, ${fingerprint}, ${outcome.status}, ${totalMinor}, ${currency}, ${cancelReason})
        on conflict (customer_id, request_id) do nothing
        returning created_at, updated_at`;
      if (!row) throw new RequestReplayed();
      await tx`
        insert into orders.order_lines (order_id, line_no, sku, name, quantity, unit_price_minor)
        select ${orderId}, n - 1, sku, name, quantity, unit_price_minor
        from unnest(${tx.array(lines.map((l) => l.sku))}::text[], ${tx.array(lines.map((l) => l.name))}::text[],
          ${tx.array(lines.map((l) => l.quantity))}::int4[], ${tx.array(lines.map((l) => l.unitPriceMinor))}::int8[])
          with ordinality as l(sku, name, quantity, unit_price_minor, n)`;
      if (outcome.payment) {
        const { status, declineReason, providerReference } = outcome.payment;
        await tx`
          insert into payment.payments (id, order_id, idempotency_key, amount_minor, currency, status, decline_reason, provider_reference)
          values (${randomUUID()}, ${orderId}, ${`${orderId}:charge`}, ${totalMinor}, ${currency}, ${status}, ${declineReason}, ${providerReference})`;
      }
      const kind = outcome.status === "confirmed" ? "order_confirmed" : "order_cancelled";
      const message = notificationText(kind, orderId, outcome.status === "confirmed" ? { totalMinor, currency } : { reason: outcome.reason });
      await tx`
        insert into notification.notifications (id, event_id, customer_id, order_id, kind, message)
        values (${randomUUID()}, ${randomUUID()}, ${order.customerId}, ${orderId}, ${kind}, ${message})`;
      if (outcome.status === "confirmed") {
        for (const { sku, quantity } of sortBySku(lines)) {
          // The guard in WHERE makes the check and the decrement one atomic step.
          const taken = await tx`
            update inventory.products set available = available - ${quantity}, sold = sold + ${quantity}, updated_at = now()
            where sku = ${sku} and available >= ${quantity} returning 1`;
          if (taken.length === 0) {
            const [left] = await tx<{ available: number }[]>`select available from inventory.products where sku = ${sku}`;
            throw new InsufficientStockError(sku, quantity, left?.available ?? 0);
          }
        }
      }
      return row;
    });
    return {
      id: orderId,
      customerId: order.customerId,
      requestId: order.requestId,
      requestFingerprint: fingerprint,
      status: outcome.status,
      totalMinor,
      currency,
      cancelReason,
      ...stored,
      lines: lines.map((line, lineNo) => ({ orderId, lineNo, ...line })),
    };
  }

  return {
    /** Answers with the order already terminal: confirmed, or cancelled with its reason. */
    async placeOrder(request: NewOrder): Promise<StoredOrder> {
      const order = validateNewOrder(request);
      const fingerprint = requestFingerprint(order);
      const existing = await original(order, fingerprint);
      if (existing) return existing;
      const skus = [...new Set(order.items.map((item) => item.sku))];
      const catalog = await sql<(Pick<Product, "sku" | "name" | "priceMinor" | "currency" | "available">)[]>`
        select sku, name, price_minor, currency, available from inventory.products where sku = any(${sql.array(skus)}::text[])`;
      const priced = priceOrder(order.items, new Map(catalog.map((p) => [p.sku, p])));
      const available = new Map(catalog.map((p) => [p.sku, p.available]));
      const short = priced.lines.find((line) => available.get(line.sku)! < line.quantity);
      const orderId = randomUUID();
      const payment = short ? undefined : await charge(orderId, priced, order.paymentToken);
      const outcome: Outcome = short
        ? { status: "cancelled", reason: `out of stock: ${new InsufficientStockError(short.sku, short.quantity, available.get(short.sku)!).message}` }
        : payment!.status === "captured"
          ? { status: "confirmed", payment: payment! }
          : { status: "cancelled", reason: `payment declined: ${payment!.declineReason}`, payment: payment! };
      const settle = async (outcome: Outcome): Promise<StoredOrder> => {
        try {
          return await record(orderId, order, fingerprint, priced, outcome);
        } catch (err) {
          if (err instanceof RequestReplayed) {
            await refund(orderId, priced, payment); // our own capture, under our own order id
            return (await original(order, fingerprint))!;
          }
          if (!(err instanceof InsufficientStockError) || outcome.status !== "confirmed") throw err;
          await refund(orderId, priced, payment);
          return settle({ status: "cancelled", reason: `out of stock: ${err.message}`, payment: { ...outcome.payment, status: "refunded" } });
        }
      };
      return settle(outcome);
    },

    findOrder: orderById,

    listProducts: () => sql<Product[]>`select * from inventory.products order by sku`,

    paymentsFor: (orderId: string) => sql<PaymentRow[]>`select * from payment.payments where order_id = ${orderId} order by created_at`,
  };
}

export type Monolith = ReturnType<typeof createMonolith>;
