import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { create, toBinary } from "@bufbuild/protobuf";
import { pgSchema, text, uuid } from "drizzle-orm/pg-core";
import { drizzle } from "drizzle-orm/postgres-js";
import { generateDrizzleJson, generateMigration } from "drizzle-kit/api";
import { Kvm, type KV } from "@nats-io/kv";
import { connect as natsConnect, type Msg } from "@nats-io/transport-node";
import { pino } from "pino";
import { OrderConfirmedSchema, file_shop_order_v1_order_events } from "#gen/shop/order/v1/order_events_pb.js";
import { connectBus, type Bus, type BusConnection } from "#platform/messaging/connection.js";
import { listDeadLetters, replayDeadLetter } from "#platform/messaging/dead-letters.js";
import { createServiceDirectory, DISCOVERY_BUCKET, registerInstance, type Instance } from "#platform/discovery/registry.js";
import { on, startEventConsumer, type EventConsumer } from "#platform/messaging/event-consumer.js";
import { toHeaders } from "#platform/messaging/event-headers.js";
import { startOutboxRelay, type OutboxRelay } from "#platform/messaging/outbox-relay.js";
import { ensureStream } from "#platform/messaging/streams.js";
import { deadLetterStream, eventStream } from "#shop/streams.js";
import { createInboxTable } from "#platform/messaging/inbox.js";
import { appendToOutbox, createOutboxTable } from "#platform/messaging/outbox.js";
import { connect, createTestDatabase } from "../support/databases.js";
import { eventually } from "../support/eventually.js";
import { startTestNats, type TestNats } from "../support/nats.js";
import { silentLogger } from "../support/silent-logger.js";

/**
 * The bus with a NATS user per service (the users `npm start` configures, on a real
 * nats-server 2.9): the attacks on NATS and on the registry are refused, and the
 * mesh's own traffic (outbox relay, event consumer, dead letters, live watch, registry)
 * still flows under those users with no permission refused.
 */
