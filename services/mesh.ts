/**
 * The mesh manifest: every deployable, what it serves, calls, owns and consumes. Everything that
 * needs the topology reads it from here.
 */
// The config helpers alone, not the whole kit behind "#platform": every tool reads this file.
import { peerUrl, port, type Env } from "#platform/process/config.js";
import type { MeshTlsFiles } from "#platform/trust/mesh-tls.js";

/** A port a deployable listens on: the variable that sets it, and where it listens without one. */
export interface PortSetting {
  variable: string;
  default: number;
}

/**
 * What one deployable is and needs. Every per-service credential (certificate, NATS user,
 * Postgres role, secrets) is derived from these entries, named by `name`, which is also the
 * service's identity in its logs, metrics, traces and events.
 */
export interface Deployable {
  name: string;
  /** Entry point, relative to the repository root. */
  main: string;
  /** The mesh port (mTLS), or the gateway's public one. */
  port: PortSetting;
  /** Plaintext port for grpc.health.v1 probes and /metrics scrapes, which carry no client certificate. */
  opsPort: PortSetting;
  /** A listener for operators apart from the public one (the gateway's console backend): loopback by default, never behind a public Service. */
  operatorPort?: PortSetting;
  /** The deployables it calls over RPC; each reaches it at <PEER>_URL. */
  calls: readonly string[];
  /** The Postgres schema it owns, through a role named after the service; none for the gateway. */
  schema?: string;
  /** The protobuf services it serves, which it alone may announce in the registry. */
  serves: readonly string[];
  /** Events: the context whose `shop.<ctx>.v1.>` subjects it alone publishes (the stream its outbox feeds and it owns). */
  publishes?: string;
  /** Durable JetStream consumers it reads: the stream's context and the durable's name. */
  consumes?: readonly { context: string; durable: string }[];
  /** Contexts whose event subjects it follows live with a core subscription (no durable). */
  watches?: readonly string[];
  /**
   * A legacy application the mesh is strangling (the strangler fig), not a mesh service: it
   * speaks JSON over HTTP/1.1 (behind mTLS like the rest) on `port`, answers `GET /healthz` on
   * `opsPort`, uses no NATS, imports none of the services' code, and keeps its data in
   * `schema` on a Postgres cluster of its own, never the mesh's, so that the replication
   * rights `capturedBy`'s change data capture needs grant nothing over the mesh's data.
   */
  legacy?: { schema: string; capturedBy: string };
}

/** The deployables of the mesh, in start order: participants first, so order's clients find them up. */
export const meshDeployables = [
  {
    name: "oldshop",
    main: "legacy/oldshop/main.ts",
    port: { variable: "OLDSHOP_PORT", default: 50060 },
    opsPort: { variable: "OLDSHOP_OPS_PORT", default: 51060 },
    calls: [],
    serves: [],
    legacy: { schema: "oldshop", capturedBy: "catalog" },
  },
  {
    name: "inventory",
    main: "services/inventory/main.ts",
    port: { variable: "INVENTORY_PORT", default: 50052 },
    opsPort: { variable: "INVENTORY_OPS_PORT", default: 51052 },
    calls: [],
    schema: "inventory",
    serves: ["shop.inventory.v1.InventoryService"],
    publishes: "inventory",
  },
  {
    name: "payment",
    main: "services/payment/main.ts",
    port: { variable: "PAYMENT_PORT", default: 50053 },
    opsPort: { variable: "PAYMENT_OPS_PORT", default: 51053 },
    calls: [],
    schema: "payment",
    serves: ["shop.payment.v1.PaymentService"],
    publishes: "payment",
  },
  {
    name: "catalog",
    main: "services/catalog/main.ts",
    port: { variable: "CATALOG_PORT", default: 50055 },
    opsPort: { variable: "CATALOG_OPS_PORT", default: 51055 },
    calls: ["oldshop"],
    schema: "catalog",
    serves: ["shop.catalog.v1.CatalogService"],
    publishes: "catalog",
    // The sync back: writes taken here, once the route table moves them, go on to the old shop.
    consumes: [{ context: "catalog", durable: "oldshop-sync" }],
  },
  {
    name: "order",
    main: "services/order/main.ts",
    port: { variable: "ORDER_PORT", default: 50051 },
    opsPort: { variable: "ORDER_OPS_PORT", default: 51051 },
    calls: ["inventory", "payment", "catalog", "oldshop"],
    schema: "orders",
    serves: ["shop.order.v1.OrderService", "shop.order.v1.SagaAdminService"],
    publishes: "order",
  },
  {
    name: "notification",
    main: "services/notification/main.ts",
    port: { variable: "NOTIFICATION_PORT", default: 50054 },
    opsPort: { variable: "NOTIFICATION_OPS_PORT", default: 51054 },
    calls: [],
    schema: "notification",
    serves: ["shop.notification.v1.NotificationService"],
    consumes: [{ context: "order", durable: "notification" }],
  },
  {
    name: "gateway",
    main: "gateway/main.ts",
    port: { variable: "GATEWAY_PORT", default: 8080 },
    opsPort: { variable: "GATEWAY_OPS_PORT", default: 9080 },
    operatorPort: { variable: "OPERATOR_PORT", default: 8090 },
    calls: ["order", "inventory", "payment", "catalog", "oldshop"],
    serves: ["shop.gateway.v1.StorefrontService"],
    watches: ["order", "inventory", "payment"],
  },
] as const satisfies readonly Deployable[];

export type MeshServiceName = (typeof meshDeployables)[number]["name"];
export const meshServiceNames: readonly MeshServiceName[] = meshDeployables.map((d) => d.name);

/** The manifest's entry for `name`. */
export function deployable<N extends MeshServiceName>(name: N): Extract<(typeof meshDeployables)[number], { name: N }> {
  return meshDeployables.find((d) => d.name === name) as Extract<(typeof meshDeployables)[number], { name: N }>;
}

/** Every deployable but the gateway: the services behind it, in start order. */
export const meshServices = meshDeployables.filter((d) => d.name !== "gateway");

/** The deployables that own a schema (every one but the gateway). */
export const withSchema = meshDeployables.flatMap((d) => ("schema" in d ? [d] : []));

/** The deployables that feed a stream from their outbox. */
export const publishers = meshDeployables.flatMap((d) => ("publishes" in d ? [d] : []));

/** The variable that holds the address callers reach `name` at, e.g. INVENTORY_URL. */
export const urlVariable = (name: string) => `${name.toUpperCase()}_URL`;

/** The port `name` listens on: its variable, else the manifest's default. */
export const listenPort = (env: Env, name: MeshServiceName) => port(env, deployable(name).port.variable, deployable(name).port.default);

/** Where to call `peer`: <PEER>_URL, else the peer's default port on this machine (https under mTLS). */
export const peerUrlOf = (env: Env, peer: MeshServiceName, meshTls: MeshTlsFiles | "off") => peerUrl(env, urlVariable(peer), deployable(peer).port.default, meshTls);
