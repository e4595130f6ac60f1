import type { ConnectRouter } from "@connectrpc/connect";
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { ItemSchema, CatalogService } from "#gen/shop/catalog/v1/catalog_service_pb.js";
import type { ItemRow, Items } from "../app/items.js";
import { validateCreateItem } from "../domain/item.js";

const toItem = (row: ItemRow) =>
  create(ItemSchema, { id: row.id, requestId: row.requestId, description: row.description, createTime: timestampFromDate(row.createdAt) });

/** Maps the wire contract onto catalog's use cases; no business rules live here. */
export function createRoutes({ items }: { items: Items }) {
  return (router: ConnectRouter) =>
    router.service(CatalogService, {
      async createItem(req) {
        const command = validateCreateItem({ requestId: req.requestId, description: req.description });
        return { item: toItem(await items.create(command)) };
      },
    });
}
