import { sql, type SQL } from "drizzle-orm";
import type { ReservationStatus, StockLine } from "../domain/reservation.js";
import type { DescMessage } from "@bufbuild/protobuf";
import { rowsOf as rows, outboxAppend, type DomainEvent, type SqlExecutor } from "#platform";
import { outbox, products, reservationItems, reservations } from "../db/schema.js";

/**
 * Inventory's writes as single statements: each use case's reads, checks and writes travel in
 * one round trip (data-modifying CTEs), not one per row. Lines travel as one JSON parameter.
 *
 * Every statement that moves stock locks the product rows it touches in SKU order before it
 * changes any: `lockedInSkuOrder` is read whole by a one-time filter of the update, so two
 * orders sharing SKUs queue on the first one instead of deadlocking.
 */
const linesOf = (lines: readonly StockLine[]) => sql`(select * from jsonb_to_recordset(${JSON.stringify(lines)}::jsonb) as l(sku text, quantity int))`;

const lockedInSkuOrder = (skus: SQL) => sql`(select p.sku, p.available from ${products} p where p.sku in ${skus} order by p.sku for update)`;


/** A reservation's items as the statements return them: [sku, quantity] pairs, in SKU order. */
const itemsFrom = (pairs: [string, number][]): StockLine[] => pairs.map(([sku, quantity]) => ({ sku, quantity }));

export interface TakeOutcome {
  /** The reservation was made now: every line had enough stock, and it was taken. */
  created: boolean;
  /** Every line had enough stock (whether or not the order already had a reservation). */
  enough: boolean;
  /** The locked stock of the requested SKUs that exist, for saying why not. */
  available: Map<string, number>;
}

/**
 * If every line has enough stock: claims the order's reservation and, if the order had none,
 * takes the stock (available to reserved), records the items and appends `event`. All in one
 * statement, atomic without BEGIN and COMMIT, so nothing is written unless all of it is.
 * Concurrent calls for one order queue on the SKUs' locks, then on the unique order_id: the
 * loser's claim does nothing, and it reads the winner's reservation.
 */
export async function takeStock(db: SqlExecutor, reservation: { id: string; orderId: string }, lines: readonly StockLine[], event: DomainEvent<DescMessage>): Promise<TakeOutcome> {
  const appended = outboxAppend(outbox, [event], sql`exists (select from claimed)`);
  const [row] = await rows<{ created: boolean; enough: boolean; stock: [string, number][] }>(
    db,
    sql`with lines as materialized ${linesOf(lines)},
    stock as materialized ${lockedInSkuOrder(sql`(select sku from lines)`)},
    enough as (select count(*) = ${lines.length}::int as ok from stock s join lines l using (sku) where s.available >= l.quantity),
    claimed as (
      insert into ${reservations} (id, order_id, status) select ${reservation.id}::uuid, ${reservation.orderId}, 'reserved' where (select ok from enough)
      on conflict (order_id) do nothing returning id),
    taken as (
      update ${products} p set available = p.available - l.quantity, reserved = p.reserved + l.quantity, updated_at = now()
      from lines l where p.sku = l.sku and exists (select from claimed)),
    items as (
      insert into ${reservationItems} (reservation_id, sku, quantity)
      select c.id, l.sku, l.quantity from claimed c, lines l),
    ${appended.cte}
    select exists (select from claimed) as created, (select ok from enough) as enough,
      coalesce((select json_agg(json_build_array(sku, available)) from stock), '[]') as stock, ${appended.notify} as notified`,
  );
  return { created: row!.created, enough: row!.enough, available: new Map(row!.stock) };
}

/**
 * Moves a reservation from `from` to `to` with its stock (reserved to sold on commit,
 * reserved back to available on release), if it is in `from`; returns its id and items, or
 * undefined if it was not (absent, or already moved: the caller reads it to say which).
 */
export async function moveReservation(db: SqlExecutor, orderId: string, move: { from: ReservationStatus; to: ReservationStatus; stock: "sell" | "return" }) {
  const change = move.stock === "sell" ? sql`reserved = p.reserved - i.quantity, sold = p.sold + i.quantity` : sql`reserved = p.reserved - i.quantity, available = p.available + i.quantity`;
  const [row] = await rows<{ id: string | null; items: [string, number][] }>(
    db,
    sql`with moved as (
      update ${reservations} set status = ${move.to}, updated_at = now() where order_id = ${orderId} and status = ${move.from} returning id),
    items as materialized (select i.sku, i.quantity from ${reservationItems} i where i.reservation_id = (select id from moved)),
    locked as materialized ${lockedInSkuOrder(sql`(select sku from items)`)},
    stock as (
      update ${products} p set ${change}, updated_at = now()
      from items i where p.sku = i.sku and (select count(*) from locked) > 0)
    select (select id from moved) as id, coalesce((select json_agg(json_build_array(sku, quantity) order by sku) from items), '[]') as items`,
  );
  return row!.id === null ? undefined : { id: row!.id, items: itemsFrom(row!.items) };
}

/** The order's reservation with its items, in one statement; locked for update if asked. */
export async function readReservation(db: SqlExecutor, orderId: string, lock: boolean) {
  const [row] = await rows<{ id: string; orderId: string; status: ReservationStatus; items: [string, number][] }>(
    db,
    sql`select r.id, r.order_id as "orderId", r.status,
      coalesce((select json_agg(json_build_array(i.sku, i.quantity) order by i.sku) from ${reservationItems} i where i.reservation_id = r.id), '[]') as items
    from ${reservations} r where r.order_id = ${orderId} ${lock ? sql`for update` : sql``}`,
  );
  return row && { ...row, items: itemsFrom(row.items) };
}
