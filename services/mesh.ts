/**
 * The mesh manifest: every deployable, what it serves, calls, owns and consumes. Everything that
 * needs the topology reads it from here.
 */
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

export type MeshServiceName = (typeof meshDeployables)[number]["name"];
export const meshServiceNames: readonly MeshServiceName[] = meshDeployables.map((d) => d.name);

