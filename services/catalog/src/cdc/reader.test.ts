import { randomBytes } from "node:crypto";
import { createServer, connect as connectTcp, type Socket } from "node:net";
import { resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { createClient, createRouterTransport } from "@connectrpc/connect";
import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { fromBinary } from "@bufbuild/protobuf";
import { createMetrics, openDatabase, type Database } from "#platform";
import { ProductChangedSchema } from "#gen/shop/catalog/v1/catalog_events_pb.js";
import { CatalogService, SyncState } from "#gen/shop/catalog/v1/catalog_service_pb.js";
import { connect, createTestDatabase } from "#tests/support/databases.js";
import { eventually } from "#tests/support/eventually.js";
import { createCatalogStore, type CatalogStore } from "../app/catalog-store.js";
import { tables } from "../db/schema.js";
import { createOldShopSource } from "../testing/old-shop-source.js";
import { formatLsn, parseLsn } from "../domain/lsn.js";
import { createRoutes } from "../rpc/routes.js";
import { confirmApplied } from "./confirm.js";
import { registerCdcGauges } from "./metrics.js";
import { startCdcReader, type CdcReader, type CdcReaderOptions } from "./reader.js";
import { slotLoss } from "./source.js";

/** A logger whose lines the test can read (the reader's warnings say why it reconnects). */
function capturingLogger() {
  const lines: { level: number; msg: string; err?: { message: string } }[] = [];
  const logger = pino({ level: "info" }, { write: (line: string) => void lines.push(JSON.parse(line)) });
  return { logger, lines };
}

function deferred() {
  let resolve!: () => void;
  const promise = new Promise<void>((done) => (resolve = done));
  return { promise, resolve };
}

/** A TCP relay to the source, closed to make the source unreachable (connections cut, none taken). */
async function startRelay(target: URL) {
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    const upstream = connectTcp(Number(target.port), target.hostname);
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on("error", () => {}).on("close", () => (client.destroy(), upstream.destroy(), sockets.delete(socket)));
    }
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
  const port = (server.address() as { port: number }).port;
  const url = new URL(target);
  url.hostname = "127.0.0.1";
  url.port = String(port);
  return {
    url: url.toString(),
    close: () => new Promise<void>((done) => (server.close(() => done()), sockets.forEach((socket) => socket.destroy()))),
  };
}

describe("confirming a position to the source", () => {
  /** pg-logical-replication's acknowledge(lsn) sends lsn + 1; what the source receives is recorded. */
  const sent = async (applied: bigint) => {
    const received: bigint[] = [];
    await confirmApplied({ acknowledge: async (lsn: string) => (received.push(parseLsn(lsn) + 1n), true) }, applied);
    return received.map(formatLsn);
  };

  it("sends exactly the applied position, borrowing from the high word when the low one is 0, and nothing for 0", async () => {
    expect(await sent(parseLsn("16/B374D848"))).toEqual(["16/B374D848"]);
    expect(await sent(parseLsn("1/0"))).toEqual(["1/0"]);
    expect(await sent(parseLsn("0/1"))).toEqual(["0/1"]);
    expect(await sent(0n)).toEqual([]);
  });
});

describe("a slot the catalog can no longer read from", () => {
  it("is one that is gone, on another database, or invalidated (wal_status lost, or an invalidation_reason from PG17)", () => {
    expect(slotLoss("s", undefined, "db")).toBe("slot s no longer exists on the source");
    expect(slotLoss("s", { database: "other" }, "db")).toBe("slot s now belongs to database other, not db");
    expect(slotLoss("s", { database: "db", wal_status: "lost" }, "db")).toBe("slot s was invalidated by the source (wal_status lost)");
    expect(slotLoss("s", { database: "db", wal_status: "lost", invalidation_reason: "wal_removed" }, "db")).toBe("slot s was invalidated by the source (invalidation_reason wal_removed, wal_status lost)");
    expect(slotLoss("s", { database: "db", wal_status: "reserved", invalidation_reason: null }, "db")).toBeUndefined();
    expect(slotLoss("s", { database: "db", wal_status: "unreserved" }, "db")).toBeUndefined();
  });
});

