import { asc, count, eq, inArray, sql } from "drizzle-orm";
import type { PostgresJsDatabase } from "drizzle-orm/postgres-js";
import { create } from "@bufbuild/protobuf";
import { appendToOutbox, type DomainEvent, type SqlExecutor } from "#platform";
import { ProductChangeOrigin, ProductChangedSchema } from "#gen/shop/catalog/v1/catalog_events_pb.js";
import { toMoney } from "#shop/money.js";
import { UnmappableChangeError } from "../domain/errors.js";
import { formatLsn, parseLsn } from "../domain/lsn.js";
import type { CapturedProduct, CatalogProduct } from "../domain/product.js";
import { cdcPosition, outbox, products, syncBack, type tables } from "../db/schema.js";

type Db = PostgresJsDatabase<typeof tables>;
export type ProductRow = typeof products.$inferSelect;

/** One source transaction's net effect per SKU: the last change of each wins. */
export type ProductChange = { kind: "upsert"; product: CapturedProduct } | { kind: "delete"; sku: string };

export interface SourceTransaction {
  /** The end of the transaction's commit record: the position to resume after. */
  endLsn: bigint;
  /** A TRUNCATE of the source table, applied before the changes that followed it. */
  truncated: boolean;
  changes: ReadonlyMap<string, ProductChange>;
}

/** What applying a source transaction did. */
export interface ApplyOutcome {
  /** Changes applied to catalog.products. */
  applied: number;
  /** The stored position was already at or past it: nothing done. */
  skipped: boolean;
  /** Changes captured while catalog writes are routed here: the position moved past them, the products did not. */
  held: number;
}

export interface Position {
  lsn: bigint;
  appliedAt: Date;
}

/** The catalog's reads, the change capture's writes and UpdateProduct's; each write is one transaction with its events (and its position, or its sync back row). */
export interface CatalogStore {
  listProducts(skus: readonly string[]): Promise<ProductRow[]>;
  countProducts(): Promise<number>;
  readPosition(): Promise<Position | undefined>;
  /**
   * The whole catalog from the slot's snapshot: replaces every product, and records `lsn`
   * (the slot's consistent point) in the same transaction. `rows` yields the source in batches.
   */
  writeSnapshot(lsn: bigint, rows: AsyncIterable<readonly CatalogProduct[]>): Promise<number>;
  /**
   * Applies a source transaction unless the stored position is already at or past it. With
   * `writesHere` (the route table has moved catalog writes to the catalog, the source of truth
   * now) only the position is committed: what the old shop sends then is the sync back's echo,
   * or a write made past the facade, and applying it could undo a newer write taken here.
   */
  applyTransaction(transaction: SourceTransaction, options?: { writesHere: boolean }): Promise<ApplyOutcome>;
  /**
   * A write taken here (UpdateProduct): the product, its ProductChanged (origin WRITTEN) in the
   * outbox and its sync back row, in one transaction. The same values as stored change nothing
   * and answer the same: `changed` is false.
   */
  updateProduct(product: CatalogProduct): Promise<{ row: ProductRow; changed: boolean }>;
  /** Writes taken here not yet written to the old shop by the sync back (refused ones included). */
  countSyncBackPending(): Promise<number>;
}

const changed = (lsn: bigint, product: CatalogProduct): DomainEvent<typeof ProductChangedSchema> => ({
  schema: ProductChangedSchema,
  message: create(ProductChangedSchema, { ...changeOf(product), lsn: formatLsn(lsn), origin: ProductChangeOrigin.CAPTURED }),
  aggregateType: "product",
  aggregateId: product.sku,
});

const changeOf = (product: CatalogProduct) => ({ sku: product.sku, name: product.name, description: product.description, price: toMoney(product.currency, product.priceMinor) });

const written = (product: CatalogProduct): DomainEvent<typeof ProductChangedSchema> => ({
  schema: ProductChangedSchema,
  message: create(ProductChangedSchema, { ...changeOf(product), origin: ProductChangeOrigin.WRITTEN }),
  aggregateType: "product",
  aggregateId: product.sku,
});

const sameProduct = (row: ProductRow, product: CatalogProduct) =>
  row.name === product.name && row.description === product.description && row.priceMinor === product.priceMinor && row.currency === product.currency;

const removed = (lsn: bigint, sku: string): DomainEvent<typeof ProductChangedSchema> => ({
  schema: ProductChangedSchema,
  message: create(ProductChangedSchema, { sku, removed: true, lsn: formatLsn(lsn), origin: ProductChangeOrigin.CAPTURED }),
  aggregateType: "product",
  aggregateId: sku,
});

