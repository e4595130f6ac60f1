import { build as buildInventory } from "#services/inventory/src/build.js";
import { build as buildPayment } from "#services/payment/src/build.js";
import { build as buildOrder } from "#services/order/src/build.js";
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
  /** The admin URL, for assertions across schemas; each service has its own role's URL. */
  databaseUrl: string;
  pki: MeshPki;
  /** A client of one service, each method called as a caller its contract admits (see contractClient). */
  client<T extends DescService>(service: T, name: "order" | "inventory" | "payment" | "notification", protocol?: TestProtocol): Client<T>;
  close(): Promise<void>;
}

/**
 * The four services in this process, each on a free port with real HTTP/2 between them
 * and one fresh database (each service in its own schema, as in production).
 */
export async function startInProcessMesh(options: { catalog?: readonly CatalogEntry[]; threeDsTimeoutMs?: number } = {}): Promise<InProcessMesh> {
  const [databases, nats, pki] = await Promise.all([createServiceDatabases(), startTestNats(), testPki()]);
  const databaseUrl = databases.adminUrl;
  // Each service with its own certificate, Postgres role and NATS user, as `npm start` gives them.
  const base = (name: DatabaseService) => testRuntime(pki, name, databases.urls[name], nats.urlFor(name));
  const [inventory, payment, notification] = await Promise.all([
    buildInventory({ ...base("inventory"), ...(options.catalog ? { catalog: options.catalog } : {}) }),
    buildPayment(base("payment")),
    buildNotification({ ...base("notification"), consumerBackoffMs: [50, 100] }),
  ]);
  const order = await buildOrder({
    ...base("order"),
    inventoryUrl: inventory.url,
    paymentUrl: payment.url,
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
    databaseUrl,
    pki,
    client(service, name, protocol) {
      const server = { order, inventory, payment, notification }[name];
      return contractClient(service, server.url, pki, { peer: name, ...(protocol ? { protocol } : {}) });
    },
    async close() {
      await order.close();
      await Promise.all([inventory.close(), payment.close(), notification.close()]);
      await nats.stop();
    },
  };
}
