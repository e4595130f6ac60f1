import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, createClient, type Client } from "@connectrpc/connect";
import { randomBytes } from "node:crypto";
import type { ServiceServer } from "#platform";
import { CatalogService, SyncState } from "#gen/shop/catalog/v1/catalog_service_pb.js";
import { connect, createServiceDatabases } from "#tests/support/databases.js";
import { eventually } from "#tests/support/eventually.js";
import { contractClient, meshTransport, testPki } from "#tests/support/mesh-clients.js";
import { startTestNats, type TestNats } from "#tests/support/nats.js";
import { testRuntime } from "#tests/support/services.js";
import { build } from "./build.js";
import { createOldShopSource } from "./testing/old-shop-source.js";

/** Nothing here is written to the catalog, so its sync back never calls the old shop (writes.test.ts does). */
const NO_OLD_SHOP = "https://127.0.0.1:9";

describe("catalog over the real RPC stack (mTLS), fed by change capture from the old shop's database", () => {
  let nats: TestNats;
  let server: ServiceServer;
  let legacy: ReturnType<typeof connect>;
  let client: Client<typeof CatalogService>;
  let asGateway: Client<typeof CatalogService>;
  const slot = `t_${randomBytes(5).toString("hex")}`;

  beforeAll(async () => {
    const [databases, source, started, pki] = await Promise.all([createServiceDatabases(), createOldShopSource(), startTestNats(), testPki()]);
    nats = started;
    legacy = connect(source.adminUrl);
    await legacy`insert into oldshop.products (sku, title, blurb, price, currency) values ('MW-MUG-001', 'Mug', 'A mug.', '12.99', 'USD'), ('MW-PEN-002', 'Pen', 'A pen.', '2.50', 'EUR')`;
    server = await build({ ...testRuntime(pki, "catalog", databases.urls.catalog, nats.urlFor("catalog")), oldshopUrl: NO_OLD_SHOP, cdcSourceUrl: source.cdcUrl, cdcSlot: slot, cdcBackoff: { initialMs: 20, maxMs: 200 } });
    client = contractClient(CatalogService, server.url, pki, { peer: "catalog" });
    asGateway = createClient(CatalogService, meshTransport(server.url, pki, { as: "gateway", peer: "catalog" }));
  });
  afterAll(async () => {
    await server?.close();
    if (legacy) {
      // The slot is permanent: it would hold the cluster's WAL after the suite.
      await legacy`select pg_drop_replication_slot(slot_name) from pg_replication_slots where slot_name = ${slot} and not active`;
      await legacy.end();
    }
    await nats?.stop();
  });

  it("lists the backfilled products by SKU, with the old shop's title, blurb and decimal price mapped to the contract", async () => {
    await eventually(async () => expect((await client.listProducts({})).products).toHaveLength(2));
    const { products } = await client.listProducts({});
    expect(products.map((p) => ({ sku: p.sku, name: p.name, description: p.description, currency: p.price?.currencyCode, minor: p.price?.minorUnits }))).toEqual([
      { sku: "MW-MUG-001", name: "Mug", description: "A mug.", currency: "USD", minor: 1299n },
      { sku: "MW-PEN-002", name: "Pen", description: "A pen.", currency: "EUR", minor: 250n },
    ]);
    expect((await client.listProducts({ skus: ["MW-PEN-002", "MW-NONE"] })).products.map((p) => p.sku)).toEqual(["MW-PEN-002"]);
  });

  it("refuses a blank or over-long SKU with INVALID_ARGUMENT naming its index, and more than 100 SKUs by the contract's limit", async () => {
    await expect(client.listProducts({ skus: ["MW-MUG-001", " "] })).rejects.toMatchObject({ code: Code.InvalidArgument, rawMessage: "skus[1]: is required" });
    await expect(client.listProducts({ skus: ["x".repeat(129)] })).rejects.toMatchObject({ code: Code.InvalidArgument });
    await expect(client.listProducts({ skus: Array.from({ length: 101 }, (_, i) => `SKU-${i}`) })).rejects.toMatchObject({ code: Code.InvalidArgument });
  });

  it("streams a legacy write through and reports it in GetSyncStatus and on /metrics", async () => {
    await legacy`update oldshop.products set price = '13.49' where sku = 'MW-MUG-001'`;
    await eventually(async () => expect((await client.listProducts({ skus: ["MW-MUG-001"] })).products[0]?.price?.minorUnits).toBe(1349n));
    const status = await eventually(async () => {
      const answer = await client.getSyncStatus({});
      expect(answer).toMatchObject({ slot, state: SyncState.STREAMING, lagBytes: 0n, lagMs: 0n, products: 2n });
      return answer;
    });
    expect(status.appliedLsn).toMatch(/^[0-9A-F]+\/[0-9A-F]+$/);
    expect(status.appliedTime).toBeDefined();
    const metrics = await (await fetch(`${server.ops.url}/metrics`)).text();
    expect(metrics).toMatch(/^catalog_cdc_applied_changes_total\{service="catalog"\} 1$/m);
    expect(metrics).toMatch(/^catalog_cdc_lag_bytes\{service="catalog"\} 0$/m);
    expect(metrics).toMatch(/^catalog_cdc_lag_seconds\{service="catalog"\} 0$/m);
  });

  it("admits the gateway to ListProducts but not to GetSyncStatus (console and operator only)", async () => {
    expect((await asGateway.listProducts({ skus: ["MW-PEN-002"] })).products).toHaveLength(1);
    await expect(asGateway.getSyncStatus({})).rejects.toMatchObject({ code: Code.PermissionDenied });
  });
});
