import { ConfigError, port, type Env } from "../config.js";

export interface MeshService {
  name: string;
  port: number;
  /** Entry point, relative to the repository root. */
  main: string;
  /** Environment for this service alone, over the shared one (e.g. the address it advertises). */
  env?: Record<string, string>;
}

/**
 * The deployables of the mesh and their ports, honouring the same *_PORT variables the
 * services read, in start order: participants first, so order's clients find them up.
 */
function meshServices(env: Env): MeshService[] {
  return [
    { name: "inventory", port: port(env, "INVENTORY_PORT", 50052), main: "services/inventory/main.ts" },
    { name: "payment", port: port(env, "PAYMENT_PORT", 50053), main: "services/payment/main.ts" },
    { name: "order", port: port(env, "ORDER_PORT", 50051), main: "services/order/main.ts" },
    { name: "notification", port: port(env, "NOTIFICATION_PORT", 50054), main: "services/notification/main.ts" },
    { name: "gateway", port: port(env, "GATEWAY_PORT", 8080), main: "gateway/main.ts" },
  ];
}

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
