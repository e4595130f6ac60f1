import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ServiceBroker, type BrokerOptions } from "moleculer";
import { startLocalNats } from "#tools/infra/local-nats.js";
import { freePort } from "#tools/infra/tcp.js";
import { processCpuMs } from "./process-cpu.js";

/** What the bench table says about how the Moleculer pairings talk, so the figure reads right. */
export const moleculerTransportNote = "Moleculer 0.14 NATS transporter (nats v2 client) → private nats-server on 127.0.0.1 → service broker; JSON serializer (the default)";

/**
 * Moleculer's own fault tolerance, set like our client's defaults (services/platform/rpc-client/resilience.ts):
 * a 5 s budget, 3 attempts, a breaker, and a bulkhead of 64 in flight with 256 queued.
 */
export const moleculerFaultTolerance: Partial<BrokerOptions> = {
  requestTimeout: 5_000,
  retryPolicy: { enabled: true, retries: 2, delay: 50, maxDelay: 1_000 },
  circuitBreaker: { enabled: true },
  bulkhead: { enabled: true, concurrency: 64, maxQueueSize: 256 },
};

export interface MoleculerPeer {
  /** One request/response: the client broker calls the service broker's echo action. */
  call(): Promise<unknown>;
  /** CPU the nats-server has used so far, in ms: the broker's share of each call. */
  brokerCpuMs(): number;
  close(): Promise<void>;
}

/**
 * The framework a Node team would pick instead of ours, as it ships: two brokers with their
 * own nodeIDs, so every call crosses the NATS transporter (client → nats-server → service
 * and back) rather than short-circuiting to a local service. Logging, metrics and tracing are
 * off. `clientOptions` adds to the calling broker, e.g. {@link moleculerFaultTolerance}. The
 * nats-server is private on a free port, so the machine's 4222 is never touched.
 */
export async function startMoleculerPeer(clientOptions: Partial<BrokerOptions> = {}): Promise<MoleculerPeer> {
  const scratch = mkdtempSync(join(tmpdir(), "meshwork-moleculer-"));
  const nats = await startLocalNats({ port: await freePort(), storeDir: join(scratch, "nats") });
  const options = (nodeID: string): BrokerOptions => ({
    nodeID,
    namespace: "bench",
    transporter: { type: "NATS", options: { url: nats.url } },
    serializer: "JSON",
    logger: false,
    metrics: false,
    tracing: false,
  });
  const server = new ServiceBroker(options("inventory-node"));
  server.createService({
    name: "inventory",
    actions: { getStock: (ctx: { params: { sku: string } }) => ({ stock: { sku: ctx.params.sku, available: 1 } }) },
  });
  const client = new ServiceBroker({ ...options("client-node"), ...clientOptions });
  await Promise.all([server.start(), client.start()]);
  await client.waitForServices("inventory", 10_000);
  return {
    call: () => client.call("inventory.getStock", { sku: "x" }),
    brokerCpuMs: () => processCpuMs(nats.process.pid!),
    async close() {
      await Promise.all([client.stop(), server.stop()]);
      await nats.stop();
      rmSync(scratch, { recursive: true, force: true });
    },
  };
}
