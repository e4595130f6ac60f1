import { build as buildInventory } from "#services/inventory/src/build.js";
import { build as buildPayment } from "#services/payment/src/build.js";
import { build as buildOrder } from "#services/order/src/build.js";
import { build as buildCatalog } from "#services/catalog/src/build.js";
import postgres from "postgres";
import { loadConfig as oldShopConfig } from "../../legacy/oldshop/src/config.js";
import { startOldShop, type OldShop } from "../../legacy/oldshop/src/server.js";
import { createLegacyDatabase, type LegacyDatabase } from "./legacy-databases.js";
import type { CatalogEntry } from "#services/inventory/src/domain/demo-catalog.js";
import { createServiceDatabases, type DatabaseService } from "./databases.js";
import { startTestNats, type TestNats } from "./nats.js";
import { build as buildNotification } from "#services/notification/src/build.js";
import type { ServiceServer } from "#platform/service.js";
import type { MeshPki } from "#tools/mesh/mesh-pki.js";
import { contractClient, testPki, type TestProtocol } from "./mesh-clients.js";
import type { Client } from "@connectrpc/connect";
import type { DescService } from "@bufbuild/protobuf";

import { silentLogger } from "./silent-logger.js";

/** What every in-process service is given; `name` picks its certificate. */
export const testRuntime = (pki: MeshPki, name: string, databaseUrl: string, natsUrl: string) => ({
  logger: silentLogger,
  databaseUrl,
  natsUrl,
  streamReplicas: 1,
  host: "127.0.0.1",
  port: 0,
  opsPort: 0,
  meshTls: pki.files(name),
  maxRequestBytes: 64 * 1024,
  shutdownGraceMs: 2_000,
});

export interface InProcessMesh {
  nats: TestNats;
  notification: ServiceServer;
  order: ServiceServer;
  inventory: ServiceServer;
  payment: ServiceServer;
  /** The old shop (JSON over HTTPS/1.1) on its own legacy database, and the catalog capturing it. */
  oldShop: OldShop;
  catalog: ServiceServer;
  legacyDatabase: LegacyDatabase;
  /** The admin URL, for assertions across schemas; each service has its own role's URL. */
  databaseUrl: string;
  pki: MeshPki;
  /** A client of one service, each method called as a caller its contract admits (see contractClient). */
  client<T extends DescService>(service: T, name: "order" | "inventory" | "payment" | "notification" | "catalog", protocol?: TestProtocol): Client<T>;
  close(): Promise<void>;
}

/** "12.99" for 1299: the old shop's numeric(12,2), written digit by digit. */
const decimalPrice = (minor: number) => `${Math.floor(minor / 100)}.${String(minor % 100).padStart(2, "0")}`;

/**
 * The old shop on a fresh legacy database, with its mesh certificate and its default
 * readers and writers. It seeds the demo catalog; with `catalog`, its products are replaced by
 * those (the same SKUs, names and prices as inventory is given), so that orders priced
 * through the catalog route agree with inventory's stock.
 */
export async function startTestOldShop(pki: MeshPki, catalog?: readonly CatalogEntry[]): Promise<{ oldShop: OldShop; database: LegacyDatabase }> {
  const database = await createLegacyDatabase();
  const tls = pki.files("oldshop");
  const config = oldShopConfig({ DATABASE_URL: database.oldshopUrl, TLS_CERT_FILE: tls.certFile, TLS_KEY_FILE: tls.keyFile, TLS_CA_FILE: tls.caFile });
  const oldShop = await startOldShop({ ...config, port: 0, opsPort: 0, logger: silentLogger });
  if (catalog) {
    const sql = postgres(database.oldshopUrl, { max: 1, onnotice: () => {} });
    try {
      await sql.begin(async (tx) => {
        await tx`delete from oldshop.products`;
        for (const entry of catalog) await tx`insert into oldshop.products (sku, title, price, currency) values (${entry.sku}, ${entry.name}, ${decimalPrice(entry.priceMinor)}, ${entry.currency})`;
      });
    } finally {
      await sql.end();
    }
  }
  return { oldShop, database };
}

/**
 * The services in this process, each on a free port with real HTTP/2 between them and one
 * fresh database (each service in its own schema, as in production); the old shop on a
 * legacy database of its own, which the catalog captures. The catalog route is at its
 * default, legacy, so order prices from the old shop.
 */
export async function startInProcessMesh(options: { catalog?: readonly CatalogEntry[]; threeDsTimeoutMs?: number } = {}): Promise<InProcessMesh> {
  const [databases, nats, pki] = await Promise.all([createServiceDatabases(), startTestNats(), testPki()]);
  const databaseUrl = databases.adminUrl;
  // Each service with its own certificate, Postgres role and NATS user, as `npm start` gives them.
  const base = (name: DatabaseService) => testRuntime(pki, name, databases.urls[name], nats.urlFor(name));
  const { oldShop, database: legacyDatabase } = await startTestOldShop(pki, options.catalog);
  const [inventory, payment, notification, catalog] = await Promise.all([
    buildInventory({ ...base("inventory"), ...(options.catalog ? { catalog: options.catalog } : {}) }),
    buildPayment(base("payment")),
    buildNotification({ ...base("notification"), consumerBackoffMs: [50, 100] }),
    buildCatalog({ ...base("catalog"), oldshopUrl: oldShop.url, cdcSourceUrl: legacyDatabase.cdcUrl, cdcSlot: legacyDatabase.slot, cdcBackoff: { initialMs: 50, maxMs: 500 } }),
  ]);
  const order = await buildOrder({
    ...base("order"),
    inventoryUrl: inventory.url,
    paymentUrl: payment.url,
    oldshopUrl: oldShop.url,
    catalogUrl: catalog.url,
    clientProtocol: "connect",
    sagaPolicy: { initialBackoffMs: 20, maxBackoffMs: 200, stepTimeoutMs: 2_000, leaseMs: 5_000, sweepMs: 500 },
    ...(options.threeDsTimeoutMs ? { threeDsTimeoutMs: options.threeDsTimeoutMs } : {}),
  });
  return {
    nats,
    notification,
    order,
    inventory,
    payment,
    oldShop,
    catalog,
    legacyDatabase,
    databaseUrl,
    pki,
    client(service, name, protocol) {
      const server = { order, inventory, payment, notification, catalog }[name];
      return contractClient(service, server.url, pki, { peer: name, ...(protocol ? { protocol } : {}) });
    },
    async close() {
      await order.close();
      await Promise.all([inventory.close(), payment.close(), notification.close(), catalog.close()]);
      await oldShop.close();
      await nats.stop();
    },
  };
}
