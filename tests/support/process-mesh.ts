import { createServiceClient } from "../../services/platform/clients.js";
import { childEnv, type MeshService } from "../../services/platform/dev/mesh.js";
import { createSupervisor } from "../../services/platform/dev/supervisor.js";
import { freePort } from "../../services/platform/dev/tcp.js";
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
  const services: MeshService[] = [
    { name: "inventory", port: await freePort(), main: "services/inventory/main.ts" },
    { name: "payment", port: await freePort(), main: "services/payment/main.ts" },
    { name: "order", port: await freePort(), main: "services/order/main.ts" },
    { name: "notification", port: await freePort(), main: "services/notification/main.ts" },
  ];
  const ports = Object.fromEntries(services.map((s) => [`${s.name.toUpperCase()}_PORT`, String(s.port)]));
  const output: string[] = [];
  const supervisor = createSupervisor(services, {
    env: childEnv({ ...process.env, ...ports, LOG_LEVEL: "warn", ...options.env }, services, { databaseUrl, natsUrl: nats.url }),
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
  const clients = {
    order: createServiceClient(OrderService, { baseUrl: url("order"), protocol: "grpc" }),
    inventory: createServiceClient(InventoryService, { baseUrl: url("inventory"), protocol: "grpc" }),
    payment: createServiceClient(PaymentService, { baseUrl: url("payment"), protocol: "grpc" }),
    notification: createServiceClient(NotificationService, { baseUrl: url("notification"), protocol: "grpc" }),
  };
  return {
    databaseUrl,
    nats,
    supervisor,
    output,
    url,
    order: clients.order.client,
    inventory: clients.inventory.client,
    payment: clients.payment.client,
    notification: clients.notification.client,
    /** SIGKILLs a service; the supervisor restarts it, as it would any crash. */
    kill(name: string) {
      const pid = supervisor.pid(name);
      if (pid) process.kill(pid, "SIGKILL");
    },
    async stop() {
      for (const c of Object.values(clients)) c.close();
      await supervisor.stop(10_000);
      await nats.stop();
    },
  };
}

export type ProcessMesh = Awaited<ReturnType<typeof startProcessMesh>>;
