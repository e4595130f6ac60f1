import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { eq } from "drizzle-orm";
import { ProductSchema } from "#gen/shop/catalog/v1/catalog_service_pb.js";
import { ProductChangeOrigin, ProductChangedSchema, file_shop_catalog_v1_catalog_events } from "#gen/shop/catalog/v1/catalog_events_pb.js";
import { on, startEventConsumer, type BusConnection, type Logger, type SqlExecutor } from "#platform";
import type { OldShopCatalog } from "#shop/old-shop-catalog.js";
import { deadLetterStream, eventStream } from "#shop/streams.js";
import { inbox, syncBack } from "../db/schema.js";

/** The durable consumer of the catalog's own stream that writes its writes back to the old shop. */
const SYNC_BACK_DURABLE = "oldshop-sync";

export interface SyncBackOptions {
  bus: BusConnection;
  db: SqlExecutor;
  oldShop: Pick<OldShopCatalog, "putProduct">;
  streamReplicas: number;
  logger: Logger;
  /** Redelivery delays after a failed PUT; tests shorten them. */
  backoffMs?: number[];
}

/**
 * The sync back: every write taken here (ProductChanged of origin WRITTEN) is PUT to the old
 * shop, in the order written, so that moving writes back to it loses none; captured changes
 * came from the old shop and are passed over. One event in flight at a time: a failed PUT is
 * redelivered before any later one, so the old shop never ends on an older value, and its
 * echoes come back in the catalog's order. The write's sync_back row is marked sent with the
 * inbox record, and stays until the change capture sees its echo; a redelivery PUTs the same
 * values again, whose second echo the capture applies as the value the catalog already holds.
 *
 * An old shop that is away, slow or refusing this caller is retried for as long as it takes
 * (never dead-lettered: that would lose the write). A write the old shop calls invalid (400)
 * or whose path it does not know (404) cannot succeed by retrying: it is logged as an error and
 * its sync_back row keeps the refusal, still counted as pending (until DiscardRefusedWrites gives
 * it up, or the echo of a later write of the product is seen), and the writes after it go on.
 */
export function startSyncBack(options: SyncBackOptions) {
  return startEventConsumer({
    bus: options.bus,
    db: options.db,
    inbox,
    stream: { ...eventStream("catalog"), replicas: options.streamReplicas },
    deadLetters: deadLetterStream,
    contract: file_shop_catalog_v1_catalog_events,
    durable: SYNC_BACK_DURABLE,
    handlers: [syncBackHandler(options.oldShop, options.logger)],
    logger: options.logger,
    maxAckPending: 1,
    // Only an event that cannot be decoded is dead-lettered; a write is retried until the old shop takes it.
    maxDeliver: Number.MAX_SAFE_INTEGER,
    ...(options.backoffMs ? { backoffMs: options.backoffMs } : {}),
  });
}

/** The old shop's answers that no retry changes: the write is invalid to it (400), or its path names no product (404). */
const PERMANENT_REFUSALS = new Set([Code.InvalidArgument, Code.NotFound]);

/** The sync back's handling of one ProductChanged, inside the transaction that records it in the inbox. */
export function syncBackHandler(oldShop: SyncBackOptions["oldShop"], logger: Logger) {
  const log = logger.child({ component: "sync-back" });
  return on(ProductChangedSchema, async (tx, event, envelope) => {
    if (event.origin !== ProductChangeOrigin.WRITTEN) return;
    const product = create(ProductSchema, { sku: event.sku, name: event.name, description: event.description, ...(event.price ? { price: event.price } : {}) });
    try {
      await oldShop.putProduct(product);
    } catch (err) {
      const { code, rawMessage } = ConnectError.from(err);
      if (!PERMANENT_REFUSALS.has(code)) throw err;
      const refusal = rawMessage.slice(0, 500);
      log.error({ sku: event.sku, eventId: envelope.id, refusal }, "the old shop refused a write taken here; it stays pending in catalog.sync_back until DiscardRefusedWrites gives it up");
      await tx.update(syncBack).set({ state: "refused", refusal }).where(eq(syncBack.eventId, envelope.id));
      return;
    }
    // Its echo may already have deleted the row: then nothing to mark.
    await tx.update(syncBack).set({ state: "sent" }).where(eq(syncBack.eventId, envelope.id));
  });
}
