import { on, type EventHandler } from "#platform";
import { ItemCreatedSchema } from "#gen/shop/catalog/v1/catalog_events_pb.js";
import { receipts } from "../db/schema.js";

/** Reactions to catalog's own events, as they come back from its stream: each ItemCreated becomes one receipt. */
export const itemEventHandlers: EventHandler[] = [
  on(ItemCreatedSchema, async (tx, event, envelope) => {
    // No ON CONFLICT: the inbox is what makes a redelivery harmless; the receipt's key is a
    // guard that fails loudly if that ever breaks.
    await tx.insert(receipts).values({ eventId: envelope.id, itemId: event.itemId });
  }),
];
