/**
 * The monolith baseline as a server: one process, one Postgres pool, the storefront's public
 * API (the subset the load generator uses) answered by createMonolith, so the bench drives
 * mesh and monolith with the same client code. It trusts the bearer token as the customer id
 * (no JWT verification, no rate limits): that favours the monolith, never the mesh.
 * Run by bench/end-to-end.ts: `node --import tsx bench/monolith/main.ts <database-url>`;
 * prints `ready <url>` once it serves.
 */
import { resolve } from "node:path";
import type { ConnectRouter, HandlerContext } from "@connectrpc/connect";
import { pino } from "pino";
import { StorefrontService } from "#gen/shop/gateway/v1/storefront_service_pb.js";
import { openDatabase } from "#platform/data/db.js";
import { startServer } from "#platform/rpc-server/server.js";
import { createInventory } from "#services/inventory/src/app/inventory.js";
import { tables as inventoryTables } from "#services/inventory/src/db/schema.js";
import { demoCatalog } from "#services/inventory/src/domain/demo-catalog.js";
import { toProduct } from "#services/inventory/src/rpc/routes.js";
import { tables as notificationTables } from "#services/notification/src/db/schema.js";
import { parseOrderId } from "#services/order/src/domain/order.js";
import { tables as orderTables } from "#services/order/src/db/schema.js";
import { toOrderMessage } from "#services/order/src/rpc/routes.js";
import { createSimulatedCardNetwork } from "#services/payment/src/app/simulated-card-network.js";
import { tables as paymentTables } from "#services/payment/src/db/schema.js";
import { toPayment } from "#services/payment/src/rpc/routes.js";
import { createMonolith, openMonolithPool } from "./place-order.js";

const databaseUrl = process.argv[2];
if (!databaseUrl) throw new Error("usage: main.ts <database-url>");
const logger = pino({ level: "warn" });

// Each service's own migrations, so the monolith's tables are the mesh's tables.
const schemas = [
  { schemaName: "inventory", tables: inventoryTables },
  { schemaName: "payment", tables: paymentTables },
  { schemaName: "orders", tables: orderTables, folder: "order" },
  { schemaName: "notification", tables: notificationTables },
];
for (const { schemaName, tables, folder } of schemas) {
  const migrated = await openDatabase({ url: databaseUrl, schemaName, tables, logger, migrationsFolder: resolve(import.meta.dirname, `../../services/${folder ?? schemaName}/migrations`) });
  // The demo catalog by inventory's own use case, as the mesh seeds it.
  if (schemaName === "inventory") await createInventory(migrated.db as never).seed(demoCatalog);
  await migrated.close();
}

const sql = openMonolithPool(databaseUrl);
const monolith = createMonolith(sql, createSimulatedCardNetwork());

const customerOf = (ctx: HandlerContext) => ctx.requestHeader.get("authorization")?.replace(/^Bearer /, "") ?? "anonymous";
const routes = (router: ConnectRouter) =>
  router.service(StorefrontService, {
    issueDemoToken: (req) => ({ token: req.customerId, expiresInSeconds: 3600n }),
    listProducts: async () => ({ products: (await monolith.listProducts()).map(toProduct) }),
    placeOrder: async (req, ctx) => ({
      order: toOrderMessage(await monolith.placeOrder({ customerId: customerOf(ctx), items: req.items, paymentToken: req.paymentToken, requestId: req.requestId })),
    }),
    // Orders leave placeOrder terminal, so a watch has one thing to say.
    async *watchOrder(req) {
      const found = await monolith.findOrder(parseOrderId(req.orderId));
      if (found) yield { order: toOrderMessage(found), eventType: "" };
    },
    // No reservation exists: stock moves straight to sold in the transaction that confirms the order.
    async getOrderDetails(req) {
      const orderId = parseOrderId(req.orderId);
      const [found, payments] = await Promise.all([monolith.findOrder(orderId), monolith.paymentsFor(orderId)]);
      return {
        ...(found ? { order: toOrderMessage(found) } : {}),
        payment: { status: { code: "OK" }, payments: payments.map(toPayment) },
        reservation: { status: { code: "OK" } },
      };
    },
  });

// No admission control: a baseline serves the closed loop the bench offers; shedding part of
// it would count as the load generator's errors, not as a measure of the design.
const server = await startServer(
  { logger, services: [StorefrontService], routes, maxRequestBytes: 1 << 20, shutdownGraceMs: 1_000, admission: false },
  { host: "127.0.0.1", port: 0 },
);
console.log(`ready ${server.url}`);
process.on("SIGTERM", () => void server.close().then(() => sql.end()).then(() => process.exit(0)));
