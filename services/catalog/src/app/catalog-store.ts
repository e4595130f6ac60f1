import { asc, count, eq, inArray, notInArray, sql } from "drizzle-orm";
import type { PostgresJsDatabase } from "drizzle-orm/postgres-js";
import { create } from "@bufbuild/protobuf";
import { appendToOutbox, type DomainEvent, type Logger, type SqlExecutor } from "#platform";
import { ProductChangeOrigin, ProductChangedSchema, type ProductChanged } from "#gen/shop/catalog/v1/catalog_events_pb.js";
import { toMoney } from "#shop/money.js";
import { sqlStateOf } from "#platform/data/db-errors.js";
import { NoRefusedWriteError, OldShopReadTimeoutError, ProductBusyError, UnmappableChangeError } from "../domain/errors.js";
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

/** What DiscardRefusedWrites did. */
export interface DiscardOutcome {
  /** The refused writes deleted. */
  discarded: number;
  /** Whether the product was taken again from the old shop: not while a later write of it is still on its way there. */
  resynced: boolean;
  /** The product as the catalog now holds it; undefined if it holds none. */
  product: ProductRow | undefined;
}

/**
 * The old shop's product of `sku` as it is now, undefined if it has none. It must give up when
 * `signal` aborts: it is called while the SKU's lock is held.
 */
export type OldShopProductReader = (sku: string, signal: AbortSignal) => Promise<CatalogProduct | undefined>;

/** A write the old shop refused for good, as GetSyncStatus lists it. */
export interface RefusedWriteRow {
  sku: string;
  refusal: string;
  writtenAt: Date;
}

/**
 * The longest DiscardRefusedWrites waits for the old shop's product, holding the SKU's lock
 * (which the capture of that SKU waits for). Below a caller's attempt timeout (the kit's 2 s):
 * a caller that gave up and retried while the first attempt committed would be answered
 * NOT_FOUND, the refused writes being gone already. One product's read takes milliseconds.
 */
const OLD_SHOP_READ_MS = 1_500;
/** The longest DiscardRefusedWrites waits for the SKU's lock (held by the capture for milliseconds, by another discard for up to OLD_SHOP_READ_MS). */
const LOCK_WAIT_MS = 300;
/** Postgres's SQLSTATE when lock_timeout ends a wait. */
const LOCK_NOT_AVAILABLE = "55P03";

export interface Position {
  lsn: bigint;
  appliedAt: Date;
}

/** The catalog's reads, the change capture's writes, UpdateProduct's and DiscardRefusedWrites'; each write is one transaction with its events (and its position, or its sync back rows). */
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
  /** Of those, the writes the old shop refused for good. */
  countSyncBackRefused(): Promise<number>;
  /** The oldest `limit` refused writes, in the order taken. */
  listRefusedWrites(limit: number): Promise<RefusedWriteRow[]>;
  /**
   * Gives up the SKU's refused writes (NoRefusedWriteError if it has none), in one transaction
   * under the SKU's lock. Unless a later write of the SKU is still on its way to the old shop
   * (whose echo then brings both sides together), the product is then taken again as
   * `readOldShop` reads it, or removed if the old shop has none, with its ProductChanged (origin
   * RESYNCED) in the outbox. A read that fails or outlasts OLD_SHOP_READ_MS changes nothing,
   * nor does a wait of more than LOCK_WAIT_MS for the SKU's lock, nor a `caller` that gave up
   * before the commit: its retry finds the refused writes still there, never NOT_FOUND.
   */
  discardRefusedWrites(sku: string, readOldShop: OldShopProductReader, caller?: AbortSignal): Promise<DiscardOutcome>;
}

const productEvent = (message: ProductChanged): DomainEvent<typeof ProductChangedSchema> => ({ schema: ProductChangedSchema, message, aggregateType: "product", aggregateId: message.sku });

/** `lsn`: the captured change's source position, as text; empty for a product not captured (written or read here). */
const changed = (product: CatalogProduct, origin: ProductChangeOrigin, lsn = "") =>
  productEvent(create(ProductChangedSchema, { sku: product.sku, name: product.name, description: product.description, price: toMoney(product.currency, product.priceMinor), origin, lsn }));

const removed = (sku: string, origin: ProductChangeOrigin, lsn = "") => productEvent(create(ProductChangedSchema, { sku, removed: true, origin, lsn }));

