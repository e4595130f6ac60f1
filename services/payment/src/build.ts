import { resolve } from "node:path";
import { PaymentService } from "#gen/shop/payment/v1/payment_service_pb.js";
import { startService, type ServiceRuntime, type ServiceServer } from "#platform";
import { eventStream } from "#shop/streams.js";
import { customerAgent } from "#shop/customer-agent.js";
import type { CardNetwork } from "./app/card-network.js";
import { createPayments } from "./app/payments.js";
import { createSimulatedCardNetwork } from "./app/simulated-card-network.js";
import { outbox, tables } from "./db/schema.js";
import { createRoutes } from "./rpc/routes.js";

export interface PaymentDeps extends ServiceRuntime {
  /** Defaults to the simulated network; a real processor plugs in here. */
  cardNetwork?: CardNetwork;
}

/** Wires payment together and starts serving; main.ts and tests both call this. */
export function build(deps: PaymentDeps): Promise<ServiceServer> {
  return startService(deps, {
    name: "payment",
    schemaName: "payment",
    tables,
    migrationsFolder: resolve(import.meta.dirname, "../migrations"),
    outbox: { table: outbox, stream: eventStream("payment") },
    services: [PaymentService],
    customerAgent,
    async setup({ db }) {
      return { routes: createRoutes({ payments: createPayments(db, deps.cardNetwork ?? createSimulatedCardNetwork()) }) };
    },
  });
}
