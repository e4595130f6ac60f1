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
import { drizzle } from "drizzle-orm/postgres-js";
import postgres from "postgres";
import { pino } from "pino";
import { StorefrontService } from "../../gen/shop/gateway/v1/storefront_service_pb.js";
import { openDatabase } from "../../services/platform/db.js";
import { startServer } from "../../services/platform/server.js";
import { createInventory } from "../../services/inventory/src/app/inventory.js";
import { tables as inventoryTables } from "../../services/inventory/src/db/schema.js";
import { demoCatalog } from "../../services/inventory/src/domain/demo-catalog.js";
import { toProduct, toReservation } from "../../services/inventory/src/rpc/routes.js";
import { tables as notificationTables } from "../../services/notification/src/db/schema.js";
import { createOrderStore } from "../../services/order/src/app/order-store.js";
import { tables as orderTables } from "../../services/order/src/db/schema.js";
import { toOrderMessage } from "../../services/order/src/rpc/routes.js";
import { createPayments } from "../../services/payment/src/app/payments.js";
import { createSimulatedCardNetwork } from "../../services/payment/src/app/simulated-card-network.js";
import { tables as paymentTables } from "../../services/payment/src/db/schema.js";
import { toPayment } from "../../services/payment/src/rpc/routes.js";
import { createMonolith } from "./place-order.js";

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
  await migrated.close();
}

const sql = postgres(databaseUrl, { max: 10, onnotice: () => {} });
const db = drizzle(sql);
const inventory = createInventory(db as never);
await inventory.seed(demoCatalog);
const orders = createOrderStore(db as never);
const payments = createPayments(db as never, createSimulatedCardNetwork());
const monolith = createMonolith(db);

const customerOf = (ctx: HandlerContext) => ctx.requestHeader.get("authorization")?.replace(/^Bearer /, "") ?? "anonymous";
const routes = (router: ConnectRouter) =>
  router.service(StorefrontService, {
    issueDemoToken: (req) => ({ token: req.customerId, expiresInSeconds: 3600n }),
    listProducts: async () => ({ products: (await inventory.listProducts([])).map(toProduct) }),
    placeOrder: async (req, ctx) => ({
      order: toOrderMessage(await monolith.placeOrder({ customerId: customerOf(ctx), items: req.items, paymentToken: req.paymentToken, requestId: req.requestId })),
    }),
    // Orders leave placeOrder terminal, so a watch has one thing to say.
    async *watchOrder(req) {
      const found = await orders.find(req.orderId);
      if (found) yield { order: toOrderMessage(found), eventType: "" };
    },
    async getOrderDetails(req) {
      const found = await orders.find(req.orderId);
      const reservation = await inventory.getReservation(req.orderId).catch(() => undefined);
      return {
        ...(found ? { order: toOrderMessage(found) } : {}),
        payment: { status: { code: "OK" }, payments: (await payments.listForOrder(req.orderId)).map(toPayment) },
        reservation: { status: { code: "OK" }, ...(reservation ? { reservation: toReservation(reservation) } : {}) },
      };
    },
  });

const server = await startServer({ logger, services: [StorefrontService], routes, maxRequestBytes: 1 << 20, shutdownGraceMs: 1_000 }, { host: "127.0.0.1", port: 0 });
console.log(`ready ${server.url}`);
process.on("SIGTERM", () => void server.close().then(() => sql.end()).then(() => process.exit(0)));
