import { describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, createRouterTransport } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { CatalogService, GetSyncStatusResponseSchema, ProductSchema, type Product } from "#gen/shop/catalog/v1/catalog_service_pb.js";
import { DiscardRefusedWritesRequestSchema, UpdateProductRequestSchema } from "#gen/shop/gateway/v1/operator_service_pb.js";
import type { RouteEntry, RouteMode, RouteTable } from "#platform/strangler/route-table.js";
import { InvalidArgumentError } from "#platform";
import { CATALOG_ROUTE, CATALOG_WRITE_ROUTE } from "#shop/catalog-router.js";
import { silentLogger } from "#tests/support/silent-logger.js";
import { createCatalogWrites } from "./catalog-writes.js";

/**
 * The catalog writes' routing and their guard on moving writes back, against an in-memory
 * catalog whose sync back backlog and answer to DiscardRefusedWrites the test sets, or one that
 * does not answer at all (the mesh tests exercise the real sides).
 */
function writesWith(options: { mode: RouteMode; pending?: bigint | Error; discard?: Error; catalogDown?: boolean }) {
  const calls = { oldShop: [] as Product[], catalog: [] as Product[], syncStatus: 0, served: [] as string[], discarded: [] as string[] };
  // Nothing listens on port 1: the connection is refused.
  const unreachable = createConnectTransport({ baseUrl: "http://127.0.0.1:1", httpVersion: "1.1" });
  const catalog = createClient(
    CatalogService,
    options.catalogDown ? unreachable : createRouterTransport(({ service }) =>
      service(CatalogService, {
        listProducts: () => ({ products: [] }),
        updateProduct: (req) => {
          const product = create(ProductSchema, { sku: req.sku, name: req.name, description: req.description, ...(req.price ? { price: req.price } : {}) });
          calls.catalog.push(product);
          return { product };
        },
        getSyncStatus: () => {
          calls.syncStatus++;
          if (options.pending instanceof Error) throw options.pending;
          return create(GetSyncStatusResponseSchema, { syncBackPending: options.pending ?? 0n });
        },
        discardRefusedWrites: (req) => {
          calls.discarded.push(req.sku);
          if (options.discard) throw options.discard;
          return { discarded: 2, resynced: true, product: create(ProductSchema, { sku: req.sku, name: "Mug, as the old shop holds it" }) };
        },
      }),
    ),
  );
  const entry = { method: CATALOG_WRITE_ROUTE, mode: options.mode, canaryPercent: 0, changedBy: "", changeTime: "", reason: "", revision: 1 } satisfies RouteEntry;
  const routes = { route: () => entry } as unknown as RouteTable;
  const oldShop = {
    putProduct: async (product: Product) => {
      calls.oldShop.push(product);
      return product;
    },
  };
  return { writes: createCatalogWrites({ routes, oldShop, catalog, calls: { served: (method, side) => calls.served.push(`${method} ${side}`) }, logger: silentLogger }), calls };
}

const request = create(UpdateProductRequestSchema, { sku: "MW-MUG-001", name: "Mug", description: "", price: { currencyCode: "USD", minorUnits: 1299n } });
const signal = new AbortController().signal;
const failure = (promise: Promise<unknown>) => promise.then(() => undefined, (e: unknown) => ConnectError.from(e));

