import { ConfigError, port, type Env } from "../config.js";
import { freePort } from "./tcp.js";

export interface MeshService {
  name: string;
  port: number;
  /** Entry point, relative to the repository root. */
  main: string;
  /** Environment for this service alone, over the shared one (e.g. the address it advertises). */
  env?: Record<string, string>;
}

/**
 * What one deployable is and needs. Every per-service credential (certificate, NATS user,
 * Postgres role, secrets) is derived from these entries, named by `name`.
 */
export interface Deployable {
  name: string;
  /** Entry point, relative to the repository root. */
  main: string;
  defaultPort: number;
  /** Plaintext port for grpc.health.v1 probes and /metrics scrapes, which carry no client certificate. */
  defaultOpsPort: number;
  /** The Postgres schema it owns, through a role named after the service; none for the gateway. */
  schema?: string;
  /** The protobuf services it serves, which it alone may announce in the registry. */
  serves: readonly string[];
  /** Events: the context whose `shop.<ctx>.v1.>` subjects it alone publishes (its outbox's stream). */
  publishes?: string;
  /** Durable JetStream consumers it reads: the stream's context and the durable's name. */
  consumes?: readonly { context: string; durable: string }[];
  /** Contexts whose event subjects it follows live with a core subscription (no durable). */
  watches?: readonly string[];
}

/** The deployables of the mesh, in start order: participants first, so order's clients find them up. */
export const meshDeployables = [
  { name: "inventory", main: "services/inventory/main.ts", defaultPort: 50052, defaultOpsPort: 51052, schema: "inventory", serves: ["shop.inventory.v1.InventoryService"], publishes: "inventory" },
  { name: "payment", main: "services/payment/main.ts", defaultPort: 50053, defaultOpsPort: 51053, schema: "payment", serves: ["shop.payment.v1.PaymentService"], publishes: "payment" },
  {
    name: "order",
    main: "services/order/main.ts",
    defaultPort: 50051,
    defaultOpsPort: 51051,
    schema: "orders",
    serves: ["shop.order.v1.OrderService", "shop.order.v1.SagaAdminService"],
    publishes: "order",
  },
  {
    name: "notification",
    main: "services/notification/main.ts",
    defaultPort: 50054,
    defaultOpsPort: 51054,
    schema: "notification",
    serves: ["shop.notification.v1.NotificationService"],
    consumes: [{ context: "order", durable: "notification" }],
  },
  { name: "gateway", main: "gateway/main.ts", defaultPort: 8080, defaultOpsPort: 9080, serves: ["shop.gateway.v1.StorefrontService"], watches: ["order"] },
] as const satisfies readonly Deployable[];

export type MeshServiceName = (typeof meshDeployables)[number]["name"];
export const meshServiceNames: readonly MeshServiceName[] = meshDeployables.map((d) => d.name);

/** The variable a service reads its port from, e.g. ORDER_PORT. */
const portVariable = (name: string) => `${name.toUpperCase()}_PORT`;

/** The deployables on the ports the same *_PORT variables the services read give. */
function meshServices(env: Env): MeshService[] {
  return meshDeployables.map(({ name, main, defaultPort }) => ({ name, main, port: port(env, portVariable(name), defaultPort) }));
}

/** The deployables on free ports, for a disposable mesh beside a developer's own. */
export async function meshOnFreePorts(): Promise<MeshService[]> {
  const services: MeshService[] = [];
  for (const { name, main } of meshDeployables) services.push({ name, main, port: await freePort() });
  return services;
}

/**
 * The *_PORT variables that put services where `services` says. Order's loopback admin port
 * is any free one, so a disposable mesh never collides with a developer's on 50061.
 */
export const portEnv = (services: readonly MeshService[]) => ({ ...Object.fromEntries(services.map((s) => [portVariable(s.name), String(s.port)])), ORDER_ADMIN_PORT: "0" });

/** Environment for a child: the resolved dependencies, and peers' addresses by their ports. */
export function childEnv(env: Env, services: MeshService[], deps: { databaseUrl: string; natsUrl: string }): NodeJS.ProcessEnv {
  const url = (name: string) => `http://127.0.0.1:${services.find((s) => s.name === name)!.port}`;
  return {
    ...env,
    DATABASE_URL: deps.databaseUrl,
    NATS_URL: deps.natsUrl,
    ORDER_URL: env["ORDER_URL"] ?? url("order"),
    INVENTORY_URL: env["INVENTORY_URL"] ?? url("inventory"),
    PAYMENT_URL: env["PAYMENT_URL"] ?? url("payment"),
    NOTIFICATION_URL: env["NOTIFICATION_URL"] ?? url("notification"),
    // On a developer's machine the gateway issues demo tokens; see the README.
    AUTH_MODE: env["AUTH_MODE"] ?? "local",
  };
}

/** For the CLIs: a bad *_PORT ends the command with the variable's name, not a stack trace. */
export function meshServicesOrExit(env: Env): MeshService[] {
  try {
    return meshServices(env);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    console.error(`meshwork: configuration error: ${err.message}`);
    process.exit(2);
  }
}
