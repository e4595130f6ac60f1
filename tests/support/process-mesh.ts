import { createClient } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import type { DescService } from "@bufbuild/protobuf";
import { childEnv, meshOnFreePorts, portEnv } from "../../services/platform/dev/mesh.js";
import { createSupervisor } from "../../services/platform/dev/supervisor.js";
import { OrderService } from "../../gen/shop/order/v1/order_service_pb.js";
import { InventoryService } from "../../gen/shop/inventory/v1/inventory_service_pb.js";
import { PaymentService } from "../../gen/shop/payment/v1/payment_service_pb.js";
import { NotificationService } from "../../gen/shop/notification/v1/notification_service_pb.js";
import { createTestDatabase } from "./databases.js";
import { startTestNats } from "./nats.js";

/**
 * The mesh as `npm start` runs it: each service its own OS process from its main.ts, on free
 * ports, under the real supervisor, against one fresh database.
 */
export async function startProcessMesh(options: { env?: Record<string, string> } = {}) {
  const [databaseUrl, nats] = await Promise.all([createTestDatabase(), startTestNats()]);
  const services = await meshOnFreePorts();
  const output: string[] = [];
  const supervisor = createSupervisor(services, {
    env: childEnv({ ...process.env, ...portEnv(services), LOG_LEVEL: "warn", ...options.env }, services, { databaseUrl, natsUrl: nats.url }),
    log: (line) => output.push(line),
    initialBackoffMs: 100,
  });
  supervisor.start();
  try {
    await supervisor.waitUntilServing(60_000);
  } catch (err) {
    await supervisor.stop(5_000);
    await nats.stop();
    throw new Error(`${(err as Error).message}\n${output.slice(-20).join("\n")}`);
  }
  const url = (name: string) => `http://127.0.0.1:${services.find((s) => s.name === name)!.port}`;
  // Plain gRPC clients, as an outside caller would use: no breaker or retries of ours.
  const sessions: Http2SessionManager[] = [];
  const plain = <T extends DescService>(service: T, name: string) => {
    const sessionManager = new Http2SessionManager(url(name));
    sessions.push(sessionManager);
    return createClient(service, createGrpcTransport({ baseUrl: url(name), sessionManager }));
  };
  const clients = {
    order: plain(OrderService, "order"),
    inventory: plain(InventoryService, "inventory"),
    payment: plain(PaymentService, "payment"),
    notification: plain(NotificationService, "notification"),
  };
  return {
    databaseUrl,
    nats,
    supervisor,
    output,
    url,
    ...clients,
    /** SIGKILLs a service; the supervisor restarts it, as it would any crash. */
    kill(name: string) {
      const pid = supervisor.pid(name);
      if (pid) process.kill(pid, "SIGKILL");
    },
    async stop() {
      for (const session of sessions) session.abort();
      await supervisor.stop(10_000);
      await nats.stop();
    },
  };
}

export type ProcessMesh = Awaited<ReturnType<typeof startProcessMesh>>;
