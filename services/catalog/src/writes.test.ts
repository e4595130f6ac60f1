import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import type { ServiceServer } from "#platform";
import { connectBus, type BusConnection } from "#platform/messaging/connection.js";
import { openRouteTable, type RouteMode, type RouteTable } from "#platform/strangler/route-table.js";
import { CatalogService } from "#gen/shop/catalog/v1/catalog_service_pb.js";
import { CATALOG_WRITE_ROUTE, catalogRoutes } from "#shop/catalog-router.js";
import { connect, createServiceDatabases } from "#tests/support/databases.js";
import { eventually } from "#tests/support/eventually.js";
import { meshTransport, testPki } from "#tests/support/mesh-clients.js";
import { startTestNats, type TestNats } from "#tests/support/nats.js";
import { startTestOldShop, testRuntime } from "#tests/support/services.js";
import { silentLogger } from "#tests/support/silent-logger.js";
import { startTcpFaultProxy, type TcpFaultProxy } from "#tools/chaos/tcp-fault-proxy.js";
import type { OldShop } from "../../../legacy/oldshop/src/server.js";
import { randomUUID } from "node:crypto";
import { create, fromBinary } from "@bufbuild/protobuf";
import { drizzle } from "drizzle-orm/postgres-js";
import { ProductChangeOrigin, ProductChangedSchema } from "#gen/shop/catalog/v1/catalog_events_pb.js";
import { toMoney } from "#shop/money.js";
import { createCatalogStore } from "./app/catalog-store.js";
import { syncBackHandler } from "./app/sync-back.js";
import { tables } from "./db/schema.js";
import { build } from "./build.js";

const write = (sku: string, name: string, minorUnits: bigint, description = `About ${name}.`) => ({ sku, name, description, price: { currencyCode: "USD", minorUnits } });

const failureOf = async (call: Promise<unknown>) => {
  try {
    await call;
  } catch (err) {
    return ConnectError.from(err);
  }
  throw new Error("the call succeeded");
};

