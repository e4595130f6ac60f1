import type { Sql } from "postgres";
import { seedProducts } from "./catalog-data.js";

/**
 * The old shop's table, as the app creates it at every start (legacy style: idempotent SQL,
 * no migration tool). The schema itself is provisioned for it, owned by its role. Exported so
 * that provisioning and tests can create the same table before the app has ever run.
 */
export const productsTableSql = `
create table if not exists oldshop.products (
  sku text primary key,
  title text not null,
  blurb text not null default '',
  price numeric(12,2) not null,
  currency char(3) not null,
  updated_at timestamptz not null default now()
)`;

/** Serialises concurrent starts (two replicas, say) of the table's creation and seeding. */
const schemaLock = "oldshop:schema";

/** Creates the table if missing and seeds the demo catalog into it if it is empty. */
export async function prepareSchema(sql: Sql): Promise<void> {
  await sql.begin(async (tx) => {
    await tx`select pg_advisory_xact_lock(hashtext(${schemaLock}))`;
    await tx.unsafe(productsTableSql);
    const [existing] = await tx`select 1 from oldshop.products limit 1`;
    if (existing) return;
    for (const p of seedProducts) {
      await tx`insert into oldshop.products (sku, title, blurb, price, currency) values (${p.sku}, ${p.title}, ${p.blurb}, ${p.price}, ${p.currency})`;
    }
  });
}