export function createCatalogStore(db: Db, slot: string): CatalogStore {
  async function upsert(tx: SqlExecutor, lsn: bigint, product: CatalogProduct) {
    const values = { ...product, sourceLsn: formatLsn(lsn), updatedAt: sql`now()` };
    await tx.insert(products).values(values).onConflictDoUpdate({ target: products.sku, set: values });
  }

  /** The captured product with its description: the stored one when the source left a TOASTed blurb unchanged. */
  async function complete(tx: SqlExecutor, product: CapturedProduct): Promise<CatalogProduct> {
    if (product.description !== undefined) return { ...product, description: product.description };
    const [stored] = await tx.select({ description: products.description }).from(products).where(eq(products.sku, product.sku));
    if (!stored) throw new UnmappableChangeError(product.sku, "blurb", "arrived unchanged for a product the catalog does not hold");
    return { ...product, description: stored.description };
  }

  async function savePosition(tx: SqlExecutor, lsn: bigint) {
    const values = { slot, lsn: formatLsn(lsn), appliedAt: sql`now()` };
    await tx.insert(cdcPosition).values(values).onConflictDoUpdate({ target: cdcPosition.slot, set: values });
  }

  return {
    async listProducts(skus) {
      const query = db.select().from(products);
      return (skus.length > 0 ? query.where(inArray(products.sku, [...skus])) : query).orderBy(asc(products.sku));
    },

    async countProducts() {
      const [row] = await db.select({ n: count() }).from(products);
      return row?.n ?? 0;
    },

    async readPosition() {
      const [row] = await db.select().from(cdcPosition).where(eq(cdcPosition.slot, slot));
      return row && { lsn: parseLsn(row.lsn), appliedAt: row.appliedAt };
    },

    writeSnapshot(lsn, batches) {
      return db.transaction(async (tx) => {
        await tx.delete(products);
        let written = 0;
        for await (const batch of batches) {
          for (const product of batch) await upsert(tx, lsn, product);
          await appendToOutbox(tx, outbox, batch.map((product) => changed(lsn, product)));
          written += batch.length;
        }
        await savePosition(tx, lsn);
        return written;
      });
    },

    applyTransaction({ endLsn, truncated, changes }, { writesHere } = { writesHere: false }) {
      return db.transaction(async (tx) => {
        // The row lock also orders this against any other writer of the slot's position.
        const [stored] = await tx.select({ lsn: cdcPosition.lsn }).from(cdcPosition).where(eq(cdcPosition.slot, slot)).for("update");
        if (!stored) throw new Error(`slot ${slot} has no position: a transaction arrived before the backfill committed`);
        // Delivered again after a crash before its acknowledgement reached the source.
        if (parseLsn(stored.lsn) >= endLsn) return { applied: 0, skipped: true, held: 0 };
        if (writesHere) {
          await savePosition(tx, endLsn);
          return { applied: 0, skipped: false, held: changes.size + (truncated ? 1 : 0) };
        }
        const events: DomainEvent<typeof ProductChangedSchema>[] = [];
        if (truncated) {
          const gone = await tx.delete(products).returning({ sku: products.sku });
          events.push(...gone.filter(({ sku }) => !changes.has(sku)).map(({ sku }) => removed(endLsn, sku)));
        }
        for (const change of changes.values()) {
          if (change.kind === "delete") {
            await tx.delete(products).where(eq(products.sku, change.sku));
            events.push(removed(endLsn, change.sku));
          } else {
            const product = await complete(tx, change.product);
            await upsert(tx, endLsn, product);
            events.push(changed(endLsn, product));
          }
        }
        await appendToOutbox(tx, outbox, events);
        await savePosition(tx, endLsn);
        return { applied: changes.size + (truncated ? 1 : 0), skipped: false, held: 0 };
      });
    },

    updateProduct(product) {
      return db.transaction(async (tx) => {
        // One writer of a SKU at a time, even of one not held yet, so its events are in commit order.
        await tx.execute(sql`select pg_advisory_xact_lock(hashtextextended(${`catalog.products:${product.sku}`}, 0))`);
        const [stored] = await tx.select().from(products).where(eq(products.sku, product.sku));
        if (stored && sameProduct(stored, product)) return { row: stored, changed: false };
        const values = { ...product, sourceLsn: "", updatedAt: sql`now()` };
        const [row] = await tx.insert(products).values(values).onConflictDoUpdate({ target: products.sku, set: values }).returning();
        const [eventId] = await appendToOutbox(tx, outbox, [written(product)]);
        await tx.insert(syncBack).values({ eventId: eventId!, sku: product.sku });
        return { row: row!, changed: true };
      });
    },

    async countSyncBackPending() {
      const [row] = await db.select({ n: count() }).from(syncBack);
      return row?.n ?? 0;
    },
  };
}
