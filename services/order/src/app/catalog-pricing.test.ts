import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import postgres from "postgres";
import { OrderService } from "#gen/shop/order/v1/order_service_pb.js";
import { CatalogService } from "#gen/shop/catalog/v1/catalog_service_pb.js";
import { startInProcessMesh, type InProcessMesh } from "#tests/support/services.js";
import { eventually } from "#tests/support/eventually.js";
import { silentLogger } from "#tests/support/silent-logger.js";
import { connectBus, type BusConnection } from "#platform/messaging/connection.js";
import { openRouteTable, type RouteChange, type RouteTable } from "#platform/strangler/route-table.js";
import { canaryBucketOf } from "#platform/strangler/route-decision.js";
import { CATALOG_ROUTE, catalogRoutes } from "#shop/catalog-router.js";

const SKU = "MW-PRICED-001";
const LEGACY_MINOR = 1050;
const NEW_MINOR = 1199;

/** Order prices each order from the side the catalog route serves its customer from. */
describe("order pricing through the catalog route", () => {
  let mesh: InProcessMesh;
  let sql: ReturnType<typeof postgres>;
  let bus: BusConnection;
  let routes: RouteTable;

  beforeAll(async () => {
    mesh = await startInProcessMesh({ catalog: [{ sku: SKU, name: "Priced mug", priceMinor: LEGACY_MINOR, currency: "USD", initialStock: 1_000 }] });
    sql = postgres(mesh.databaseUrl, { max: 1, onnotice: () => {} });
    bus = connectBus({ url: mesh.nats.urlFor("console"), name: "pricing-test-console", logger: silentLogger });
    routes = openRouteTable({ bus, routes: catalogRoutes, logger: silentLogger });
  }, 60_000);
  afterAll(async () => {
    routes?.close();
    await bus?.close();
    await sql?.end();
    await mesh?.close();
  });

  const totalFor = async (customerId: string) => {
    const { order } = await mesh.client(OrderService, "order").createOrder({ customerId, items: [{ sku: SKU, quantity: 2 }], paymentToken: "tok_visa", requestId: randomUUID() });
    return Number(order!.total!.minorUnits);
  };
  // Retried: a bucket just created may not take a write yet on a loaded host (no responders).
  const move = (change: Omit<RouteChange, "changedBy" | "reason">) => eventually(() => routes.set(CATALOG_ROUTE, { changedBy: "ada (operator)", reason: "pricing test", ...change }));

  it("prices from the old shop by default, then from the catalog once the route says new, and back", async () => {
    // The catalog has captured the old shop's row; a divergence seeded on the new side alone tells the sides apart.
    const catalog = mesh.client(CatalogService, "catalog");
    await eventually(async () => expect((await catalog.listProducts({ skus: [SKU] })).products.map((p) => p.price?.minorUnits)).toEqual([BigInt(LEGACY_MINOR)]));
    await sql`update catalog.products set price_minor = ${NEW_MINOR} where sku = ${SKU}`;

    expect(await totalFor("pricing-1")).toBe(2 * LEGACY_MINOR);
    await move({ mode: "new" });
    await eventually(async () => expect(await totalFor("pricing-1")).toBe(2 * NEW_MINOR));
    await move({ mode: "legacy" });
    await eventually(async () => expect(await totalFor("pricing-1")).toBe(2 * LEGACY_MINOR));
  }, 60_000);

  it("in canary, prices each customer from their own sticky side", async () => {
    const entry = await move({ mode: "canary", canaryPercent: 50 });
    const customers = Array.from({ length: 12 }, (_, i) => `pricing-canary-${i}`);
    const expected = customers.map((c) => 2 * (canaryBucketOf(CATALOG_ROUTE, `customer:${c}`) < entry.canaryPercent ? NEW_MINOR : LEGACY_MINOR));
    // Both sides are among them, or the test would not tell anything.
    expect(new Set(expected).size).toBe(2);
    // One order at a time: twelve at once can meet order's admission limit on a loaded host (RESOURCE_EXHAUSTED).
    const totals = async () => {
      const placed: number[] = [];
      for (const customer of customers) placed.push(await totalFor(customer));
      return placed;
    };
    await eventually(async () => expect(await totals()).toEqual(expected));
    expect(await totals()).toEqual(expected);
  }, 60_000);
});