/** A captured product carries a write's values; a blurb the source left unchanged (TOASTed) is taken as the write's. */
const carries = (captured: CapturedProduct, write: CatalogProduct) =>
  captured.name === write.name &&
  (captured.description === undefined || captured.description === write.description) &&
  captured.priceMinor === write.priceMinor &&
  captured.currency === write.currency;

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

  /** `sourceLsn`: the position of the captured change it comes from, as text; empty for a product not captured. */
  async function upsert(tx: SqlExecutor, sourceLsn: string, product: CatalogProduct): Promise<ProductRow> {
    const values = { ...product, sourceLsn, updatedAt: sql`now()` };
    const [row] = await tx.insert(products).values(values).onConflictDoUpdate({ target: products.sku, set: values }).returning();
    return row!;
  }

  /** `read` given OLD_SHOP_READ_MS, and ended early if `caller` gives up: past the bound, its failure is an OldShopReadTimeoutError. */
  async function readWithin(read: OldShopProductReader, sku: string, caller: AbortSignal | undefined): Promise<CatalogProduct | undefined> {
    const bound = AbortSignal.timeout(OLD_SHOP_READ_MS);
    try {
      return await read(sku, caller ? AbortSignal.any([bound, caller]) : bound);
    } catch (err) {
      if (bound.aborted) throw new OldShopReadTimeoutError(OLD_SHOP_READ_MS);
      throw err;
    }
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

  /** DiscardRefusedWrites' work, under the SKU's lock. */
  async function discardLocked(tx: SqlExecutor, sku: string, readOldShop: OldShopProductReader, caller: AbortSignal | undefined): Promise<DiscardOutcome> {
    const rows = await writesNotSeenBack(tx, sku);
    const refused = rows.filter((row) => row.state === "refused");
    if (refused.length === 0) throw new NoRefusedWriteError(sku);
    await tx.delete(syncBack).where(inArray(syncBack.eventId, refused.map((row) => row.eventId)));
    if (rows.at(-1)!.state !== "refused") {
      // A later write is on its way to the old shop, and the catalog holds it (or a newer
      // one): its echo brings both sides to it. Older rows left do not stop the resync: the
      // sync back put them before the refused ones (in order), so the read below brings
      // their values, and their echoes are still matched.
      const [product] = await tx.select().from(products).where(eq(products.sku, sku));
      return { discarded: refused.length, resynced: false, product };
    }
    // Read under the lock, not before taking it: a change the old shop committed after an
    // earlier read would be captured while the rows still stood, so held, and then
    // overwritten here by the older value read, leaving the catalog behind the old shop for
    // good. Read here, such a change is committed after the read, and its capture waits
    // for the lock, finds no rows and is applied.
    const current = await readWithin(readOldShop, sku, caller);
    if (!current) {
      await tx.delete(products).where(eq(products.sku, sku));
      await appendToOutbox(tx, outbox, [removed(sku, ProductChangeOrigin.RESYNCED)]);
      return { discarded: refused.length, resynced: true, product: undefined };
    }
    // Read through the old shop's API, at no source position the capture could compare: no source LSN, as for a write taken here.
    const product = await upsert(tx, "", current);
    await appendToOutbox(tx, outbox, [changed(current, ProductChangeOrigin.RESYNCED)]);
    return { discarded: refused.length, resynced: true, product };
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
        const position = formatLsn(lsn);
        let written = 0;
        for await (const batch of batches) {
          for (const product of batch) await upsert(tx, position, product);
          await appendToOutbox(tx, outbox, batch.map((product) => changed(product, ProductChangeOrigin.CAPTURED, position)));
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
        const position = formatLsn(endLsn);
        let applied = 0;
        if (truncated) {
          // A SKU written here and not seen back keeps its product: the write here wins. Its rows
          // locked, as matchEcho locks a SKU's: a discard holding them (and about to take the
          // product from the old shop as it was before the TRUNCATE) is waited for, and the rows
          // it deleted are then passed over, so its product goes too.
          const kept = await tx.select({ sku: syncBack.sku }).from(syncBack).for("update");
          const keptSkus = [...new Set(kept.map(({ sku }) => sku))];
          const gone = await tx
            .delete(products)
            .where(keptSkus.length > 0 ? notInArray(products.sku, keptSkus) : undefined)
            .returning({ sku: products.sku });
          events.push(...gone.filter(({ sku }) => !changes.has(sku)).map(({ sku }) => removed(sku, ProductChangeOrigin.CAPTURED, position)));
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
            events.push(removed(change.sku, ProductChangeOrigin.CAPTURED, position));
          } else {
            const product = await complete(tx, change.product);
            await upsert(tx, position, product);
            events.push(changed(product, ProductChangeOrigin.CAPTURED, position));
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
        const row = await upsert(tx, "", product);
        const [eventId] = await appendToOutbox(tx, outbox, [changed(product, ProductChangeOrigin.WRITTEN)]);
        await tx.insert(syncBack).values({ eventId: eventId!, ...product });
        return { row };
      });
    },

    async countSyncBackPending() {
      const [row] = await db.select({ n: count() }).from(syncBack);
      return row?.n ?? 0;
    },

    async countSyncBackRefused() {
      const [row] = await db.select({ n: count() }).from(syncBack).where(eq(syncBack.state, "refused"));
      return row?.n ?? 0;
    },

    async listRefusedWrites(limit) {
      const rows = await db.select({ sku: syncBack.sku, refusal: syncBack.refusal, writtenAt: syncBack.writtenAt }).from(syncBack).where(eq(syncBack.state, "refused")).orderBy(asc(syncBack.seq)).limit(limit);
      return rows.map((row) => ({ ...row, refusal: row.refusal ?? "" }));
    },

    discardRefusedWrites(sku, readOldShop, caller) {
      return db
        .transaction(async (tx): Promise<DiscardOutcome> => {
          await tx.execute(sql.raw(`set local lock_timeout = ${LOCK_WAIT_MS}`));
          // The capture's match of a change of this SKU waits for this transaction, and sees its rows as it leaves them.
          await lockSku(tx, sku);
          const outcome = await discardLocked(tx, sku, readOldShop, caller);
          // Rolled back if the caller gave up meanwhile: its retry must find the writes still refused, not NOT_FOUND.
          caller?.throwIfAborted();
          return outcome;
        })
        .catch((err: unknown) => {
          if (sqlStateOf(err) === LOCK_NOT_AVAILABLE) throw new ProductBusyError(sku, LOCK_WAIT_MS);
          throw err;
        });
    },
  };
}
