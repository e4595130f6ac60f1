import { randomUUID } from "node:crypto";
import { eq } from "drizzle-orm";
import type { PostgresJsDatabase } from "drizzle-orm/postgres-js";
import { create } from "@bufbuild/protobuf";
import { appendToOutbox } from "#platform";
import { ItemCreatedSchema } from "#gen/shop/catalog/v1/catalog_events_pb.js";
import { RequestReusedError } from "../domain/errors.js";
import { isSameItem, type CreateItemCommand } from "../domain/item.js";
import { items, outbox, type tables } from "../db/schema.js";

type Db = PostgresJsDatabase<typeof tables>;
export type ItemRow = typeof items.$inferSelect;

/** Catalog's use cases. */
export interface Items {
  create(command: CreateItemCommand): Promise<ItemRow>;
}

export function createItems(db: Db): Items {
  return {
    /**
     * The item and its ItemCreated event commit together or not at all (the transactional
     * outbox); the relay publishes the event once it has. A retry of the request_id finds
     * the first item and appends nothing.
     */
    create(command) {
      return db.transaction(async (tx) => {
        const [inserted] = await tx
          .insert(items)
          .values({ id: randomUUID(), ...command })
          .onConflictDoNothing({ target: items.requestId })
          .returning();
        if (!inserted) {
          const [existing] = await tx.select().from(items).where(eq(items.requestId, command.requestId));
          if (!existing) throw new Error(`item ${command.requestId} vanished after insert`);
          if (!isSameItem(existing, command)) throw new RequestReusedError();
          return existing;
        }
        const event = create(ItemCreatedSchema, { itemId: inserted.id, description: inserted.description });
        await appendToOutbox(tx, outbox, [{ schema: ItemCreatedSchema, message: event, aggregateType: "item", aggregateId: inserted.id }]);
        return inserted;
      });
    },
  };
}
