import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, createRouterTransport } from "@connectrpc/connect";
import { CatalogService, ProductSchema, type Product } from "#gen/shop/catalog/v1/catalog_service_pb.js";
import { startTestNats, type TestNats } from "#tests/support/nats.js";
import { eventually } from "#tests/support/eventually.js";
import { silentLogger } from "#tests/support/silent-logger.js";
import { connectBus, type BusConnection } from "#platform/messaging/connection.js";
import { openRouteTable, type RouteChange, type RouteTable } from "#platform/strangler/route-table.js";
import { createShadowCaller } from "#platform/strangler/shadow-caller.js";
import { createOldShopCatalog } from "./old-shop-catalog.js";
import { CATALOG_ROUTE, catalogRoutes, createCatalogRouter } from "./catalog-router.js";
import { toMoney } from "./money.js";

/** The old shop's rows, as its JSON API lists them. */
const legacyRows = [
  { sku: "MW-MUG-001", title: "Mesh mug", blurb: "Holds coffee.", price: "12.99", currency: "USD" },
  { sku: "MW-TEE-002", title: "Mesh tee", blurb: "Cotton.", price: "24.99", currency: "USD" },
];
/** The same catalog as the new side holds it after the backfill. */
const capturedMinor: Record<string, number> = { "MW-MUG-001": 1299, "MW-TEE-002": 2499 };
const captured = (): Product[] => legacyRows.map((row) => create(ProductSchema, { sku: row.sku, name: row.title, description: row.blurb, price: toMoney(row.currency, capturedMinor[row.sku]!) }));

