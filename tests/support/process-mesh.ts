import { childEnv, meshOnFreePorts, portEnv, withOwnCredentials } from "#tools/mesh/topology.js";
import { createSupervisor } from "#tools/mesh/supervisor.js";
import { OrderService } from "#gen/shop/order/v1/order_service_pb.js";
import { InventoryService } from "#gen/shop/inventory/v1/inventory_service_pb.js";
import { PaymentService } from "#gen/shop/payment/v1/payment_service_pb.js";
import { NotificationService } from "#gen/shop/notification/v1/notification_service_pb.js";
import { createServiceDatabases, type DatabaseService } from "./databases.js";
import { createLegacyDatabase } from "./legacy-databases.js";
import { captureUrlVariable } from "#tools/mesh/mesh-databases.js";
import { deployable } from "#mesh";
import { startTestNats } from "./nats.js";
import { contractClient, testPki } from "./mesh-clients.js";
import { testAuthSecret, testOperatorSecret, testTraceToken } from "./gateway.js";
import { CONSOLE } from "#platform/trust/mesh-identity.js";

/**
 * The mesh as `npm start` runs it: each service its own OS process from its main.ts, on free
 * ports, under the real supervisor, against one fresh database, each with its own
 * certificate, Postgres role and NATS user. `operator`: the gateway runs its operator listener
 * too (operatorUrl; tokens from testOperatorToken), and every process sends its spans to that
 * listener's dev trace store, as under `npm start`; off by default, as it costs each process
 * an exporter.
 */
export async function startProcessMesh(options: { env?: Record<string, string>; operator?: boolean } = {}) {
  const [databases, legacy, nats, pki] = await Promise.all([createServiceDatabases(), createLegacyDatabase(), startTestNats(), testPki()]);
  const databaseUrl = databases.adminUrl;
  const oldshop = deployable("oldshop");
  const services = withOwnCredentials(await meshOnFreePorts(), {
    databaseUrl: (name) => (name === oldshop.name ? legacy.oldshopUrl : databases.urls[name as DatabaseService]),
    // The catalog's slot is named for this run's legacy database (slot names are cluster-wide) and goes with the cluster.
    captureEnv: (name): Record<string, string> => (name === oldshop.legacy.capturedBy ? { [captureUrlVariable(oldshop.name)]: legacy.cdcUrl, CDC_SLOT: legacy.slot } : {}),
    natsUrl: nats.urlFor,
    tls: pki.files,
    gatewayAuthSecret: testAuthSecret,
    ...(options.operator ? { operator: { authSecret: testOperatorSecret, consoleNatsUrl: nats.urlFor(CONSOLE), consoleTls: pki.console }, devTracesToken: testTraceToken } : {}),
  });
  const output: string[] = [];
  const supervisor = createSupervisor(services, {
    env: childEnv({ ...process.env, ...portEnv(services), LOG_LEVEL: "warn", ...options.env }, services),
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
  const service = (name: string) => services.find((s) => s.name === name)!;
  const url = (name: string) => `${name === "gateway" ? "http" : "https"}://127.0.0.1:${service(name).port}`;
  // Plain gRPC clients, as an outside caller would use (no breaker or retries of ours), each
  // method called as a caller its contract admits.
  const clients = {
    order: contractClient(OrderService, url("order"), pki, { peer: "order" }),
    inventory: contractClient(InventoryService, url("inventory"), pki, { peer: "inventory" }),
    payment: contractClient(PaymentService, url("payment"), pki, { peer: "payment" }),
    notification: contractClient(NotificationService, url("notification"), pki, { peer: "notification" }),
  };
  return {
    /** The admin URL, for checks across schemas. */
    databaseUrl,
    /** The old shop's database's admin URL (on the run's legacy cluster), for checks of the legacy data. */
    legacyDatabaseUrl: legacy.adminUrl,
    nats,
    pki,
    supervisor,
    output,
    url,
    opsUrl: (name: string) => `http://127.0.0.1:${service(name).opsPort}`,
    /** The gateway's operator listener, with `operator` (its page and OperatorService); else undefined. */
    operatorUrl: options.operator ? `http://127.0.0.1:${service("gateway").operatorPort}` : undefined,
    ...clients,
    /** SIGKILLs a service; the supervisor restarts it, as it would any crash. */
    kill(name: string) {
      const pid = supervisor.pid(name);
      if (pid) process.kill(pid, "SIGKILL");
    },
    async stop() {
      await supervisor.stop(10_000);
      await nats.stop();
    },
  };
}

export type ProcessMesh = Awaited<ReturnType<typeof startProcessMesh>>;
