import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError, type Client } from "@connectrpc/connect";
import { fromBinary } from "@bufbuild/protobuf";
import { connectBus, type BusConnection, type ServiceServer } from "#platform";
import { eventStream } from "#shop/streams.js";
import { ItemCreatedSchema } from "#gen/shop/catalog/v1/catalog_events_pb.js";
import { CatalogService } from "#gen/shop/catalog/v1/catalog_service_pb.js";
import { connect, createServiceDatabases } from "#tests/support/databases.js";
import { eventually } from "#tests/support/eventually.js";
import { contractClient, testPki } from "#tests/support/mesh-clients.js";
import { startTestNats, type TestNats } from "#tests/support/nats.js";
import { testRuntime } from "#tests/support/services.js";
import { silentLogger } from "#tests/support/silent-logger.js";
import { build } from "./build.js";

const stream = eventStream("catalog");
const subject = "shop.catalog.v1.ItemCreated";

describe("catalog against real Postgres and NATS: CreateItem → outbox → relay → JetStream → its own consumer → inbox", () => {
  let nats: TestNats;
  let server: ServiceServer;
  let sql: ReturnType<typeof connect>;
  /** The suite's own NATS user: reads the stream, and delivers a copy as a redelivery would. */
  let bus: BusConnection;
  let client: Client<typeof CatalogService>;

  beforeAll(async () => {
    const [databases, started, pki] = await Promise.all([createServiceDatabases(), startTestNats(), testPki()]);
    nats = started;
    // Its own certificate, Postgres role and NATS user, as `npm start` gives them.
    server = await build(testRuntime(pki, "catalog", databases.urls.catalog, nats.urlFor("catalog")));
    client = contractClient(CatalogService, server.url, pki, { peer: "catalog" });
    sql = connect(databases.adminUrl);
    bus = connectBus({ url: nats.url, name: "catalog-test", logger: silentLogger });
  });
  afterAll(async () => {
    await bus?.close();
    await server?.close();
    await sql?.end();
    await nats?.stop();
  });

  /** The `n` a `select count(*)::int as n` answers. */
  const countOf = async (query: PromiseLike<readonly Record<string, unknown>[]>) => Number((await query)[0]?.["n"]);

  it("writes the item and its event, relays the event through JetStream, and records it in the inbox exactly once", async () => {
    const { item } = await client.createItem({ requestId: "req-1", description: "first" });
    expect(item).toMatchObject({ requestId: "req-1", description: "first" });
    expect(await sql`select id from catalog.items where request_id = 'req-1'`).toEqual([{ id: item!.id }]);
    const events = await sql`select id, event_type from catalog.outbox where aggregate_id = ${item!.id}`;
    expect(events.map((e) => e["event_type"])).toEqual([subject]);
    const eventId = String(events[0]!["id"]);

    // The relay published it: the stream holds it under its event id.
    const { js, jsm } = await bus.ready;
    const stored = await eventually(async () => {
      const message = await jsm.streams.getMessage(stream.name, { last_by_subj: subject });
      expect(message?.header.get("ce-id")).toBe(eventId);
      return message!;
    });
    expect(fromBinary(ItemCreatedSchema, stored.data)).toMatchObject({ itemId: item!.id, description: "first" });

    // Its own durable consumer applied it: one inbox row and one receipt.
    await eventually(async () => expect(await sql`select item_id from catalog.receipts where event_id = ${eventId}`).toEqual([{ item_id: item!.id }]));
    expect(await sql`select consumer from catalog.inbox where event_id = ${eventId}`).toEqual([{ consumer: "catalog" }]);

    // The same event delivered again (under a new Nats-Msg-Id, so JetStream keeps it) is acked and changes nothing.
    const { seq } = await js.publish(subject, stored.data, { headers: stored.header, msgID: `again-${eventId}` });
    await eventually(async () => expect((await jsm.consumers.info(stream.name, "catalog")).ack_floor.stream_seq).toBeGreaterThanOrEqual(seq));
    expect(await countOf(sql`select count(*)::int as n from catalog.inbox where event_id = ${eventId}`)).toBe(1);
    expect(await countOf(sql`select count(*)::int as n from catalog.receipts where event_id = ${eventId}`)).toBe(1);
  });

  it("answers a retried CreateItem with the first item and appends no second event; a reused request_id is ALREADY_EXISTS", async () => {
    const first = await client.createItem({ requestId: "req-2", description: "second" });
    const again = await client.createItem({ requestId: "req-2", description: "second" });
    expect(again.item?.id).toBe(first.item?.id);
    expect(await countOf(sql`select count(*)::int as n from catalog.outbox where aggregate_id = ${first.item!.id}`)).toBe(1);
    await expect(client.createItem({ requestId: "req-2", description: "other" })).rejects.toMatchObject({ code: Code.AlreadyExists, rawMessage: "request_id: already used for a different item" });
  });

  it("refuses a blank description with INVALID_ARGUMENT naming the field, and writes nothing", async () => {
    const eventsBefore = await countOf(sql`select count(*)::int as n from catalog.outbox`);
    const refused = await client.createItem({ requestId: "req-bad", description: "  " }).catch((err: unknown) => err);
    expect(refused).toBeInstanceOf(ConnectError);
    expect(refused).toMatchObject({ code: Code.InvalidArgument, rawMessage: "description: is required" });
    expect(await countOf(sql`select count(*)::int as n from catalog.items where request_id = 'req-bad'`)).toBe(0);
    expect(await countOf(sql`select count(*)::int as n from catalog.outbox`)).toBe(eventsBefore);
  });
});
