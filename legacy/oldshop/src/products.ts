import type { Sql } from "postgres";

/** A product as the old shop's API shows it: decimal-string price, legacy field names. */
export interface Product {
  sku: string;
  title: string;
  blurb: string;
  price: string;
  currency: string;
  updated_at: string;
}

export interface ProductChange {
  title: string;
  blurb: string;
  price: string;
  currency: string;
}

interface Row {
  sku: string;
  title: string;
  blurb: string;
  price: string;
  currency: string;
  updated_at: Date;
}

const toProduct = (row: Row): Product => ({ sku: row.sku, title: row.title, blurb: row.blurb, price: row.price, currency: row.currency, updated_at: row.updated_at.toISOString() });

/** The old shop's data access: one table, plain SQL. */
export function createProducts(sql: Sql) {
  return {
    /** Every product, or those of `skus`, by SKU. */
    async list(skus?: readonly string[]): Promise<Product[]> {
      const rows = skus
        ? await sql<Row[]>`select sku, title, blurb, price, currency, updated_at from oldshop.products where sku = any(${sql.array([...skus])}) order by sku`
        : await sql<Row[]>`select sku, title, blurb, price, currency, updated_at from oldshop.products order by sku`;
      return rows.map(toProduct);
    },

    async get(sku: string): Promise<Product | undefined> {
      const [row] = await sql<Row[]>`select sku, title, blurb, price, currency, updated_at from oldshop.products where sku = ${sku}`;
      return row && toProduct(row);
    },

    async put(sku: string, change: ProductChange): Promise<Product> {
      const [row] = await sql<Row[]>`
        insert into oldshop.products (sku, title, blurb, price, currency) values (${sku}, ${change.title}, ${change.blurb}, ${change.price}, ${change.currency})
        on conflict (sku) do update set title = excluded.title, blurb = excluded.blurb, price = excluded.price, currency = excluded.currency, updated_at = now()
        returning sku, title, blurb, price, currency, updated_at`;
      return toProduct(row!);
    },

    /** Whether there was a product to delete. */
    async remove(sku: string): Promise<boolean> {
      const deleted = await sql`delete from oldshop.products where sku = ${sku}`;
      return deleted.count > 0;
    },
  };
}

export type Products = ReturnType<typeof createProducts>;