describe("catalog writes", () => {
  it("go to the side the write route names, one side alone", async () => {
    const legacy = writesWith({ mode: "legacy" });
    expect(await legacy.writes.update(request, "grace", signal)).toMatchObject({ side: "legacy", product: { sku: "MW-MUG-001", name: "Mug" } });
    expect([legacy.calls.oldShop.length, legacy.calls.catalog.length]).toEqual([1, 0]);
    const moved = writesWith({ mode: "new" });
    expect(await moved.writes.update(request, "grace", signal)).toMatchObject({ side: "new", product: { sku: "MW-MUG-001", price: { minorUnits: 1299n } } });
    expect([moved.calls.oldShop.length, moved.calls.catalog.length]).toEqual([0, 1]);
    expect([...legacy.calls.served, ...moved.calls.served]).toEqual([`${CATALOG_WRITE_ROUTE} legacy`, `${CATALOG_WRITE_ROUTE} new`]);
  });

  it("may move back to legacy only once the sync back has nothing pending, and not while the catalog does not say", async () => {
    const pending = await failure(writesWith({ mode: "new", pending: 3n }).writes.checkMove(CATALOG_WRITE_ROUTE, "legacy", signal));
    expect(pending).toMatchObject({ code: Code.FailedPrecondition, rawMessage: expect.stringContaining("sync_back_pending is 3") });
    const silent = await failure(writesWith({ mode: "new", pending: new ConnectError("down", Code.Unavailable) }).writes.checkMove(CATALOG_WRITE_ROUTE, "legacy", signal));
    expect(silent).toMatchObject({ code: Code.FailedPrecondition, rawMessage: expect.stringContaining("did not say whether its sync back") });
    const done = writesWith({ mode: "new", pending: 0n });
    await expect(done.writes.checkMove(CATALOG_WRITE_ROUTE, "legacy", signal)).resolves.toBeUndefined();
    expect(done.calls.syncStatus).toBe(1);
    // Moving writes to the new side, or moving the read route, asks nothing.
    const other = writesWith({ mode: "legacy", pending: 5n });
    await other.writes.checkMove(CATALOG_WRITE_ROUTE, "new", signal);
    await other.writes.checkMove(CATALOG_ROUTE, "legacy", signal);
    expect(other.calls.syncStatus).toBe(0);
  });

  it.each([".", "..", "...", " "])("refuses the SKU %j as INVALID_ARGUMENT naming sku, before either side is asked", async (sku) => {
    const legacy = writesWith({ mode: "legacy" });
    // The kit's error interceptor answers an InvalidArgumentError as INVALID_ARGUMENT with its message.
    const refused = await legacy.writes.update(create(UpdateProductRequestSchema, { ...request, sku }), "grace", signal).then(() => undefined, (e: unknown) => e);
    expect(refused).toBeInstanceOf(InvalidArgumentError);
    expect(refused).toMatchObject({ field: "sku" });
    expect([legacy.calls.oldShop.length, legacy.calls.catalog.length]).toEqual([0, 0]);
  });

  it("discard the refused writes of a product at the catalog, and answer as it did", async () => {
    const { writes, calls } = writesWith({ mode: "new" });
    const answer = await writes.discard(create(DiscardRefusedWritesRequestSchema, { sku: "MW-MUG-001" }), "grace", signal);
    expect(answer).toMatchObject({ discarded: 2, resynced: true, product: { sku: "MW-MUG-001", name: "Mug, as the old shop holds it" } });
    expect(calls.discarded).toEqual(["MW-MUG-001"]);
  });

  it.each(["", ".", "MW\u0007MUG"])("refuse discarding for the SKU %j as INVALID_ARGUMENT naming sku, before the catalog is asked", async (sku) => {
    const { writes, calls } = writesWith({ mode: "new" });
    const refused = await writes.discard(create(DiscardRefusedWritesRequestSchema, { sku }), "grace", signal).then(() => undefined, (e: unknown) => e);
    expect(refused).toBeInstanceOf(InvalidArgumentError);
    expect(refused).toMatchObject({ field: "sku" });
    expect(calls.discarded).toEqual([]);
  });

  it("pass the catalog's NOT_FOUND on as it is, and a catalog that does not answer as UNAVAILABLE", async () => {
    const unknown = writesWith({ mode: "new", discard: new ConnectError("MW-NONE-000 has no refused write", Code.NotFound) });
    const notFound = await failure(unknown.writes.discard(create(DiscardRefusedWritesRequestSchema, { sku: "MW-NONE-000" }), "grace", signal));
    expect(notFound).toMatchObject({ code: Code.NotFound, rawMessage: "MW-NONE-000 has no refused write" });
    expect(unknown.calls.discarded).toEqual(["MW-NONE-000"]);
    const down = await failure(writesWith({ mode: "new", catalogDown: true }).writes.discard(create(DiscardRefusedWritesRequestSchema, { sku: "MW-MUG-001" }), "grace", signal));
    expect(down?.code).toBe(Code.Unavailable);
  });
});