describe("NATS users per service", () => {
  let nats: TestNats;
  /** Connections by the name a test gives them, and the buses they give. */
  const connections: Record<string, BusConnection> = {};
  const as: Record<string, Bus> = {};
  /** Permission violations each connection was told of. */
  const refused = new Map<string, string[]>();
  let suite: Bus;

  const open = async (url: string, name: string): Promise<Bus> => {
    const connection = connectBus({ url, name: `nats-permissions-${name}`, logger: silentLogger });
    connections[name] = connection;
    const bus = await connection.ready;
    as[name] = bus;
    const errors: string[] = [];
    refused.set(name, errors);
    void (async () => {
      for await (const status of bus.nc.status()) if (status.type === "error") errors.push(String(status.error));
    })();
    return bus;
  };
  const messagesIn = async (stream: string) => (await suite.jsm.streams.info(stream)).state.messages;
  const event = (type: string, data: Uint8Array) => [type, data, { headers: toHeaders({ id: randomUUID(), type, source: "test", time: new Date() }) }] as const;
  const confirmed = (orderId: string) => event("shop.order.v1.OrderConfirmed", toBinary(OrderConfirmedSchema, create(OrderConfirmedSchema, { orderId, customerId: "c" })));
  /** The error a subscription is refused with, or "accepted" if none arrives within a second. */
  const subscribeOutcome = (bus: Bus, subject: string) =>
    new Promise<string>((resolve) => {
      const timer = setTimeout(() => resolve("accepted"), 1_000);
      bus.nc.subscribe(subject, {
        callback: (err) => {
          clearTimeout(timer);
          resolve(err ? String(err) : "accepted");
        },
      });
    });

  beforeAll(async () => {
    nats = await startTestNats();
    suite = await open(nats.url, "suite");
    for (const user of ["order", "payment", "notification", "gateway", "operator", "console"]) await open(nats.urlFor(user), user);
    // The mesh's own traffic gets connections of its own, so the attacks do not count as its refusals.
    for (const user of ["order", "notification", "gateway", "operator", "console"]) await open(nats.urlFor(user), `mesh-${user}`);
    await ensureStream(as["order"]!.jsm, eventStream("order"));
    await ensureStream(as["payment"]!.jsm, eventStream("payment"));
  });
  afterAll(async () => {
    for (const connection of Object.values(connections)) await connection.close();
    await nats?.stop();
  });

  it("refuses a connection without a user or with a wrong password", async () => {
    const { host } = new URL(nats.url);
    await expect(natsConnect({ servers: host, reconnect: false })).rejects.toThrow(/Authorization Violation/i);
    await expect(natsConnect({ servers: host, user: "order", pass: "not-the-password", reconnect: false })).rejects.toThrow(/Authorization Violation/i);
  });

  it("logs NATS_URL with its password masked", async () => {
    const lines: string[] = [];
    const logger = pino({ level: "info" }, { write: (line: string) => void lines.push(line) });
    const url = nats.urlFor("order");
    const password = decodeURIComponent(new URL(url).password);
    const connection = connectBus({ url, name: "redaction", logger });
    await connection.ready;
    await connection.close();
    const unreachable = connectBus({ url: url.replace(/:\d+$/, ":1"), name: "redaction", logger });
    await eventually(async () => expect(lines.filter((line) => line.includes("NATS not reachable yet"))).toHaveLength(1));
    await unreachable.close();
    expect(lines.filter((line) => line.includes("connected to NATS"))).toHaveLength(1);
    expect(lines.every((line) => line.includes("order:***@"))).toBe(true);
    expect(lines.some((line) => line.includes(password))).toBe(false);
  });

  it("lets only order publish order events: payment's forged OrderConfirmed is refused and never stored", async () => {
    const before = await messagesIn("SHOP_ORDER");
    await expect(as["payment"]!.js.publish(...confirmed("forged"))).rejects.toThrow(/Permissions Violation for Publish to "shop\.order\.v1\.OrderConfirmed"/);
    as["payment"]!.nc.publish("shop.order.v1.OrderConfirmed", new Uint8Array([1])); // core publish: refused just the same
    await as["payment"]!.nc.flush();
    const ack = await as["order"]!.js.publish(...confirmed("genuine"));
    expect(ack.stream).toBe("SHOP_ORDER");
    expect(await messagesIn("SHOP_ORDER")).toBe(before + 1);
  });

  it("lets payment neither delete nor purge SHOP_ORDER, nor create a stream of another name", async () => {
    const { jsm } = as["payment"]!;
    await expect(jsm.streams.delete("SHOP_ORDER")).rejects.toThrow(/Permissions Violation for Publish to "\$JS\.API\.STREAM\.DELETE\.SHOP_ORDER"/);
    await expect(jsm.streams.purge("SHOP_ORDER")).rejects.toThrow(/Permissions Violation for Publish to "\$JS\.API\.STREAM\.PURGE\.SHOP_ORDER"/);
    await expect(jsm.streams.purge("SHOP_PAYMENT")).rejects.toThrow(/Permissions Violation/); // not even its own
    await expect(jsm.streams.add({ name: "EVIL", subjects: ["evil.>"] })).rejects.toThrow(/Permissions Violation for Publish to "\$JS\.API\.STREAM\.CREATE\.EVIL"/);
    expect((await suite.jsm.streams.info("SHOP_ORDER")).config.name).toBe("SHOP_ORDER");
    await expect(suite.jsm.streams.info("EVIL")).rejects.toThrow(/stream not found/);
  });

  it("lets each service write only its own registry keys", async () => {
    const registry = async (user: string) => new Kvm(as[user]!.js).create(DISCOVERY_BUCKET, { history: 1, ttl: 15_000 });
    const entry = (service: string, id: string): Instance => ({ service, id, address: "http://127.0.0.1:9", version: "evil", health: "SERVING", updatedAt: Date.now() });
    const [asOrder, asGateway, asPayment] = [await registry("order"), await registry("gateway"), await registry("payment")];
    const evil = "shop.payment.v1.PaymentService.evil1";
    await expect(asOrder.put(evil, JSON.stringify(entry("shop.payment.v1.PaymentService", "evil1")))).rejects.toThrow(/Permissions Violation for Publish to "\$KV\.meshwork_services\.shop\.payment\.v1\.PaymentService\.evil1"/);
    await expect(asGateway.put(evil, JSON.stringify(entry("shop.payment.v1.PaymentService", "evil1")))).rejects.toThrow(/Permissions Violation/);
    await expect(asOrder.delete("shop.payment.v1.PaymentService.genuine")).rejects.toThrow(/Permissions Violation/);
    await asPayment.put("shop.payment.v1.PaymentService.genuine", JSON.stringify(entry("shop.payment.v1.PaymentService", "genuine")));
    const read = await new Kvm(as["operator"]!.js).open(DISCOVERY_BUCKET);
    expect(await read.get(evil)).toBeNull();
    expect((await read.get("shop.payment.v1.PaymentService.genuine"))?.operation).toBe("PUT");
    await asPayment.delete("shop.payment.v1.PaymentService.genuine");
  });

  it("keeps each user's inbox, and other contexts' events, from other users' subscriptions", async () => {
    expect(await subscribeOutcome(as["payment"]!, "_INBOX_order.>")).toMatch(/Permissions Violation for Subscription to "_INBOX_order\.>"/);
    expect(await subscribeOutcome(as["payment"]!, "shop.order.v1.>")).toMatch(/Permissions Violation for Subscription to "shop\.order\.v1\.>"/);
    expect(await subscribeOutcome(as["gateway"]!, ">")).toMatch(/Permissions Violation for Subscription to ">"/);
    expect(await subscribeOutcome(as["gateway"]!, "shop.order.v1.>")).toBe("accepted");
  });

  it("lets the console publish only what a consumer reads, and read SHOP_DLQ alone", async () => {
    const { js, jsm, nc } = as["console"]!;
    // No consumer reads payment's events, so no dead letter can be one: the console may not forge them.
    const payments = await messagesIn("SHOP_PAYMENT");
    await expect(js.publish("shop.payment.v1.PaymentCaptured", new Uint8Array([1]))).rejects.toThrow(/Permissions Violation for Publish to "shop\.payment\.v1\.PaymentCaptured"/);
    nc.publish("shop.payment.v1.PaymentCaptured", new Uint8Array([1])); // core publish: refused just the same
    await nc.flush();
    expect(await messagesIn("SHOP_PAYMENT")).toBe(payments);
    // Nor read another stream, its messages or its consumers, nor the registry; nor delete from one.
    await expect(jsm.streams.info("SHOP_ORDER")).rejects.toThrow(/Permissions Violation for Publish to "\$JS\.API\.STREAM\.INFO\.SHOP_ORDER"/);
    await expect(jsm.streams.getMessage("SHOP_ORDER", { seq: 1 })).rejects.toThrow(/Permissions Violation for Publish to "\$JS\.API\.STREAM\.MSG\.GET\.SHOP_ORDER"/);
    await expect(jsm.streams.deleteMessage("SHOP_ORDER", 1)).rejects.toThrow(/Permissions Violation for Publish to "\$JS\.API\.STREAM\.MSG\.DELETE\.SHOP_ORDER"/);
    await expect(jsm.streams.purge("SHOP_DLQ")).rejects.toThrow(/Permissions Violation for Publish to "\$JS\.API\.STREAM\.PURGE\.SHOP_DLQ"/);
    await expect(jsm.consumers.info("SHOP_ORDER", "notification")).rejects.toThrow(/Permissions Violation/);
    await expect((await new Kvm(js).open(DISCOVERY_BUCKET)).get("shop.payment.v1.PaymentService.genuine")).rejects.toThrow(/Permissions Violation/);
    // Nor listen to events, or to another user's inbox.
    expect(await subscribeOutcome(as["console"]!, "shop.order.v1.>")).toMatch(/Permissions Violation for Subscription to "shop\.order\.v1\.>"/);
    expect(await subscribeOutcome(as["console"]!, "_INBOX_operator.>")).toMatch(/Permissions Violation for Subscription/);
  });

  describe("the mesh's own traffic under its users", () => {
    const schema = pgSchema("nats_permissions");
    const outbox = createOutboxTable(schema);
    const inbox = createInboxTable(schema);
    const effects = schema.table("effects", { eventId: uuid("event_id").notNull(), orderId: text("order_id").notNull() });
    let sql: ReturnType<typeof connect>;
    let db: ReturnType<typeof drizzle>;
    let relay: OutboxRelay;
    let consumer: EventConsumer;
    const watched: Msg[] = [];

    beforeAll(async () => {
      sql = connect(await createTestDatabase());
      db = drizzle(sql);
      for (const statement of await generateMigration(generateDrizzleJson({}), generateDrizzleJson({ schema, outbox, inbox, effects }))) await sql.unsafe(statement);
      as["mesh-gateway"]!.nc.subscribe("shop.order.v1.>", { callback: (err, msg) => void (err ? undefined : watched.push(msg)) });
      relay = startOutboxRelay({ sql, outbox, schemaName: "nats_permissions", stream: eventStream("order"), source: "order", bus: connections["mesh-order"]!, logger: silentLogger, pollMs: 200 });
      consumer = startEventConsumer({
        bus: connections["mesh-notification"]!,
        db,
        inbox,
        stream: eventStream("order"),
        deadLetters: deadLetterStream,
        contract: file_shop_order_v1_order_events,
        durable: "notification",
        handlers: [on(OrderConfirmedSchema, async (tx, e, envelope) => void (await tx.insert(effects).values({ eventId: envelope.id, orderId: e.orderId })))],
        logger: silentLogger,
        maxDeliver: 2,
        backoffMs: [20],
      });
    });
    afterAll(async () => {
      await consumer?.stop();
      await relay?.stop();
      await sql?.end();
    });

    it("relays order's outbox, and notification's durable applies the event, with no permission refused", async () => {
      const orderId = `relayed-${randomUUID()}`;
      await db.transaction((tx) => appendToOutbox(tx, outbox, [{ schema: OrderConfirmedSchema, message: create(OrderConfirmedSchema, { orderId, customerId: "c" }), aggregateType: "order", aggregateId: orderId }]));
      await eventually(async () => expect(await sql`select 1 from nats_permissions.effects where order_id = ${orderId}`).toHaveLength(1), 15_000);
      await eventually(async () => expect(await consumer.lag()).toBe(0));
      expect(watched.filter((msg) => msg.subject === "shop.order.v1.OrderConfirmed").length).toBeGreaterThanOrEqual(1);
      for (const user of ["mesh-order", "mesh-notification", "mesh-gateway"]) expect({ user, refused: refused.get(user) }).toEqual({ user, refused: [] });
    });

    it("dead-letters as notification, and the operator lists and replays the letter", async () => {
      const [subject, data, options] = event("shop.order.v1.NoSuchEvent", new Uint8Array([1, 2, 3]));
      await as["mesh-order"]!.js.publish(subject, data, options);
      const eventId = options.headers.get("ce-id");
      const letter = await eventually(async () => {
        const found = (await listDeadLetters(as["mesh-operator"]!.jsm, deadLetterStream)).find((l) => l.eventId === eventId);
        expect(found?.consumer).toBe("notification");
        return found!;
      }, 15_000);
      await replayDeadLetter(as["mesh-operator"]!, deadLetterStream, letter.seq);
      // Replayed to its subject, the unknown type is dead-lettered again: a new letter, the old one gone.
      await eventually(async () => {
        const letters = (await listDeadLetters(as["mesh-operator"]!.jsm, deadLetterStream)).filter((l) => l.eventId === eventId);
        expect(letters.map((l) => l.seq)).toHaveLength(1);
        expect(letters[0]!.seq).toBeGreaterThan(letter.seq);
      }, 15_000);
      expect(await messagesIn(deadLetterStream.name)).toBeGreaterThanOrEqual(1);
      for (const user of ["mesh-order", "mesh-notification", "mesh-operator"]) expect({ user, refused: refused.get(user) }).toEqual({ user, refused: [] });
    });

    it("dead-letters as notification, and the console (the gateway's operator console) lists and replays the letter", async () => {
      const [subject, data, options] = event("shop.order.v1.NoSuchEventEither", new Uint8Array([4, 5, 6]));
      await as["mesh-order"]!.js.publish(subject, data, options);
      const eventId = options.headers.get("ce-id");
      const letter = await eventually(async () => {
        const found = (await listDeadLetters(as["mesh-console"]!.jsm, deadLetterStream)).find((l) => l.eventId === eventId);
        expect(found?.consumer).toBe("notification");
        return found!;
      }, 15_000);
      await replayDeadLetter(as["mesh-console"]!, deadLetterStream, letter.seq);
      // Republished to shop.order.v1.> (which notification consumes) and dead-lettered anew; the old letter deleted.
      await eventually(async () => {
        const letters = (await listDeadLetters(as["mesh-console"]!.jsm, deadLetterStream)).filter((l) => l.eventId === eventId);
        expect(letters.map((l) => l.seq)).toHaveLength(1);
        expect(letters[0]!.seq).toBeGreaterThan(letter.seq);
      }, 15_000);
      expect({ refused: refused.get("mesh-console") }).toEqual({ refused: [] });
    });
  });

  describe("the service directory believes only well-formed entries, and ages them by receipt", () => {
    const ttlMs = 1_500;
    const lines: string[] = [];
    const debugLogger = pino({ level: "debug" }, { write: (line: string) => void lines.push(line) });
    let writer: KV;
    let directory: ReturnType<typeof createServiceDirectory>;
    let registration: ReturnType<typeof registerInstance>;
    const payment = "shop.payment.v1.PaymentService";
    const put = (id: string, fields: Partial<Instance> = {}, key = `${payment}.${id}`) =>
      writer.put(key, JSON.stringify({ service: payment, id, address: "http://127.0.0.1:9", version: "v", health: "SERVING", updatedAt: Date.now(), ...fields }));
    const ids = (service: string) => directory.instances(service).map((i) => i.id).sort();

    beforeAll(async () => {
      writer = await new Kvm(as["payment"]!.js).create(DISCOVERY_BUCKET, { history: 1, ttl: 15_000 });
      directory = createServiceDirectory({ bus: connections["mesh-gateway"]!, ttlMs, logger: debugLogger });
      registration = registerInstance({
        bus: connections["mesh-order"]!,
        services: ["shop.order.v1.OrderService"],
        address: "https://127.0.0.1:50051",
        version: "test",
        health: () => "SERVING",
        ttlMs,
        logger: silentLogger,
      });
    });
    afterAll(async () => {
      directory?.stop();
      await registration?.stop();
    });

    it("ignores a bad address and a key that names another service, logging each once", async () => {
      await put("bad-url", { address: "not a url" });
      await put("no-host", { address: "file:///etc/passwd" });
      await put("claims-order", { service: "shop.order.v1.OrderService" });
      await put("bad-url", { address: "not a url" }); // renewed: not logged again
      await put("good");
      await eventually(async () => expect(ids(payment)).toEqual(["good"]));
      await eventually(async () => expect(directory.instances("shop.order.v1.OrderService")).toHaveLength(1)); // order's real registration
      expect(directory.instances("shop.order.v1.OrderService")[0]!.address).toBe("https://127.0.0.1:50051");
      const ignored = lines.filter((line) => line.includes("ignoring a registry entry")).map((line) => JSON.parse(line) as { key: string; reason: string });
      expect(ignored.map((l) => l.key).sort()).toEqual([`${payment}.bad-url`, `${payment}.claims-order`, `${payment}.no-host`]);
    });

    it("expires an entry dated far in the future once it is no longer renewed, while renewed ones stay", async () => {
      await put("future", { updatedAt: Date.now() + 10 * 365 * 24 * 3600 * 1000 });
      await put("good");
      await eventually(async () => expect(ids(payment)).toEqual(["future", "good"]));
      const deadline = Date.now() + ttlMs + 1_000;
      while (Date.now() < deadline) {
        await put("good");
        await new Promise((resolve) => setTimeout(resolve, 300));
      }
      expect(ids(payment)).toEqual(["good"]);
      expect(directory.instances("shop.order.v1.OrderService")).toHaveLength(1); // registerInstance kept renewing
      for (const user of ["mesh-order", "mesh-gateway"]) expect({ user, refused: refused.get(user) }).toEqual({ user, refused: [] });
    });
  });
});
