import { ConfigError, port, type Env } from "../config.js";
import { freePort } from "./tcp.js";
import type { MeshTlsFiles } from "../mesh-tls.js";

export interface MeshService {
  name: string;
  port: number;
  /** Its plaintext probe and scrape port. */
  opsPort: number;
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
  { name: "gateway", main: "gateway/main.ts", defaultPort: 8080, defaultOpsPort: 9080, serves: ["shop.gateway.v1.StorefrontService"], watches: ["order", "inventory", "payment"] },
] as const satisfies readonly Deployable[];

/** The one principal that is no deployable: tools and people, with a client-only certificate and a NATS user of its own. */
export const OPERATOR = "operator";

export type MeshServiceName = (typeof meshDeployables)[number]["name"];
export const meshServiceNames: readonly MeshServiceName[] = meshDeployables.map((d) => d.name);

/** The variable a service reads its port from, e.g. ORDER_PORT; and its ops port, e.g. ORDER_OPS_PORT. */
const portVariable = (name: string) => `${name.toUpperCase()}_PORT`;
const opsPortVariable = (name: string) => `${name.toUpperCase()}_OPS_PORT`;

/** The deployables on the ports the *_PORT and *_OPS_PORT variables give, else their defaults. */
function meshServices(env: Env): MeshService[] {
  return meshDeployables.map(({ name, main, defaultPort, defaultOpsPort }) => ({
    name,
    main,
    port: port(env, portVariable(name), defaultPort),
    opsPort: port(env, opsPortVariable(name), defaultOpsPort),
  }));
}

/** The deployables on free ports, for a disposable mesh beside a developer's own. */
export async function meshOnFreePorts(): Promise<MeshService[]> {
  const services: MeshService[] = [];
  for (const { name, main } of meshDeployables) services.push({ name, main, port: await freePort(), opsPort: await freePort() });
  return services;
}

/** The *_PORT variables that put services where `services` says. */
export const portEnv = (services: readonly MeshService[]) => Object.fromEntries(services.map((s) => [portVariable(s.name), String(s.port)]));

/** What each process of a mesh is given that is its own: credentials, resolved per service. */
export interface MeshCredentialSource {
  /** The service's own Postgres role's URL; undefined for a deployable without a schema. */
  databaseUrl(name: string): string | undefined;
  /** NATS with the service's own user. */
  natsUrl(name: string): string;
  /** Its certificate, key and the mesh CA; undefined under MESH_TLS=off. */
  tls(name: string): MeshTlsFiles | undefined;
  /** The gateway's token-signing secret in local auth mode. */
  gatewayAuthSecret?: string;
}

/**
 * Variables a child must never inherit from the shell that started the mesh: an admin
 * DATABASE_URL, someone else's NATS user or certificate. Each process gets its own instead.
 */
const perProcessVariables = ["DATABASE_URL", "NATS_URL", "TLS_CERT_FILE", "TLS_KEY_FILE", "TLS_CA_FILE", "OPS_PORT", "AUTH_LOCAL_SECRET"];

/** Environment every child shares: peers' addresses (https under mTLS) and the gateway's auth mode; no credential. */
export function childEnv(env: Env, services: MeshService[]): NodeJS.ProcessEnv {
  const scheme = env["MESH_TLS"] === "off" ? "http" : "https";
  const url = (name: string) => `${scheme}://127.0.0.1:${services.find((s) => s.name === name)!.port}`;
  const shared: NodeJS.ProcessEnv = { ...env };
  for (const name of perProcessVariables) delete shared[name];
  return {
    ...shared,
    ORDER_URL: env["ORDER_URL"] ?? url("order"),
    INVENTORY_URL: env["INVENTORY_URL"] ?? url("inventory"),
    PAYMENT_URL: env["PAYMENT_URL"] ?? url("payment"),
    NOTIFICATION_URL: env["NOTIFICATION_URL"] ?? url("notification"),
    // On a developer's machine the gateway issues demo tokens; see the README.
    AUTH_MODE: env["AUTH_MODE"] ?? "local",
  };
}

/** Each service with the environment that is its own alone, over any it already has. */
export function withOwnCredentials(services: readonly MeshService[], credentials: MeshCredentialSource): MeshService[] {
  return services.map((service) => {
    const databaseUrl = credentials.databaseUrl(service.name);
    const tls = credentials.tls(service.name);
    const own: Record<string, string> = {
      NATS_URL: credentials.natsUrl(service.name),
      OPS_PORT: String(service.opsPort),
      ...(databaseUrl ? { DATABASE_URL: databaseUrl } : {}),
      ...(tls ? { TLS_CERT_FILE: tls.certFile, TLS_KEY_FILE: tls.keyFile, TLS_CA_FILE: tls.caFile } : {}),
      ...(service.name === "gateway" && credentials.gatewayAuthSecret ? { AUTH_LOCAL_SECRET: credentials.gatewayAuthSecret } : {}),
    };
    return { ...service, env: { ...own, ...service.env } };
  });
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
