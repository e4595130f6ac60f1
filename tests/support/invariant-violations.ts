import type { Sql } from "postgres";
import { publishers } from "#mesh";
import { demoCatalog } from "#services/inventory/src/domain/demo-catalog.js";

/**
 * The business invariants no crash or network fault may break, read straight from every
 * service's schema. Each check returns what it found wrong, as sentences (empty when all
 * holds), so the chaos command can print them and a test can assert there are none.
 */

/** Units per SKU the mesh should account for: the seeded catalog plus any restocks. */
export type StockLedger = Record<string, number>;

/** The demo catalog's seeded stock, what a fresh mesh holds before any restock. */
export const seededStock = (): StockLedger => Object.fromEntries(demoCatalog.map((entry) => [entry.sku, entry.initialStock]));

/** A few examples, so a violation names rows without flooding the report. */
const sample = (items: string[], max = 3) => items.slice(0, max).join("; ") + (items.length > max ? `; … ${items.length - max} more` : "");

/** Orders a client was told were accepted that the order service does not have. */
export async function findLostOrders(sql: Sql, acceptedOrderIds: readonly string[]): Promise<string[]> {
  if (acceptedOrderIds.length === 0) return [];
  const found = new Set((await sql`select id::text from orders.orders where id = any(${acceptedOrderIds as string[]}::uuid[])`).map((r) => r["id"] as string));
  const lost = acceptedOrderIds.filter((id) => !found.has(id));
  return lost.length ? [`${lost.length} accepted orders lost: ${sample(lost)}`] : [];
}

/** Orders still pending, with their saga's state and last error to say why. */
export async function findPendingOrders(sql: Sql): Promise<string[]> {
  const pending = await sql`
    select o.id, s.state, s.last_error from orders.orders o left join orders.sagas s on s.aggregate_id = o.id::text
    where o.status = 'pending' order by o.created_at`;
  const described = pending.map((r) => `${r["id"]} (saga ${r["state"] ?? "missing"}${r["last_error"] ? `: ${String(r["last_error"]).slice(0, 120)}` : ""})`);
  return pending.length ? [`${pending.length} orders not terminal: ${sample(described)}`] : [];
}

/**
 * Charging mistakes that no later step can undo: an order captured (or refunded) twice, a
 * cancelled order left captured. These hold at every moment, terminal or not.
 */
export async function findDoubleCharges(sql: Sql): Promise<string[]> {
  const doubles = await sql`
    select order_id, count(*)::int as n from payment.payments where status in ('captured', 'refunded')
    group by order_id having count(*) > 1`;
  const chargedCancelled = await sql`
    select p.order_id from payment.payments p join orders.orders o on o.id::text = p.order_id
    where o.status = 'cancelled' and p.status = 'captured'`;
  return [
    ...(doubles.length ? [`${doubles.length} orders charged more than once: ${sample(doubles.map((r) => `${r["order_id"]} ×${r["n"]}`))}`] : []),
    ...(chargedCancelled.length ? [`${chargedCancelled.length} cancelled orders left captured: ${sample(chargedCancelled.map((r) => r["order_id"] as string))}`] : []),
  ];
}

/** Once every order is terminal, the money captured is exactly the confirmed orders' total. */
export async function findMoneyMismatch(sql: Sql): Promise<string[]> {
  const [money] = await sql`
    select
      (select coalesce(sum(total_minor), 0)::bigint from orders.orders where status = 'confirmed') as confirmed,
      (select coalesce(sum(amount_minor), 0)::bigint from payment.payments where status = 'captured') as captured`;
  return money?.["captured"] === money?.["confirmed"] ? [] : [`captured ${money?.["captured"]} minor units, but confirmed orders total ${money?.["confirmed"]}`];
}

