import { pino } from "pino";
import { build as buildInventory } from "../../services/inventory/src/build.js";
import { build as buildPayment } from "../../services/payment/src/build.js";
import { build as buildOrder } from "../../services/order/src/build.js";
import type { CatalogEntry } from "../../services/inventory/src/domain/demo-catalog.js";
import type { RunningServer } from "../../services/platform/server.js";
import { createTestDatabase } from "./databases.js";
import { startTestNats, type TestNats } from "./nats.js";
import { build as buildNotification } from "../../services/notification/src/build.js";

export const silentLogger = pino({ level: process.env["TEST_LOG_LEVEL"] ?? "silent" });

const runtime = (databaseUrl: string, natsUrl: string) => ({
  logger: silentLogger,
  databaseUrl,
  natsUrl,
  streamReplicas: 1,
  host: "127.0.0.1",
  port: 0,
  maxRequestBytes: 64 * 1024,
  shutdownGraceMs: 2_000,
});

export interface InProcessMesh {
  nats: TestNats;
  notification: RunningServer;
  order: RunningServer;
  inventory: RunningServer;
  payment: RunningServer;
  databaseUrl: string;
  close(): Promise<void>;
}

/**
 * The three services in this process, each on a free port with real HTTP/2 between them
 * and one fresh database (each service in its own schema, as in production).
 */
export async function startInProcessMesh(options: { catalog?: readonly CatalogEntry[] } = {}): Promise<InProcessMesh> {
  const [databaseUrl, nats] = await Promise.all([createTestDatabase(), startTestNats()]);
  const base = () => runtime(databaseUrl, nats.url);
  const [inventory, payment, notification] = await Promise.all([
    buildInventory({ ...base(), ...(options.catalog ? { catalog: options.catalog } : {}) }),
    buildPayment(base()),
    buildNotification({ ...base(), consumerBackoffMs: [50, 100] }),
  ]);
  const order = await buildOrder({
    ...base(),
    inventoryUrl: inventory.url,
    paymentUrl: payment.url,
    clientProtocol: "connect",
    sagaPolicy: { initialBackoffMs: 20, maxBackoffMs: 200, stepTimeoutMs: 2_000, leaseMs: 5_000, sweepMs: 500 },
  });
  return {
    nats,
    notification,
    order,
    inventory,
    payment,
    databaseUrl,
    async close() {
      await order.close();
      await Promise.all([inventory.close(), payment.close(), notification.close()]);
      await nats.stop();
    },
  };
}
