import { asc, count, eq, inArray, notInArray, sql } from "drizzle-orm";
import type { PostgresJsDatabase } from "drizzle-orm/postgres-js";
import { create } from "@bufbuild/protobuf";
import { appendToOutbox, type DomainEvent, type Logger, type SqlExecutor } from "#platform";
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
  /** Changes of SKUs with writes taken here not yet seen back that are none of them: the position moved past them, the products did not. */
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
   * Applies a source transaction unless the stored position is already at or past it, matching
   * each change against the writes taken here by content, whatever the route table says:
   * - a SKU without sync_back rows: applied (the old shop's to give);
   * - an upsert carrying the values of the SKU's oldest row (or of a later one, the earlier
   *   echoes lost): the echo of the sync back, those rows deleted, nothing applied (the catalog
   *   holds that write or a newer one);
   * - any other change of a SKU with rows (a write past the facade, or a legacy change from
   *   before the move meeting a write here): held, not applied; the write here wins and the
   *   sync back overwrites it in the old shop.
   * `ignoredRouteOption` is not read: the reader still passes it, until its next change drops it.
   */
  applyTransaction(transaction: SourceTransaction): Promise<ApplyOutcome>;
  /**
   * A write taken here (UpdateProduct): the product, its ProductChanged (origin WRITTEN) in the
   * outbox and its sync back row with its values, in one transaction. The same values again are
   * written again: the PUT repairs an old shop that diverged.
   */
  updateProduct(product: CatalogProduct): Promise<{ row: ProductRow }>;
  /** Writes taken here whose echo the capture has not yet seen from the old shop (refused ones included). */
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

/** A captured product carries a write's values; a blurb the source left unchanged (TOASTed) is taken as the write's. */
const carries = (captured: CapturedProduct, write: CatalogProduct) =>
  captured.name === write.name &&
  (captured.description === undefined || captured.description === write.description) &&
  captured.priceMinor === write.priceMinor &&
  captured.currency === write.currency;

const removed = (lsn: bigint, sku: string): DomainEvent<typeof ProductChangedSchema> => ({
  schema: ProductChangedSchema,
  message: create(ProductChangedSchema, { sku, removed: true, lsn: formatLsn(lsn), origin: ProductChangeOrigin.CAPTURED }),
  aggregateType: "product",
  aggregateId: sku,
});

/** `logger` takes the warning for each held change; a test of the capture alone may leave it out. */
export function createCatalogStore(db: Db, slot: string, logger?: Logger): CatalogStore {
  const log = logger?.child({ component: "catalog-store" });

  /**
   * One writer of a SKU at a time, even of one not held yet: UpdateProduct's events are in commit
   * order, and the capture's match against a SKU's writes cannot miss one committing meanwhile.
   */
  const lockSku = (tx: SqlExecutor, sku: string) => tx.execute(sql`select pg_advisory_xact_lock(hashtextextended(${`catalog.products:${sku}`}, 0))`);

  /** The SKU's writes taken here not yet seen back, oldest first, locked against the sync back's marking. */
  const writesNotSeenBack = (tx: SqlExecutor, sku: string) => tx.select().from(syncBack).where(eq(syncBack.sku, sku)).orderBy(asc(syncBack.seq)).for("update");

  /** Whether the change is the echo of writes taken here (their rows then deleted), or held against them; undefined: the SKU has none. */
  async function matchEcho(tx: SqlExecutor, change: ProductChange): Promise<"echo" | "held" | undefined> {
    const sku = change.kind === "delete" ? change.sku : change.product.sku;
    await lockSku(tx, sku);
    const rows = await writesNotSeenBack(tx, sku);
    if (rows.length === 0) return undefined;
    if (change.kind === "delete") return "held";
    const echoed = rows.findIndex((row) => carries(change.product, row));
    if (echoed < 0) return "held";
    await tx.delete(syncBack).where(inArray(syncBack.eventId, rows.slice(0, echoed + 1).map((row) => row.eventId)));
    return "echo";
  }

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

    async applyTransaction({ endLsn, truncated, changes }) {
      const heldSkus: string[] = [];
      const outcome = await db.transaction(async (tx): Promise<ApplyOutcome> => {
        heldSkus.length = 0; // a retried transaction starts over
        // The row lock also orders this against any other writer of the slot's position.
        const [stored] = await tx.select({ lsn: cdcPosition.lsn }).from(cdcPosition).where(eq(cdcPosition.slot, slot)).for("update");
        if (!stored) throw new Error(`slot ${slot} has no position: a transaction arrived before the backfill committed`);
        // Delivered again after a crash before its acknowledgement reached the source.
        if (parseLsn(stored.lsn) >= endLsn) return { applied: 0, skipped: true, held: 0 };
        const events: DomainEvent<typeof ProductChangedSchema>[] = [];
        let applied = 0;
        if (truncated) {
          // A SKU written here and not seen back keeps its product: the write here wins.
          const kept = await tx.selectDistinct({ sku: syncBack.sku }).from(syncBack);
          const keptSkus = kept.map(({ sku }) => sku);
          const gone = await tx
            .delete(products)
            .where(keptSkus.length > 0 ? notInArray(products.sku, keptSkus) : undefined)
            .returning({ sku: products.sku });
          events.push(...gone.filter(({ sku }) => !changes.has(sku)).map(({ sku }) => removed(endLsn, sku)));
          heldSkus.push(...keptSkus.filter((sku) => !changes.has(sku)));
          applied += 1;
        }
        for (const change of changes.values()) {
          const match = await matchEcho(tx, change);
          if (match === "echo") continue;
          if (match === "held") {
            heldSkus.push(change.kind === "delete" ? change.sku : change.product.sku);
            continue;
          }
          applied += 1;
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
        return { applied, skipped: false, held: heldSkus.length };
      });
      if (outcome.held > 0) {
        log?.warn(
          { lsn: formatLsn(endLsn), skus: heldSkus.slice(0, 10), changes: outcome.held },
          "captured change not applied: its SKU has writes taken here not yet seen back from the old shop, and it is none of them (a write past the facade, or a legacy change meeting a write here); the write here wins and the sync back overwrites it",
        );
      }
      return outcome;
    },

    updateProduct(product) {
      return db.transaction(async (tx) => {
        await lockSku(tx, product.sku);
        const values = { ...product, sourceLsn: "", updatedAt: sql`now()` };
        const [row] = await tx.insert(products).values(values).onConflictDoUpdate({ target: products.sku, set: values }).returning();
        const [eventId] = await appendToOutbox(tx, outbox, [written(product)]);
        await tx.insert(syncBack).values({ eventId: eventId!, ...product });
        return { row: row! };
      });
    },

    async countSyncBackPending() {
      const [row] = await db.select({ n: count() }).from(syncBack);
      return row?.n ?? 0;
    },
  };
}