/**
 * 3-D Secure (tok_3ds): money moves only with the customer's confirmation. A confirmed tok_3ds
 * order's charge wait took a "payment-confirmed" signal (consumed, its id on the wait) that
 * arrived by the wait's deadline, and its payment was captured after it arrived; an order
 * whose customer never confirmed (`unconfirmedOrderIds`, as the client that placed it knows)
 * ended cancelled; and no payment of a finished order is still waiting for a confirmation
 * (compensation voids it).
 */
export async function findUnconfirmedPayments(sql: Sql, unconfirmedOrderIds: readonly string[]): Promise<string[]> {
  const unsignalled = await sql`
    select o.id::text from orders.orders o join orders.sagas s on s.aggregate_id = o.id::text
    where o.status = 'confirmed' and s.payload->>'paymentToken' = 'tok_3ds'
      and not exists (
        select from orders.saga_waits w
        join orders.saga_signals g on g.saga_id = w.saga_id and g.signal_id = w.signal_id
        join payment.payments p on p.order_id = o.id::text and p.status = 'captured'
        where w.saga_id = s.id and w.name = 'payment-confirmed' and w.outcome = 'signalled'
          and g.consumed_at is not null and g.received_at <= w.due_at and p.updated_at >= g.received_at)`;
  const confirmedUnasked = unconfirmedOrderIds.length
    ? await sql`select id::text from orders.orders where id = any(${unconfirmedOrderIds as string[]}::uuid[]) and status <> 'cancelled'`
    : [];
  const awaiting = await sql`
    select p.order_id from payment.payments p join orders.orders o on o.id::text = p.order_id
    where o.status <> 'pending' and p.status = 'requires_action'`;
  const ids = (rows: readonly Record<string, unknown>[], column: string) => sample(rows.map((r) => r[column] as string));
  return [
    ...(unsignalled.length ? [`${unsignalled.length} tok_3ds orders confirmed without the customer's confirmation signal: ${ids(unsignalled, "id")}`] : []),
    ...(confirmedUnasked.length ? [`${confirmedUnasked.length} tok_3ds orders never confirmed by their customer did not end cancelled: ${ids(confirmedUnasked, "id")}`] : []),
    ...(awaiting.length ? [`${awaiting.length} finished orders left a payment awaiting confirmation: ${ids(awaiting, "order_id")}`] : []),
  ];
}

/**
 * For every SKU, available + reserved + sold equals what was put in (`ledger`), nothing stays
 * reserved, and sold equals what confirmed orders bought.
 */
export async function findStockDrift(sql: Sql, ledger: StockLedger): Promise<string[]> {
  const stock = await sql`select sku, available, reserved, sold from inventory.products`;
  const soldByOrders = await sql`
    select l.sku, sum(l.quantity)::int as sold from orders.order_lines l join orders.orders o on o.id = l.order_id
    where o.status = 'confirmed' group by l.sku`;
  const found: string[] = [];
  for (const [sku, units] of Object.entries(ledger)) {
    const s = stock.find((r) => r["sku"] === sku);
    if (!s) {
      found.push(`${sku} missing from inventory`);
      continue;
    }
    const total = s["available"] + s["reserved"] + s["sold"];
    const bought = soldByOrders.find((r) => r["sku"] === sku)?.["sold"] ?? 0;
    if (total !== units) found.push(`${sku}: available ${s["available"]} + reserved ${s["reserved"]} + sold ${s["sold"]} = ${total}, expected ${units}`);
    if (s["reserved"] !== 0) found.push(`${sku}: ${s["reserved"]} units left reserved`);
    if (s["sold"] !== bought) found.push(`${sku}: sold ${s["sold"]}, but confirmed orders bought ${bought}`);
  }
  return found;
}

/** Sagas that have not finished, e.g. parked after the point of no return. */
export async function findUnfinishedSagas(sql: Sql): Promise<string[]> {
  const open = await sql`select aggregate_id, state, last_error from orders.sagas where state not in ('completed', 'compensated')`;
  return open.length ? [`${open.length} sagas unfinished: ${sample(open.map((r) => `${r["aggregate_id"]} ${r["state"]}${r["last_error"] ? `: ${String(r["last_error"]).slice(0, 120)}` : ""}`))}`] : [];
}

