import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Kvm } from "@nats-io/kv";
import { OrderStatus } from "#gen/shop/order/v1/order_service_pb.js";
import { connectBus } from "#platform/messaging/connection.js";
import { DISCOVERY_BUCKET, type Instance } from "#platform/discovery/registry.js";
import { serviceDatabaseUrl } from "#tools/infra/database-roles.js";
import { withOwnCredentials } from "#tools/mesh/topology.js";
import { createSupervisor } from "#tools/mesh/supervisor.js";
import { freePort } from "#tools/infra/tcp.js";
import { connect, testRolePassword } from "../support/databases.js";
import { eventually } from "../support/eventually.js";
import { expectInvariants } from "../support/invariants.js";
import { startProcessMesh, type ProcessMesh } from "../support/process-mesh.js";
import { silentLogger } from "../support/silent-logger.js";
import { deployable } from "#mesh";

/**
 * Two inventory instances registered in the NATS KV registry; one is SIGKILLed, its entry
 * still there. Order's client balances across both, ejects the dead one, and retries onto
 * the live one: the customer sees no error.
 */
describe("service discovery and load balancing", () => {
  let mesh: ProcessMesh;
  let second: ReturnType<typeof createSupervisor>;

  beforeAll(async () => {
    mesh = await startProcessMesh();
    // A second inventory with the first one's credentials (its role, NATS user and
    // certificate), so it may announce inventory's service; supervised under a name of its own.
    const [own] = withOwnCredentials([{ name: "inventory", main: deployable("inventory").main, port: await freePort(), opsPort: await freePort() }], {
      databaseUrl: () => serviceDatabaseUrl(mesh.databaseUrl, "inventory", testRolePassword("inventory")),
      natsUrl: mesh.nats.urlFor,
      tls: mesh.pki.files,
    });
    second = createSupervisor([{ ...own!, name: "inventory-2" }], { env: { ...process.env, [deployable("inventory").port.variable]: String(own!.port), LOG_LEVEL: "warn" }, log: () => {} });
    second.start();
    await second.waitUntilServing(30_000);
  });
  afterAll(async () => {
    await second?.stop(5_000);
    await mesh?.stop();
  });

  async function registered(): Promise<Instance[]> {
    const bus = connectBus({ url: mesh.nats.urlFor("operator"), name: "discovery-test", logger: silentLogger });
    try {
      const kv = await new Kvm((await bus.ready).js).open(DISCOVERY_BUCKET);
      const found: Instance[] = [];
      for await (const key of await kv.keys("shop.inventory.v1.InventoryService.>")) {
        const entry = await kv.get(key);
        if (entry?.operation === "PUT") found.push(JSON.parse(entry.string()) as Instance);
      }
      return found;
    } finally {
      await bus.close();
    }
  }

  it("registers every instance with its address, version and health", async () => {
    const instances = await eventually(async () => {
      const found = await registered();
      expect(found.filter((i) => i.health === "SERVING")).toHaveLength(2);
      return found;
    }, 20_000);
    expect(new Set(instances.map((i) => i.address)).size).toBe(2);
    expect(instances.every((i) => i.version === "dev")).toBe(true);
  });

  it("keeps orders succeeding when one instance is killed", async () => {
    mesh.kill("inventory"); // SIGKILL: its registry entry lingers until the TTL
    const orderIds: string[] = [];
    for (let i = 0; i < 10; i++) {
      const { order } = await mesh.order.createOrder({ customerId: `lb-${i}`, items: [{ sku: "MW-STK-003", quantity: 1 }], paymentToken: "tok_visa", requestId: randomUUID() });
      orderIds.push(order!.id);
    }
    await eventually(async () => {
      for (const orderId of orderIds) expect((await mesh.order.getOrder({ orderId })).order?.status).toBe(OrderStatus.CONFIRMED);
    }, 30_000);
    const sql = connect(mesh.databaseUrl);
    try {
      await expectInvariants(sql);
    } finally {
      await sql.end();
    }
  });
});
