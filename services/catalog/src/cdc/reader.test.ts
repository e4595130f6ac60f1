import { randomBytes } from "node:crypto";
import { resolve } from "node:path";
import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { fromBinary } from "@bufbuild/protobuf";
import { openDatabase, type Database } from "#platform";
import { ProductChangedSchema } from "#gen/shop/catalog/v1/catalog_events_pb.js";
import { connect, createTestDatabase } from "#tests/support/databases.js";
import { eventually } from "#tests/support/eventually.js";
import { createCatalogStore, type CatalogStore } from "../app/catalog-store.js";
import { tables } from "../db/schema.js";
import { createOldShopSource } from "../testing/old-shop-source.js";
import { parseLsn } from "../domain/lsn.js";
import { startCdcReader, type CdcReader, type CdcReaderOptions } from "./reader.js";

/** A logger whose lines the test can read (the reader's warnings say why it reconnects). */
function capturingLogger() {
  const lines: { level: number; msg: string; err?: { message: string } }[] = [];
  const logger = pino({ level: "info" }, { write: (line: string) => void lines.push(JSON.parse(line)) });
  return { logger, lines };
}

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
    return { legacy, catalogSql, slot, store, start, catalogRows, position, events, insert, log };
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

  it("stops at a change it cannot map (a negative price), applies nothing after it, and says why", async () => {
    const f = await fixture();
    const reader = f.start();
    await eventually(async () => expect(reader.status().state).toBe("streaming"));
    const before = await f.position();
    await f.insert("MW-NEG", "Negative", "-1.00");
    await f.insert("MW-GOOD", "Good", "1.00");
    await eventually(async () => expect(reader.status().halted).toContain('"MW-NEG": price must be a non-negative decimal'));
    expect(reader.status().state).toBe("disconnected");
    expect(f.log.lines.some((line) => line.level >= 50 && line.msg.startsWith("change capture STOPPED"))).toBe(true);
    expect(await f.catalogRows()).toEqual([]);
    expect(await f.position()).toBe(before);
  });
});