describe("catalog writes moved by the route table: UpdateProduct, the sync back to the old shop, its echoes matched by content", () => {
  let nats: TestNats;
  let server: ServiceServer;
  let oldShop: OldShop;
  let legacy: ReturnType<typeof connect>;
  let catalogDb: ReturnType<typeof connect>;
  let slot: string;
  let catalogRoleUrl: string;
  let asConsole: Client<typeof CatalogService>;
  let consoleBus: BusConnection;
  let routes: RouteTable;
  let pki: Awaited<ReturnType<typeof testPki>>;
  /** Between the catalog and NATS, to slow its view of the route table. */
  let natsLink: TcpFaultProxy;

  /** Moves the write route as the console does, and waits until the catalog acts on it. */
  const move = async (mode: RouteMode) => {
    // Retried: a bucket just created may not take a write yet on a loaded host (no responders).
    await eventually(() => routes.set(CATALOG_WRITE_ROUTE, { mode, changedBy: "ada (operator)", reason: "test" }));
    const probe = write("MW-PROBE-000", "Probe", 1n);
    await eventually(async () => {
      const refused = await asConsole.updateProduct(probe).then(() => false, (err: unknown) => ConnectError.from(err).code === Code.FailedPrecondition);
      expect(refused).toBe(mode === "legacy");
    });
  };
  const legacyRow = async (sku: string) => (await legacy`select title, blurb, price, currency from oldshop.products where sku = ${sku}`)[0];
  const catalogRow = async (sku: string) => (await catalogDb`select name, description, price_minor::int as price, currency, source_lsn from catalog.products where sku = ${sku}`)[0];
  const status = () => asConsole.getSyncStatus({});

  beforeAll(async () => {
    pki = await testPki();
    const [databases, started, shop] = await Promise.all([createServiceDatabases(), startTestNats(), startTestOldShop(pki)]);
    nats = started;
    natsLink = await startTcpFaultProxy();
    const catalogNats = new URL(nats.urlFor("catalog"));
    natsLink.setTarget(Number(catalogNats.port));
    catalogNats.port = new URL(natsLink.url).port;
    oldShop = shop.oldShop;
    slot = shop.database.slot;
    legacy = connect(shop.database.adminUrl);
    catalogDb = connect(databases.adminUrl);
    catalogRoleUrl = databases.urls.catalog;
    server = await build({
      ...testRuntime(pki, "catalog", databases.urls.catalog, catalogNats.href),
      oldshopUrl: oldShop.url,
      cdcSourceUrl: shop.database.cdcUrl,
      cdcSlot: slot,
      cdcBackoff: { initialMs: 20, maxMs: 200 },
      syncBackBackoffMs: [50, 200],
    });
    asConsole = createClient(CatalogService, meshTransport(server.url, pki, { as: "console", peer: "catalog" }));
    consoleBus = connectBus({ url: nats.urlFor("console"), name: "writes-console", logger: silentLogger });
    routes = openRouteTable({ bus: consoleBus, routes: catalogRoutes, logger: silentLogger });
    await eventually(async () => expect(Number((await status()).products)).toBeGreaterThan(0));
  });
  afterAll(async () => {
    routes?.close();
    await consoleBus?.close();
    await server?.close();
    await natsLink?.close();
    await oldShop?.close();
    if (legacy) {
      // The slot is permanent: it would hold the cluster's WAL after the suite.
      await legacy`select pg_drop_replication_slot(slot_name) from pg_replication_slots where slot_name = ${slot} and not active`;
      await legacy.end();
    }
    await catalogDb?.end();
    await nats?.stop();
  });

  it("refuses a write with FAILED_PRECONDITION while writes stay with the old shop, and bad input first, naming the field", async () => {
    const refused = await failureOf(asConsole.updateProduct(write("MW-MUG-001", "Mug", 1500n)));
    expect([refused.code, refused.rawMessage]).toEqual([Code.FailedPrecondition, expect.stringContaining("catalog writes are routed to the old shop")]);
    const cases: [ReturnType<typeof write> | Omit<ReturnType<typeof write>, "price">, string][] = [
      [write("", "Mug", 1n), "sku: is required"],
      [write("MW-\nMUG", "Mug", 1n), "sku: must not contain control characters"],
      [write("x".repeat(129), "Mug", 1n), "sku: must be at most 128 characters"],
      [write(".", "Mug", 1n), "sku: must not be only dots"],
      [write("..", "Mug", 1n), "sku: must not be only dots"],
      [write("MW-MUG-001", " ", 1n), "name: is required"],
      [write("MW-MUG-001", "n".repeat(201), 1n), "name: must be at most 200 characters"],
      [write("MW-MUG-001", "Mug", 1n, "d".repeat(2001)), "description: must be at most 2000 characters"],
      [{ sku: "MW-MUG-001", name: "Mug", description: "" }, "price: is required"],
      [{ ...write("MW-MUG-001", "Mug", 1n), price: { currencyCode: "usd", minorUnits: 1n } }, "price.currency_code: must be 3 upper-case letters"],
      [write("MW-MUG-001", "Mug", -1n), "price.minor_units: must be from 0 to below 10^12"],
      [write("MW-MUG-001", "Mug", 10n ** 12n), "price.minor_units: must be from 0 to below 10^12"],
    ];
    for (const [request, message] of cases) {
      const err = await failureOf(asConsole.updateProduct(request));
      expect.soft([err.code, err.rawMessage]).toEqual([Code.InvalidArgument, message]);
    }
    expect(await legacyRow("MW-MUG-001")).toMatchObject({ price: "12.99" });
  });

  /** Holds the change capture (its position row locked) until the returned release is called. */
  const holdCapture = async () => {
    let release!: () => void;
    let locked!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    const isLocked = new Promise<void>((resolve) => (locked = resolve));
    const holding = catalogDb.begin(async (tx) => {
      await tx`select lsn from catalog.cdc_position for update`;
      locked();
      await released;
    });
    await isLocked;
    return async () => {
      release();
      await holding;
    };
  };
  const syncBackRows = (sku: string) => catalogDb`select name, price_minor::int as price, state from catalog.sync_back where sku = ${sku} order by seq`;
  const legacyUpdatedAt = async (sku: string) => (await legacy`select updated_at from oldshop.products where sku = ${sku}`)[0]!.updated_at as Date;
  const outboxEvents = async (sku: string) => Number((await catalogDb`select count(*)::int as n from catalog.outbox where aggregate_id = ${sku}`)[0]!.n);
  const settled = () => eventually(async () => expect((await status()).syncBackPending).toBe(0n), 30_000);

  it("under new: a write is put in the old shop and stays pending, marked sent, until the capture sees its echo, which is not applied", async () => {
    await move("new");
    await settled();
    const heldBefore = (await status()).capturedWhileWritesHere;
    const resume = await holdCapture();
    const { product } = await asConsole.updateProduct(write("MW-MUG-001", "Mug, second edition", 1500n));
    expect([product?.name, product?.price?.minorUnits]).toEqual(["Mug, second edition", 1500n]);
    expect(await catalogRow("MW-MUG-001")).toEqual({ name: "Mug, second edition", description: "About Mug, second edition.", price: 1500, currency: "USD", source_lsn: "" });
    await eventually(async () => expect(await legacyRow("MW-MUG-001")).toEqual({ title: "Mug, second edition", blurb: "About Mug, second edition.", price: "15.00", currency: "USD" }));
    // In the old shop, but its echo not seen yet: still pending.
    await eventually(async () => expect(await syncBackRows("MW-MUG-001")).toEqual([{ name: "Mug, second edition", price: 1500, state: "sent" }]));
    expect((await status()).syncBackPending).toBe(1n);
    const positionBefore = (await status()).appliedLsn;
    await resume();
    await settled();
    expect(await syncBackRows("MW-MUG-001")).toEqual([]);
    const after = await status();
    expect(after.appliedLsn).not.toBe(positionBefore);
    // The echo moved the position, not the product, and is no held change.
    expect(await catalogRow("MW-MUG-001")).toMatchObject({ name: "Mug, second edition", source_lsn: "" });
    expect(after.capturedWhileWritesHere).toBe(heldBefore);
  });

  it("under new: the same values again are a write of their own, put to the old shop again", async () => {
    await settled();
    const [events, putAt] = [await outboxEvents("MW-MUG-001"), await legacyUpdatedAt("MW-MUG-001")];
    const resume = await holdCapture();
    const { product } = await asConsole.updateProduct(write("MW-MUG-001", "Mug, second edition", 1500n));
    expect(product?.name).toBe("Mug, second edition");
    expect(await outboxEvents("MW-MUG-001")).toBe(events + 1);
    expect(await syncBackRows("MW-MUG-001")).toEqual([{ name: "Mug, second edition", price: 1500, state: expect.stringMatching(/^(pending|sent)$/) }]);
    await eventually(async () => expect((await legacyUpdatedAt("MW-MUG-001")).getTime()).toBeGreaterThan(putAt.getTime()));
    await resume();
    await settled();
  });

  it("under new: a legacy change of a SKU with no write pending here is applied, whatever the route says", async () => {
    await settled();
    const held = (await status()).capturedWhileWritesHere;
    // A gateway whose route table lags still writing to the old shop, or a move back not yet seen.
    await legacy`update oldshop.products set title = 'Hoodie, legacy edition' where sku = 'MW-HOD-004'`;
    await eventually(async () => expect(await catalogRow("MW-HOD-004")).toMatchObject({ name: "Hoodie, legacy edition" }));
    expect((await status()).capturedWhileWritesHere).toBe(held);
  });

  it("under new: a change straight into the old shop meeting a pending write to its SKU is held and counted; the write here ends on both sides", async () => {
    await settled();
    const held = (await status()).capturedWhileWritesHere;
    // Captured only after the write here is taken: the capture held up across both.
    const resume = await holdCapture();
    await legacy`update oldshop.products set price = '1.00' where sku = 'MW-TEE-002'`;
    await asConsole.updateProduct(write("MW-TEE-002", "Tee, catalog edition", 2600n));
    await eventually(async () => expect(await legacyRow("MW-TEE-002")).toMatchObject({ title: "Tee, catalog edition", price: "26.00" }));
    await resume();
    await settled();
    expect((await status()).capturedWhileWritesHere).toBe(held + 1n);
    expect(await catalogRow("MW-TEE-002")).toMatchObject({ name: "Tee, catalog edition", price: 2600 });
    expect(await legacyRow("MW-TEE-002")).toEqual({ title: "Tee, catalog edition", blurb: "About Tee, catalog edition.", price: "26.00", currency: "USD" });
  });

  it("a burst of writes to one SKU ends with both sides at the last one, every echo seen back and none held", async () => {
    await settled();
    const held = (await status()).capturedWhileWritesHere;
    const prices = Array.from({ length: 20 }, (_, i) => BigInt(500 + i));
    const answers = await Promise.all(prices.map((price) => asConsole.updateProduct(write("MW-STK-003", `Stickers at ${price}`, price))));
    expect(answers).toHaveLength(20);
    const last = await catalogRow("MW-STK-003");
    await settled();
    expect((await status()).capturedWhileWritesHere).toBe(held);
    expect(await catalogRow("MW-STK-003")).toEqual(last);
    const decimal = `${Math.floor(last!.price / 100)}.${String(last!.price % 100).padStart(2, "0")}`;
    expect(await legacyRow("MW-STK-003")).toEqual({ title: last!.name, blurb: last!.description, price: decimal, currency: "USD" });
  });

  it("fences by the route as the bucket has it the moment it answers: refused at once after a move back, taken at once after a move here", async () => {
    await settled();
    const set = (mode: RouteMode) => routes.set(CATALOG_WRITE_ROUTE, { mode, changedBy: "ada (operator)", reason: "fence" });
    // The catalog's link to NATS 100 ms late each way: its watch delivers a move well after the
    // mover has its answer. No waiting for it: a gateway that has seen a move may call at once.
    natsLink.setMode({ kind: "slow", delayMs: 100 });
    try {
      for (const mode of ["legacy", "new", "legacy", "new"] as const) {
        await set(mode);
        const taken = await asConsole.updateProduct(write("MW-FENCE-001", `Fence ${mode}`, 100n)).then(() => true, (err: unknown) => (ConnectError.from(err).code === Code.FailedPrecondition ? false : Promise.reject(err)));
        expect([mode, taken]).toEqual([mode, mode === "new"]);
      }
    } finally {
      natsLink.setMode({ kind: "pass" });
    }
    await settled();
  });

  it("back to legacy: UpdateProduct is refused again and a write in the old shop reaches the catalog", async () => {
    await move("legacy");
    await legacy`update oldshop.products set title = 'Mug, third edition', price = '16.50' where sku = 'MW-MUG-001'`;
    await eventually(async () => expect(await catalogRow("MW-MUG-001")).toMatchObject({ name: "Mug, third edition", price: 1650 }));
    expect((await status()).syncBackPending).toBe(0n);
  });

  it("the sync back keeps a write the old shop refuses (400) or whose path it does not know (404) with its refusal, marks one it took sent, and puts no captured change", async () => {
    const refusals: Record<string, ConnectError> = {
      "MW-REFUSED": new ConnectError("title: title must be 1 to 200 characters (the old shop)", Code.InvalidArgument),
      "MW-GONE": new ConnectError("no such product (the old shop)", Code.NotFound),
    };
    const put: string[] = [];
    const handler = syncBackHandler({ putProduct: async (product) => (put.push(product.sku), refusals[product.sku] ? Promise.reject(refusals[product.sku]) : product) }, silentLogger);
    const client = connect(catalogRoleUrl);
    const db = drizzle(client);
    try {
      const event = (sku: string, origin: ProductChangeOrigin) => create(ProductChangedSchema, { sku, name: sku, price: toMoney("USD", 100), origin });
      const [refused, gone, taken, captured] = [randomUUID(), randomUUID(), randomUUID(), randomUUID()];
      await catalogDb`insert into catalog.sync_back (event_id, sku, name, description, price_minor, currency)
        values (${refused}, 'MW-REFUSED', 'MW-REFUSED', '', 100, 'USD'), (${gone}, 'MW-GONE', 'MW-GONE', '', 100, 'USD'), (${taken}, 'MW-TAKEN', 'MW-TAKEN', '', 100, 'USD')`;
      const envelope = (id: string) => ({ id, type: ProductChangedSchema.typeName, source: "catalog", time: new Date() });
      await db.transaction(async (tx) => {
        await handler.handle(tx, event("MW-REFUSED", ProductChangeOrigin.WRITTEN), envelope(refused));
        await handler.handle(tx, event("MW-GONE", ProductChangeOrigin.WRITTEN), envelope(gone));
        await handler.handle(tx, event("MW-TAKEN", ProductChangeOrigin.WRITTEN), envelope(taken));
        await handler.handle(tx, event("MW-CAPTURED", ProductChangeOrigin.CAPTURED), envelope(captured));
      });
      expect(put).toEqual(["MW-REFUSED", "MW-GONE", "MW-TAKEN"]);
      expect(await catalogDb`select sku, state, refusal from catalog.sync_back order by seq`).toEqual([
        { sku: "MW-REFUSED", state: "refused", refusal: refusals["MW-REFUSED"]!.rawMessage },
        { sku: "MW-GONE", state: "refused", refusal: refusals["MW-GONE"]!.rawMessage },
        // Taken, but pending until the capture sees its echo.
        { sku: "MW-TAKEN", state: "sent", refusal: null },
      ]);
      expect((await status()).syncBackPending).toBe(3n);
      // An old shop that is away fails the handler, so the consumer redelivers it: the row stays.
      const away = syncBackHandler({ putProduct: () => Promise.reject(new ConnectError("the old shop is unreachable", Code.Unavailable)) }, silentLogger);
      await expect(db.transaction((tx) => away.handle(tx, event("MW-REFUSED", ProductChangeOrigin.WRITTEN), envelope(refused)))).rejects.toMatchObject({ code: Code.Unavailable });
      expect((await status()).syncBackPending).toBe(3n);
    } finally {
      // Rows of no write taken here: the next tests start settled.
      await catalogDb`delete from catalog.sync_back where sku in ('MW-REFUSED', 'MW-GONE', 'MW-TAKEN')`;
      await client.end();
    }
  });

  const REFUSAL = "title: title must be at most 200 characters (the old shop)";
  /**
   * A write taken here that the old shop refused for good, as UpdateProduct and the sync back
   * leave it (the product with the write's values, its row marked refused): the old shop takes
   * whatever the catalog does, so it cannot be made to refuse one (the marking is tested above).
   */
  const refusedWrite = async (sku: string, name: string) => {
    await catalogDb`insert into catalog.products (sku, name, description, price_minor, currency, source_lsn) values (${sku}, ${name}, '', 100, 'USD', '')
      on conflict (sku) do update set name = excluded.name, description = excluded.description, price_minor = excluded.price_minor, source_lsn = excluded.source_lsn`;
    await catalogDb`insert into catalog.sync_back (event_id, sku, name, description, price_minor, currency, state, refusal) values (${randomUUID()}, ${sku}, ${name}, '', 100, 'USD', 'refused', ${REFUSAL})`;
  };
  const lastEvent = async (sku: string) => {
    const [row] = await catalogDb`select payload from catalog.outbox where aggregate_id = ${sku} order by seq desc limit 1`;
    return row && fromBinary(ProductChangedSchema, row["payload"] as Uint8Array);
  };

  it("a refused write is listed by GetSyncStatus and holds its SKU; DiscardRefusedWrites gives it up and takes the product again as the old shop holds it, whose changes the capture applies again", async () => {
    await settled();
    const held = (await status()).capturedWhileWritesHere;
    await refusedWrite("MW-BTL-005", "Bottle, refused edition");
    const listed = await status();
    expect([listed.syncBackPending, listed.syncBackRefused]).toEqual([1n, 1n]);
    expect(listed.refusedWrites.map(({ sku, refusal }) => ({ sku, refusal }))).toEqual([{ sku: "MW-BTL-005", refusal: REFUSAL }]);
    expect(listed.refusedWrites[0]?.writtenTime).toBeDefined();
    // A change in the old shop meanwhile is held: the write here wins while its row stands.
    await legacy`update oldshop.products set title = 'Bottle, legacy edition' where sku = 'MW-BTL-005'`;
    await eventually(async () => expect((await status()).capturedWhileWritesHere).toBe(held + 1n));
    expect(await catalogRow("MW-BTL-005")).toMatchObject({ name: "Bottle, refused edition", price: 100 });

    const answer = await asConsole.discardRefusedWrites({ sku: "MW-BTL-005" });
    const inOldShop = await legacyRow("MW-BTL-005");
    expect(inOldShop).toMatchObject({ title: "Bottle, legacy edition" });
    const resynced = { name: "Bottle, legacy edition", description: inOldShop!.blurb, price: 1899, currency: "USD" };
    expect([answer.discarded, answer.resynced]).toEqual([1, true]);
    expect(answer.product).toMatchObject({ sku: "MW-BTL-005", name: resynced.name, description: resynced.description, price: { currencyCode: "USD", minorUnits: 1899n } });
    expect(inOldShop!.price).toBe("18.99");
    expect(await catalogRow("MW-BTL-005")).toEqual({ ...resynced, source_lsn: "" });
    expect(await lastEvent("MW-BTL-005")).toMatchObject({ name: resynced.name, price: { minorUnits: 1899n }, removed: false, lsn: "", origin: ProductChangeOrigin.RESYNCED });
    const after = await status();
    expect([after.syncBackPending, after.syncBackRefused, after.refusedWrites]).toEqual([0n, 0n, []]);

    const again = await failureOf(asConsole.discardRefusedWrites({ sku: "MW-BTL-005" }));
    expect([again.code, again.rawMessage]).toEqual([Code.NotFound, "sku: MW-BTL-005 has no write the old shop refused"]);
    // No longer held: the old shop's next change is the catalog's.
    await legacy`update oldshop.products set price = '19.50' where sku = 'MW-BTL-005'`;
    await eventually(async () => expect(await catalogRow("MW-BTL-005")).toMatchObject({ name: "Bottle, legacy edition", price: 1950 }));
    expect((await status()).capturedWhileWritesHere).toBe(held + 1n);
  });

  it("DiscardRefusedWrites of a product the old shop has none of removes it from the catalog", async () => {
    await settled();
    await refusedWrite("MW-NEW-900", "Kite");
    const answer = await asConsole.discardRefusedWrites({ sku: "MW-NEW-900" });
    expect([answer.discarded, answer.resynced, answer.product]).toEqual([1, true, undefined]);
    expect(await catalogRow("MW-NEW-900")).toBeUndefined();
    expect(await lastEvent("MW-NEW-900")).toMatchObject({ removed: true, lsn: "", origin: ProductChangeOrigin.RESYNCED });
    expect((await status()).syncBackPending).toBe(0n);
  });

  it("DiscardRefusedWrites while a later write is on its way gives up the refused one only: the product is not taken again, the later write's echo brings both sides to it", async () => {
    await move("new");
    await settled();
    await refusedWrite("MW-LMP-006", "Lamp, refused edition");
    const resume = await holdCapture();
    await asConsole.updateProduct(write("MW-LMP-006", "Lamp, catalog edition", 9500n));
    await eventually(async () => expect((await syncBackRows("MW-LMP-006")).map(({ state }) => state)).toEqual(["refused", "sent"]));
    const answer = await asConsole.discardRefusedWrites({ sku: "MW-LMP-006" });
    expect([answer.discarded, answer.resynced]).toEqual([1, false]);
    expect(answer.product).toMatchObject({ name: "Lamp, catalog edition", price: { minorUnits: 9500n } });
    expect(await syncBackRows("MW-LMP-006")).toEqual([{ name: "Lamp, catalog edition", price: 9500, state: "sent" }]);
    expect(await lastEvent("MW-LMP-006")).toMatchObject({ name: "Lamp, catalog edition", origin: ProductChangeOrigin.WRITTEN });
    await resume();
    await settled();
    expect(await catalogRow("MW-LMP-006")).toMatchObject({ name: "Lamp, catalog edition", price: 9500 });
    expect(await legacyRow("MW-LMP-006")).toMatchObject({ title: "Lamp, catalog edition", price: "95.00" });
  });

  it("DiscardRefusedWrites takes the operator and console only, and refuses a bad SKU naming the field, giving up nothing", async () => {
    await settled();
    await refusedWrite("MW-DENIED", "Denied");
    const asGateway = createClient(CatalogService, meshTransport(server.url, pki, { as: "gateway", peer: "catalog" }));
    expect((await failureOf(asGateway.discardRefusedWrites({ sku: "MW-DENIED" }))).code).toBe(Code.PermissionDenied);
    for (const [sku, message] of [
      ["", "sku: is required"],
      ["x".repeat(129), "sku: must be at most 128 characters"],
      ["MW\u0000", "sku: must not contain NUL characters"],
      ["MW\u0007BEL", "sku: must not contain control characters"],
      ["..", "sku: must not be only dots"],
    ] as const) {
      const err = await failureOf(asConsole.discardRefusedWrites({ sku }));
      expect.soft([err.code, err.rawMessage]).toEqual([Code.InvalidArgument, message]);
    }
    expect((await status()).syncBackRefused).toBe(1n);
    const asOperator = createClient(CatalogService, meshTransport(server.url, pki, { as: "operator", peer: "catalog" }));
    expect(await asOperator.discardRefusedWrites({ sku: "MW-DENIED" })).toMatchObject({ discarded: 1, resynced: true });
    expect((await status()).syncBackRefused).toBe(0n);
  });

  it("an old shop that is away or does not answer in time, a caller that gave up and a product held too long change nothing: the discard rolls back", async () => {
    await settled();
    await refusedWrite("MW-AWAY", "Away");
    const client = connect(catalogRoleUrl);
    const store = createCatalogStore(drizzle(client, { schema: tables }), slot);
    try {
      const away = () => Promise.reject(new ConnectError("the old shop is unreachable", Code.Unavailable));
      await expect(store.discardRefusedWrites("MW-AWAY", away)).rejects.toMatchObject({ code: Code.Unavailable });
      const silent = (_sku: string, signal: AbortSignal) => new Promise<undefined>((_, reject) => signal.addEventListener("abort", () => reject(signal.reason)));
      const started = Date.now();
      await expect(store.discardRefusedWrites("MW-AWAY", silent)).rejects.toMatchObject({ kind: "unavailable", message: "the old shop did not answer within 1500 ms; nothing was discarded, retry later" });
      expect(Date.now() - started).toBeLessThan(3_000);
      // A caller that gives up while the old shop answers: rolled back, so its retry finds the write still refused.
      const gaveUp = new AbortController();
      const answeredLate = async (sku: string) => (gaveUp.abort(new Error("the caller's deadline")), { sku, name: "Away, resynced", description: "", priceMinor: 100, currency: "USD" });
      await expect(store.discardRefusedWrites("MW-AWAY", answeredLate, gaveUp.signal)).rejects.toThrow("the caller's deadline");
      // The product held by another change of it (its lock, as the capture and UpdateProduct take it) for longer than a discard waits.
      const holder = await client.reserve();
      try {
        await holder`select pg_advisory_lock(hashtextextended(${"catalog.products:MW-AWAY"}, 0))`;
        const present = async (sku: string) => ({ sku, name: "Away, resynced", description: "", priceMinor: 100, currency: "USD" });
        await expect(store.discardRefusedWrites("MW-AWAY", present)).rejects.toMatchObject({ kind: "unavailable", message: "another change of MW-AWAY held it for more than 300 ms; nothing was discarded, retry" });
        await holder`select pg_advisory_unlock(hashtextextended(${"catalog.products:MW-AWAY"}, 0))`;
      } finally {
        holder.release();
      }
      expect(await syncBackRows("MW-AWAY")).toEqual([{ name: "Away", price: 100, state: "refused" }]);
      expect(await catalogRow("MW-AWAY")).toMatchObject({ name: "Away" });
      expect(await lastEvent("MW-AWAY")).toBeUndefined();
    } finally {
      await catalogDb`delete from catalog.sync_back where sku = 'MW-AWAY'`;
      await catalogDb`delete from catalog.products where sku = 'MW-AWAY'`;
      await client.end();
    }
  }, 15_000);
});
