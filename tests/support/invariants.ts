import { expect } from "vitest";
import { demoCatalog } from "../../services/inventory/src/domain/demo-catalog.js";
import type { connect } from "./databases.js";
import { eventually } from "./eventually.js";

type Sql = ReturnType<typeof connect>;

/**
 * The business invariants no crash may break, read straight from every service's schema:
 * - every order is terminal;
 * - money captured (and not refunded) equals the total of the confirmed orders, and no
 *   order was captured twice;
 * - for every SKU, available + reserved + sold equals the seeded stock, nothing stays
 *   reserved, and sold equals what confirmed orders bought;
 * - every outbox row went out, and every terminal order has exactly one notification.
 */
export async function expectInvariants(sql: Sql, options: { timeoutMs?: number } = {}): Promise<void> {
  const timeoutMs = options.timeoutMs ?? 30_000;
  await eventually(async () => {
    const [row] = await sql`select count(*)::int as n from orders.orders where status = 'pending'`;
    expect(row?.["n"], "orders still pending").toBe(0);
  }, timeoutMs);

  const [money] = await sql`
    select
      (select coalesce(sum(total_minor), 0)::bigint from orders.orders where status = 'confirmed') as confirmed,
      (select coalesce(sum(amount_minor), 0)::bigint from payment.payments where status = 'captured') as captured`;
  expect(money?.["captured"], "captured money vs confirmed totals").toBe(money?.["confirmed"]);
  const doubles = await sql`select order_id from payment.payments where status in ('captured', 'refunded') group by order_id having count(*) > 1`;
  expect(doubles, "orders charged more than once").toEqual([]);
  const chargedCancelled = await sql`
    select p.order_id from payment.payments p join orders.orders o on o.id::text = p.order_id
    where o.status = 'cancelled' and p.status = 'captured'`;
  expect(chargedCancelled, "cancelled orders left charged").toEqual([]);

  await eventually(async () => {
    const stock = await sql`select sku, available, reserved, sold from inventory.products`;
    const soldByOrders = await sql`
      select l.sku, sum(l.quantity)::int as sold from orders.order_lines l join orders.orders o on o.id = l.order_id
      where o.status = 'confirmed' group by l.sku`;
    for (const entry of demoCatalog) {
      const s = stock.find((r) => r["sku"] === entry.sku)!;
      expect(s["available"] + s["reserved"] + s["sold"], `${entry.sku} conserved`).toBe(entry.initialStock);
      expect(s["reserved"], `${entry.sku} left reserved`).toBe(0);
      expect(s["sold"], `${entry.sku} sold vs confirmed orders`).toBe(soldByOrders.find((r) => r["sku"] === entry.sku)?.["sold"] ?? 0);
    }
  }, timeoutMs);

  await eventually(async () => {
    const [pending] = await sql`
      select (select count(*) from orders.outbox where published_at is null)
           + (select count(*) from inventory.outbox where published_at is null)
           + (select count(*) from payment.outbox where published_at is null) as n`;
    expect(Number(pending?.["n"]), "outbox rows not yet published").toBe(0);
    const mismatched = await sql`
      select o.id, count(n.id)::int as notifications from orders.orders o
      left join notification.notifications n on n.order_id = o.id::text
      group by o.id having count(n.id) <> 1`;
    expect(mismatched, "terminal orders without exactly one notification").toEqual([]);
  }, timeoutMs);
}