describe("catalog router", () => {
  let nats: TestNats;
  let oldShopServer: Server;
  const buses: BusConnection[] = [];
  let routes: RouteTable;
  let console_: RouteTable;
  let legacyCalls = 0;
  /** What the new side holds now, and whether it is up. */
  let newSide = { products: captured(), down: false };
  let newCalls = 0;
  const catalog = createClient(
    CatalogService,
    createRouterTransport(({ service }) =>
      service(CatalogService, {
        listProducts(request) {
          newCalls++;
          if (newSide.down) throw new ConnectError("catalog is down", Code.Unavailable);
          return { products: newSide.products.filter((p) => request.skus.length === 0 || request.skus.includes(p.sku)) };
        },
        getSyncStatus() {
          throw new ConnectError("not in this test", Code.Unimplemented);
        },
      }),
    ),
  );
  let oldShop: ReturnType<typeof createOldShopCatalog>;

  const bus = (user: string) => {
    const connection = connectBus({ url: nats.urlFor(user), name: `router-${user}`, logger: silentLogger });
    buses.push(connection);
    return connection;
  };
  const move = async (change: Omit<RouteChange, "changedBy" | "reason">) => {
    // Retried: a bucket just created may not take a write yet on a loaded host (no responders).
    const entry = await eventually(() => console_.set(CATALOG_ROUTE, { changedBy: "ada (operator)", reason: "test", ...change }));
    await eventually(() => expect(routes.route(CATALOG_ROUTE).revision).toBe(entry.revision));
  };

  beforeAll(async () => {
    nats = await startTestNats();
    // The old shop's JSON API over plain HTTP/1.1 (as under MESH_TLS=off); the adapter's TLS is its own test's.
    oldShopServer = createServer((req, res) => {
      legacyCalls++;
      const asked = new URL(req.url ?? "/", "http://x").searchParams.getAll("sku");
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ products: legacyRows.filter((row) => asked.length === 0 || asked.includes(row.sku)) }));
    });
    await new Promise<void>((resolve) => oldShopServer.listen(0, "127.0.0.1", resolve));
    oldShop = createOldShopCatalog({ baseUrl: `http://127.0.0.1:${(oldShopServer.address() as AddressInfo).port}` });
    routes = openRouteTable({ bus: bus("gateway"), routes: catalogRoutes, logger: silentLogger });
    console_ = openRouteTable({ bus: bus("console"), routes: catalogRoutes, logger: silentLogger });
  });
  afterAll(async () => {
    routes.close();
    console_.close();
    oldShop.close();
    oldShopServer.closeAllConnections();
    await new Promise((resolve) => oldShopServer.close(resolve));
    await Promise.all(buses.map((connection) => connection.close()));
    await nats.stop();
  });

  it("serves from the old shop by default, mapped to the v1 contract", async () => {
    const router = createCatalogRouter({ routes, oldShop: oldShop.client, catalog });
    const before = newCalls;
    const answer = await router.listProducts(["MW-MUG-001"], "customer:c-1");
    expect(answer.side).toBe("legacy");
    expect(answer.products).toEqual([captured()[0]]);
    expect(newCalls).toBe(before);
  });

  it("in shadow, serves the old shop's answer, compares the catalog's in the background, and reports a seeded mismatch", async () => {
    await move({ mode: "shadow" });
    const shadow = createShadowCaller({ logger: silentLogger, policy: { recheckAfterMs: 200 } });
    const router = createCatalogRouter({ routes, oldShop: oldShop.client, catalog, shadow });
    const calls = 5;
    for (let i = 0; i < calls; i++) expect((await router.listProducts([], `customer:c-${i}`)).side).toBe("legacy");
    await eventually(() => expect(shadow.stats(CATALOG_ROUTE)).toMatchObject({ legacyCalls: calls, newCalls: 0, compared: calls, mismatched: 0, failed: 0 }));
    expect(shadow.stats(CATALOG_ROUTE).example).toBeUndefined();

    // A price that differs on the new side, and a product it lacks, still so on the recheck.
    newSide = { products: [create(ProductSchema, { ...captured()[0]!, price: toMoney("USD", 1399) })], down: false };
    const answer = await router.listProducts([], "customer:c-1");
    expect(answer.products.map((p) => p.price?.minorUnits)).toEqual([1299n, 2499n]);
    await eventually(() => expect(shadow.stats(CATALOG_ROUTE).mismatched).toBe(1));
    expect(shadow.stats(CATALOG_ROUTE).example?.differences).toEqual([
      { path: "products[MW-MUG-001].price.minor_units", legacy: '"1299"', new: '"1399"' },
      expect.objectContaining({ path: "products[MW-TEE-002]", new: "(absent)" }),
    ]);

    // A difference gone by the recheck is a change still in flight to the new side, not a mismatch.
    newSide = { products: [create(ProductSchema, { ...captured()[0]!, price: toMoney("USD", 1399) }), captured()[1]!], down: false };
    const asked = newCalls;
    await router.listProducts([], "customer:c-1");
    await eventually(() => expect(newCalls).toBe(asked + 1)); // the shadow call saw the stale price
    newSide = { products: captured(), down: false };
    await eventually(() => expect(shadow.stats(CATALOG_ROUTE).converged).toBe(1));
    expect(shadow.stats(CATALOG_ROUTE).mismatched).toBe(1);

    // The new side failing never reaches the caller: it is counted.
    newSide = { products: captured(), down: true };
    expect((await router.listProducts([], "customer:c-1")).products).toHaveLength(2);
    await eventually(() => expect(shadow.stats(CATALOG_ROUTE).failed).toBe(1));
    newSide = { products: captured(), down: false };
  });

  it("in shadow without a shadow caller (order's pricing may opt out), asks the old shop alone", async () => {
    const router = createCatalogRouter({ routes, oldShop: oldShop.client, catalog });
    const before = newCalls;
    expect((await router.listProducts(["MW-TEE-002"], "customer:c-1")).side).toBe("legacy");
    expect(newCalls).toBe(before);
  });

  it("in canary 50%, serves about half the customers from the new side, each always from the same side", async () => {
    await move({ mode: "canary", canaryPercent: 50 });
    const router = createCatalogRouter({ routes, oldShop: oldShop.client, catalog });
    const customers = Array.from({ length: 40 }, (_, i) => `customer:c-${i}`);
    const sides = await Promise.all(customers.map(async (key) => (await router.listProducts(["MW-MUG-001"], key)).side));
    const again = await Promise.all(customers.map(async (key) => (await router.listProducts(["MW-MUG-001"], key)).side));
    expect(again).toEqual(sides);
    const fromNew = sides.filter((side) => side === "new").length;
    expect(fromNew).toBeGreaterThan(8);
    expect(fromNew).toBeLessThan(32);
  });

  it("in new, serves from the catalog; rolling back to legacy is the same switch", async () => {
    await move({ mode: "new" });
    const router = createCatalogRouter({ routes, oldShop: oldShop.client, catalog });
    const legacyBefore = legacyCalls;
    expect(await router.listProducts(["MW-MUG-001"], "customer:c-1")).toEqual({ side: "new", products: [captured()[0]] });
    expect(legacyCalls).toBe(legacyBefore);
    await move({ mode: "legacy" });
    expect((await router.listProducts(["MW-MUG-001"], "customer:c-1")).side).toBe("legacy");
    expect(legacyCalls).toBe(legacyBefore + 1);
  });
});