/**
 * Every event left its outbox, and every terminal order's terminal event took effect exactly
 * once: one notification per order, of the kind its status says.
 */
export async function findEventGaps(sql: Sql): Promise<string[]> {
  // Every outbox the manifest says feeds a stream.
  const outboxes = publishers.map(({ schema }) => sql`select ${schema} as schema, count(*)::int as n from ${sql(schema)}.outbox where published_at is null`);
  const unpublished = (await Promise.all(outboxes)).flat().filter((row) => row["n"] !== 0).map((row) => [row["schema"], row["n"]]);
  const mismatched = await sql`
    select o.id, o.status, count(n.id)::int as notifications,
           count(n.id) filter (where n.kind = 'order_' || o.status)::int as matching
    from orders.orders o left join notification.notifications n on n.order_id = o.id::text
    where o.status <> 'pending' group by o.id, o.status having count(n.id) <> 1 or count(n.id) filter (where n.kind = 'order_' || o.status) <> 1`;
  return [
    ...(unpublished.length ? [`outbox rows not published: ${unpublished.map(([schema, n]) => `${schema} ${n}`).join(", ")}`] : []),
    ...(mismatched.length
      ? [`${mismatched.length} terminal orders without exactly one matching notification: ${sample(mismatched.map((r) => `${r["id"]} ${r["status"]} has ${r["notifications"]} (${r["matching"]} matching)`))}`]
      : []),
  ];
}

export interface SettleOptions {
  /** How long every order may take to become terminal. */
  terminalWithinMs: number;
  /** How long, once all are terminal, stock and events may take to settle (a redelivery waits out the ack wait). */
  settleWithinMs: number;
  /** Units per SKU put in; the seeded catalog by default. */
  ledger?: StockLedger;
  /** Orders a client was told were accepted; each must exist. */
  acceptedOrderIds?: readonly string[];
  /** tok_3ds orders whose customer never sent a confirmation; each must end cancelled. */
  unconfirmedOrderIds?: readonly string[];
  /** Re-read interval while waiting. */
  intervalMs?: number;
}

/**
 * Waits, within bounds, for the mesh to come to rest, and returns every invariant it breaks
 * (empty if none). First every order must turn terminal; then money is checked once, as it
 * cannot change any more; then stock and events are re-read until they hold or time runs out.
 * If orders stay pending, only what holds regardless of them is checked besides, so the
 * report is not buried under their consequences.
 */
export async function settleInvariants(sql: Sql, options: SettleOptions): Promise<string[]> {
  const intervalMs = options.intervalMs ?? 250;
  const lost = await findLostOrders(sql, options.acceptedOrderIds ?? []);
  const pending = await retryUntilEmpty(() => findPendingOrders(sql), options.terminalWithinMs, intervalMs);
  if (pending.length) return [...lost, ...pending, ...(await findDoubleCharges(sql))];
  const money = [...(await findDoubleCharges(sql)), ...(await findMoneyMismatch(sql)), ...(await findUnconfirmedPayments(sql, options.unconfirmedOrderIds ?? []))];
  const ledger = options.ledger ?? seededStock();
  const settled = await retryUntilEmpty(
    async () => [...(await findUnfinishedSagas(sql)), ...(await findStockDrift(sql, ledger)), ...(await findEventGaps(sql))],
    options.settleWithinMs,
    intervalMs,
  );
  return [...lost, ...money, ...settled];
}

/**
 * Re-runs a check until it finds nothing or time runs out; returns its last findings. A
 * failed read (the database restarting) counts as a finding, so it is retried too.
 */
async function retryUntilEmpty(check: () => Promise<string[]>, timeoutMs: number, intervalMs: number): Promise<string[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = await check().catch((err: unknown) => [`could not read the invariants: ${(err as Error).message}`]);
    if (found.length === 0 || Date.now() >= deadline) return found;
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}
