import { pino } from "pino";
import { inject } from "vitest";
import { build as buildInventory } from "../../services/inventory/src/build.js";
import { build as buildPayment } from "../../services/payment/src/build.js";
import { build as buildOrder } from "../../services/order/src/build.js";
import type { CatalogEntry } from "../../services/inventory/src/domain/demo-catalog.js";
import type { RunningServer } from "../../services/platform/server.js";
import { createTestDatabase } from "./databases.js";

export const silentLogger = pino({ level: process.env["TEST_LOG_LEVEL"] ?? "silent" });

const runtime = (databaseUrl: string) => ({
  logger: silentLogger,
  databaseUrl,
  natsUrl: inject("natsUrl"),
  host: "127.0.0.1",
  port: 0,
  maxRequestBytes: 64 * 1024,
  shutdownGraceMs: 2_000,
});

export interface InProcessMesh {
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
  const databaseUrl = await createTestDatabase();
  const [inventory, payment] = await Promise.all([
    buildInventory({ ...runtime(databaseUrl), ...(options.catalog ? { catalog: options.catalog } : {}) }),
    buildPayment(runtime(databaseUrl)),
  ]);
  const order = await buildOrder({
    ...runtime(databaseUrl),
    inventoryUrl: inventory.url,
    paymentUrl: payment.url,
    clientProtocol: "connect",
    sagaPolicy: { initialBackoffMs: 20, maxBackoffMs: 200, stepTimeoutMs: 2_000, leaseMs: 5_000, sweepMs: 500 },
  });
  return {
    order,
    inventory,
    payment,
    databaseUrl,
    async close() {
      await order.close();
      await Promise.all([inventory.close(), payment.close()]);
    },
  };
}