describe("change capture from the old shop's database (pgoutput) into the catalog, against real Postgres", () => {
  const cleanups: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  /** A fresh old shop database and catalog database, and a reader factory over them on a slot of this test's own. */
  async function fixture() {
    const [{ adminUrl, cdcUrl }, catalogUrl] = await Promise.all([createOldShopSource(), createTestDatabase()]);
    const legacy = connect(adminUrl);
    const catalogSql = connect(catalogUrl);
    const database: Database<typeof tables> = await openDatabase({ url: catalogUrl, schemaName: "catalog", tables, migrationsFolder: resolve(import.meta.dirname, "../../migrations"), logger: pino({ level: "silent" }) });
    cleanups.push(() => legacy.end(), () => catalogSql.end(), () => database.close());
    const slot = `t_${randomBytes(5).toString("hex")}`;
    // The slot is permanent: drop it with the test, or it would hold the cluster's WAL.
    cleanups.push(() => legacy`select pg_drop_replication_slot(slot_name) from pg_replication_slots where slot_name = ${slot} and not active`);
    const store: CatalogStore = createCatalogStore(database.db, slot);
    const log = capturingLogger();
    const start = (extra: Partial<CdcReaderOptions> = {}): CdcReader => {
      const reader = startCdcReader({ store, source: { url: cdcUrl, slot, publication: "oldshop_catalog" }, logger: log.logger, backoff: { initialMs: 20, maxMs: 200 }, ...extra });
      cleanups.push(() => reader.stop());
      return reader;
    };
    const catalogRows = () => catalogSql`select sku, name, description, price_minor::int as price, currency from catalog.products order by sku`;
    const position = async () => (await catalogSql`select lsn from catalog.cdc_position where slot = ${slot}`)[0]?.["lsn"] as string | undefined;
    const events = async () =>
      (await catalogSql`select payload from catalog.outbox order by seq`).map((row) => {
        const event = fromBinary(ProductChangedSchema, row["payload"] as Uint8Array);
        return { sku: event.sku, name: event.name, minor: Number(event.price?.minorUnits ?? 0), removed: event.removed };
      });
    const insert = (sku: string, title: string, price: string) => legacy`insert into oldshop.products (sku, title, blurb, price, currency) values (${sku}, ${title}, ${`About ${title}`}, ${price}, 'USD')`;
    const confirmedFlush = async () => (await legacy`select confirmed_flush_lsn::text as lsn from pg_replication_slots where slot_name = ${slot}`)[0]?.["lsn"] as string | undefined;
    /** GetSyncStatus as the wire carries it, over the catalog's routes. */
    const syncStatus = (reader: CdcReader) =>
      createClient(CatalogService, createRouterTransport(createRoutes({ store, syncStatus: () => ({ ...reader.status(), capturedWhileWritesHere: 0 }), writesHere: async () => false, oldShop: { client: createClient(CatalogService, createRouterTransport(() => {})) } }))).getSyncStatus({});
    /** The reader's gauges as /metrics renders them. */
    const gauges = async (reader: CdcReader) => {
      const metrics = createMetrics("catalog");
      registerCdcGauges(metrics, reader);
      return metrics.registry.metrics();
    };
    return { gauges, legacy, catalogSql, cdcUrl, slot, store, start, catalogRows, position, events, insert, log, confirmedFlush, syncStatus };
  }

  it("backfills from the slot's snapshot, then streams inserts, updates and deletes, one catalog transaction per source transaction", async () => {
    const f = await fixture();
    await f.insert("MW-MUG-001", "Mug", "12.99");
    await f.insert("MW-PEN-002", "Pen", "5");
    await f.insert("MW-CAP-003", "Cap", "0.50");
    const reader = f.start();

    await eventually(async () => expect(reader.status().state).toBe("streaming"));
    expect(await f.catalogRows()).toEqual([
      { sku: "MW-CAP-003", name: "Cap", description: "About Cap", price: 50, currency: "USD" },
      { sku: "MW-MUG-001", name: "Mug", description: "About Mug", price: 1299, currency: "USD" },
      { sku: "MW-PEN-002", name: "Pen", description: "About Pen", price: 500, currency: "USD" },
    ]);
    expect(await f.position()).toMatch(/^[0-9A-F]+\/[0-9A-F]+$/);
    const backfilledAt = parseLsn((await f.position())!);
    expect((await f.events()).map((e) => e.sku).sort()).toEqual(["MW-CAP-003", "MW-MUG-001", "MW-PEN-002"]);

    await f.insert("MW-TEE-004", "Tee", "19.00");
    await f.legacy`update oldshop.products set price = '13.49', title = 'Big mug' where sku = 'MW-MUG-001'`;
    await f.legacy`delete from oldshop.products where sku = 'MW-PEN-002'`;
    // One source transaction touching a product twice: its net effect, in one catalog transaction.
    await f.legacy.begin(async (tx) => {
      await tx`insert into oldshop.products (sku, title, price, currency) values ('MW-BAG-005', 'Bag', '30.00', 'EUR')`;
      await tx`update oldshop.products set price = '29.95' where sku = 'MW-BAG-005'`;
    });

    await eventually(async () =>
      expect(await f.catalogRows()).toEqual([
        { sku: "MW-BAG-005", name: "Bag", description: "", price: 2995, currency: "EUR" },
        { sku: "MW-CAP-003", name: "Cap", description: "About Cap", price: 50, currency: "USD" },
        { sku: "MW-MUG-001", name: "Big mug", description: "About Mug", price: 1349, currency: "USD" },
        { sku: "MW-TEE-004", name: "Tee", description: "About Tee", price: 1900, currency: "USD" },
      ]),
    );
    expect((await f.events()).slice(3)).toEqual([
      { sku: "MW-TEE-004", name: "Tee", minor: 1900, removed: false },
      { sku: "MW-MUG-001", name: "Big mug", minor: 1349, removed: false },
      { sku: "MW-PEN-002", name: "", minor: 0, removed: true },
      { sku: "MW-BAG-005", name: "Bag", minor: 2995, removed: false },
    ]);
    const status = reader.status();
    expect(status.appliedChanges).toBe(4);
    // The stored position moved on with the transactions; the reported one may be further
    // still, at a keepalive's WAL end (other databases' writes), which holds nothing for the catalog.
    const stored = parseLsn((await f.position())!);
    expect(stored).toBeGreaterThan(backfilledAt);
    expect(status.appliedLsn).toBeGreaterThanOrEqual(stored);
  });

  it("after a crash between commit and acknowledgement, a new reader applies nothing twice and applies what changed while it was down", async () => {
    const f = await fixture();
    let appliedOnce!: () => void;
    const firstApplied = new Promise<void>((resolve) => (appliedOnce = resolve));
    // The first reader commits and then never acknowledges, as if killed right after its commit.
    const crashing = f.start({ onApplied: () => (appliedOnce(), new Promise<void>(() => {})) });
    await eventually(async () => expect(crashing.status().state).toBe("streaming"));
    await f.insert("MW-ONE", "One", "1.00");
    await firstApplied;
    const committed = await f.position();
    // The source has not confirmed it: only the position committed with the rows keeps the next reader from applying it again.
    const [slot] = await f.legacy`select confirmed_flush_lsn::text as confirmed, ${committed!}::pg_lsn > confirmed_flush_lsn as behind from pg_replication_slots where slot_name = ${f.slot}`;
    expect(slot?.["behind"]).toBe(true);
    await crashing.stop();

    await f.insert("MW-TWO", "Two", "2.00");
    const restarted = f.start();
    await eventually(async () => expect((await f.catalogRows()).map((r) => r["sku"])).toEqual(["MW-ONE", "MW-TWO"]));
    expect((await f.events()).map((e) => e.sku)).toEqual(["MW-ONE", "MW-TWO"]);
    expect(restarted.status().appliedChanges).toBe(1);
    // A transaction at or below the stored position, delivered again, changes nothing.
    const stored = await f.store.readPosition();
    const again = await f.store.applyTransaction({ endLsn: stored!.lsn, truncated: true, changes: new Map() });
    expect(again).toEqual({ applied: 0, skipped: true, held: 0 });
    expect((await f.catalogRows()).map((r) => r["sku"])).toEqual(["MW-ONE", "MW-TWO"]);
    // Acknowledged now: the slot no longer holds either.
    await eventually(async () => {
      const [after] = await f.legacy`select ${(await f.position())!}::pg_lsn <= confirmed_flush_lsn as confirmed from pg_replication_slots where slot_name = ${f.slot}`;
      expect(after?.["confirmed"]).toBe(true);
    });
  });

  it("keeps the stored description when an update leaves a TOASTed blurb unchanged (pgoutput sends no value for it)", async () => {
    const f = await fixture();
    const reader = f.start();
    await eventually(async () => expect(reader.status().state).toBe("streaming"));
    // Incompressible and past the TOAST threshold: stored out of line, so an update of the price alone omits it.
    const blurb = randomBytes(3000).toString("base64");
    await f.legacy`insert into oldshop.products (sku, title, blurb, price, currency) values ('MW-LONG', 'Long', ${blurb}, '1.00', 'USD')`;
    await eventually(async () => expect((await f.catalogRows()).map((r) => r["price"])).toEqual([100]));
    await f.legacy`update oldshop.products set price = '2.00' where sku = 'MW-LONG'`;
    await eventually(async () => expect(await f.catalogRows()).toEqual([{ sku: "MW-LONG", name: "Long", description: blurb, price: 200, currency: "USD" }]));
  });

  it("reconnects with backoff when the source drops it, and loses nothing written in between", async () => {
    const f = await fixture();
    const reader = f.start();
    await eventually(async () => expect(reader.status().state).toBe("streaming"));
    await f.legacy`select pg_terminate_backend(active_pid) from pg_replication_slots where slot_name = ${f.slot}`;
    await f.insert("MW-LATE", "Late", "7.25");
    await eventually(async () => expect(await f.catalogRows()).toEqual([{ sku: "MW-LATE", name: "Late", description: "About Late", price: 725, currency: "USD" }]));
    expect(f.log.lines.some((line) => line.msg === "change capture disconnected; reconnecting")).toBe(true);
    expect(reader.status().state).toBe("streaming");
  });

  it("drops a slot left by a backfill that never committed its position, and backfills again", async () => {
    const f = await fixture();
    await f.legacy`select pg_create_logical_replication_slot(${f.slot}, 'pgoutput')`;
    await f.insert("MW-OLD", "Old", "3.00");
    const reader = f.start();
    await eventually(async () => expect(reader.status().state).toBe("streaming"));
    expect(await f.catalogRows()).toEqual([{ sku: "MW-OLD", name: "Old", description: "About Old", price: 300, currency: "USD" }]);
    await f.insert("MW-NEW", "New", "4.00");
    await eventually(async () => expect((await f.catalogRows()).map((r) => r["sku"])).toEqual(["MW-NEW", "MW-OLD"]));
  });

  it("never drops a slot of the same name on another database (slot names are the cluster's), and says so", async () => {
    const f = await fixture();
    const other = connect((await createOldShopSource()).adminUrl);
    cleanups.push(() => other.end());
    await other`select pg_create_logical_replication_slot(${f.slot}, 'pgoutput')`;
    cleanups.push(() => other`select pg_drop_replication_slot(${f.slot})`);
    f.start();
    await eventually(async () => expect(f.log.lines.some((line) => line.err?.message.includes(`replication slot ${f.slot} belongs to database`))).toBe(true));
    expect(await other`select 1 as present from pg_replication_slots where slot_name = ${f.slot} and database = current_database()`).toEqual([{ present: 1 }]);
    expect(await f.position()).toBeUndefined();
  });

  it("leaves rows and position unchanged when a catalog transaction fails, and retries it until it commits", async () => {
    const f = await fixture();
    const reader = f.start();
    await eventually(async () => expect(reader.status().state).toBe("streaming"));
    const before = await f.position();
    await f.catalogSql.unsafe(`
      create function catalog.refuse_boom() returns trigger language plpgsql as $$ begin raise exception 'boom refused'; end $$;
      create trigger refuse_boom before insert on catalog.products for each row when (new.sku = 'MW-BOOM') execute function catalog.refuse_boom();
    `);
    await f.legacy.begin(async (tx) => {
      await tx`insert into oldshop.products (sku, title, price, currency) values ('MW-FINE', 'Fine', '1.00', 'USD')`;
      await tx`insert into oldshop.products (sku, title, price, currency) values ('MW-BOOM', 'Boom', '2.00', 'USD')`;
    });
    await eventually(async () => expect(f.log.lines.filter((line) => line.err?.message.includes("boom refused")).length).toBeGreaterThanOrEqual(2));
    expect(await f.catalogRows()).toEqual([]);
    expect(await f.position()).toBe(before);
    expect(await f.events()).toEqual([]);

    await f.catalogSql`drop trigger refuse_boom on catalog.products`;
    await eventually(async () => expect((await f.catalogRows()).map((r) => r["sku"])).toEqual(["MW-BOOM", "MW-FINE"]));
    expect((await f.events()).map((e) => e.sku)).toEqual(["MW-FINE", "MW-BOOM"]);
    expect(await f.position()).not.toBe(before);
  });

  it("reports lag while a change waits to be applied, and none once it is", async () => {
    const f = await fixture();
    const reader = f.start();
    await eventually(async () => expect(reader.status().state).toBe("streaming"));
    expect(reader.status()).toMatchObject({ lagBytes: 0n, lagMs: 0 });
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    let locked!: () => void;
    const isLocked = new Promise<void>((resolve) => (locked = resolve));
    // The apply waits on the position row this transaction holds.
    const holding = f.catalogSql.begin(async (tx) => {
      await tx`select lsn from catalog.cdc_position for update`;
      locked();
      await held;
    });
    await isLocked;
    await f.insert("MW-SLOW", "Slow", "9.99");
    await eventually(async () => {
      const status = reader.status();
      expect(status.lagBytes).toBeGreaterThan(0n);
      expect(status.lagMs).toBeGreaterThan(100);
    });
    release();
    await holding;
    await eventually(async () => expect(reader.status()).toMatchObject({ lagBytes: 0n, lagMs: 0 }));
    expect((await f.catalogRows()).map((r) => r["sku"])).toEqual(["MW-SLOW"]);
  });

  it("halts at a change it cannot map (a negative price), applies nothing after it, and reports why (HALTED with halted_reason, an error logged)", async () => {
    const f = await fixture();
    const reader = f.start();
    await eventually(async () => expect(reader.status().state).toBe("streaming"));
    const before = await f.position();
    await f.insert("MW-NEG", "Negative", "-1.00");
    await f.insert("MW-GOOD", "Good", "1.00");
    await eventually(async () => expect(reader.status().state).toBe("halted"));
    expect(reader.status().halted).toMatch(/^a source change cannot be mapped \(.*"MW-NEG": price must be a non-negative decimal.*\); the catalog applies nothing more until/);
    expect(await f.syncStatus(reader)).toMatchObject({ state: SyncState.HALTED, haltedReason: reader.status().halted });
    expect(f.log.lines.some((line) => line.level >= 50 && line.msg.startsWith("change capture HALTED: a source change cannot be mapped"))).toBe(true);
    expect(await f.catalogRows()).toEqual([]);
    expect(await f.position()).toBe(before);
  });

  it("confirms exactly the applied commit's end, so the transaction committed right after it is delivered again after a reconnect", async () => {
    const f = await fixture();
    const first = f.start();
    await eventually(async () => expect(first.status().state).toBe("streaming"));
    // The second product the catalog gets is refused: whichever source transaction commits second is not applied, nor confirmed.
    await f.catalogSql.unsafe(`
      create function catalog.refuse_second() returns trigger language plpgsql as $$ begin if exists (select 1 from catalog.products) then raise exception 'second refused'; end if; return new; end $$;
      create trigger refuse_second before insert on catalog.products for each row execute function catalog.refuse_second();
    `);
    // Both write before either commits, and commit back to back: the second's commit record starts where the first's ends.
    const gates = [deferred(), deferred()];
    const written = [deferred(), deferred()];
    const transactions = ["MW-FIRST", "MW-SECOND"].map((sku, i) =>
      f.legacy.begin(async (tx) => {
        await tx`insert into oldshop.products (sku, title, price, currency) values (${sku}, ${sku}, '1.00', 'USD')`;
        written[i]!.resolve();
        await gates[i]!.promise;
      }),
    );
    await Promise.all(written.map((w) => w.promise));
    gates[0]!.resolve();
    await transactions[0];
    gates[1]!.resolve();
    await transactions[1];

    await eventually(async () => expect(f.log.lines.filter((line) => line.err?.message.includes("second refused")).length).toBeGreaterThanOrEqual(2));
    expect((await f.catalogRows()).map((r) => r["sku"])).toEqual(["MW-FIRST"]);
    // The slot is confirmed at the first commit's end LSN, the catalog's stored position: not a byte past it.
    const applied = await f.position();
    await eventually(async () => expect(await f.confirmedFlush()).toBe(applied));
    await first.stop();

    await f.catalogSql`drop trigger refuse_second on catalog.products`;
    const next = f.start();
    await eventually(async () => expect((await f.catalogRows()).map((r) => r["sku"])).toEqual(["MW-FIRST", "MW-SECOND"]));
    expect(next.status().appliedChanges).toBe(1);
  });

  it("halts, saying why, when the source dropped its slot while it was stopped, and never creates the slot again over its stored position", async () => {
    const f = await fixture();
    await f.insert("MW-KEPT", "Kept", "1.00");
    const first = f.start();
    await eventually(async () => expect(first.status().state).toBe("streaming"));
    await first.stop();
    const stored = await f.position();
    // As the old shop's admin, once the stopped reader's walsender has let go of it.
    await eventually(async () => expect(await f.legacy`select pg_drop_replication_slot(slot_name) from pg_replication_slots where slot_name = ${f.slot} and not active`).toHaveLength(1));
    await f.insert("MW-GONE", "Gone", "2.00");

    const reader = f.start();
    await eventually(async () => expect(reader.status().state).toBe("halted"));
    const reason = `slot ${f.slot} no longer exists on the source: its changes since ${stored} are gone; re-backfill: delete from catalog.cdc_position where slot = '${f.slot}' and restart the catalog`;
    expect(reader.status().halted).toContain(reason);
    expect(await f.syncStatus(reader)).toMatchObject({ state: SyncState.HALTED, haltedReason: reader.status().halted, appliedLsn: stored });
    expect(f.log.lines.some((line) => line.level >= 50 && line.msg === `change capture HALTED: ${reader.status().halted}`)).toBe(true);
    expect(await f.gauges(reader)).toMatch(/^catalog_cdc_halted\{service="catalog"\} 1$/m);
    // Halted stays halted: no retries, no new slot, no backfill over the stored position.
    const attempts = f.log.lines.length;
    await sleep(500);
    expect(f.log.lines.length).toBe(attempts);
    expect(reader.status().state).toBe("halted");
    expect(await f.legacy`select slot_name from pg_replication_slots where slot_name = ${f.slot}`).toEqual([]);
    expect(await f.position()).toBe(stored);
    expect((await f.catalogRows()).map((r) => r["sku"])).toEqual(["MW-KEPT"]);
  });

  it("reports lag growing from when an unreachable source was last heard from, the bytes as last known, and keeps retrying", async () => {
    const f = await fixture();
    const relay = await startRelay(new URL(f.cdcUrl));
    const reader = f.start({ source: { url: relay.url, slot: f.slot, publication: "oldshop_catalog" } });
    await eventually(async () => expect(reader.status().state).toBe("streaming"));
    expect(reader.status()).toMatchObject({ lagMs: 0, lagBytes: 0n });
    expect(await f.gauges(reader)).toMatch(/^catalog_cdc_halted\{service="catalog"\} 0$/m);
    await relay.close();
    await eventually(async () => expect(reader.status().state).toBe("disconnected"));
    const early = reader.status().lagMs;
    await eventually(async () => expect(reader.status().lagMs).toBeGreaterThan(early + 500));
    expect(reader.status()).toMatchObject({ state: "disconnected", lagBytes: 0n, halted: undefined });
    expect(Number((await f.syncStatus(reader)).lagMs)).toBeGreaterThan(early + 500);
    const lagSeconds = /^catalog_cdc_lag_seconds\{service="catalog"\} (\S+)$/m.exec(await f.gauges(reader))?.[1];
    expect(Number(lagSeconds)).toBeGreaterThan((early + 500) / 1000);
    expect(f.log.lines.filter((line) => line.msg === "change capture disconnected; reconnecting").length).toBeGreaterThanOrEqual(2);
  });
});
