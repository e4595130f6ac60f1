import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { create, toBinary } from "@bufbuild/protobuf";
import { connectBus } from "#platform/messaging/connection.js";
import { listDeadLetters } from "#platform/messaging/dead-letters.js";
import { deadLetterStream } from "#shop/streams.js";
import { toHeaders } from "#platform/messaging/event-headers.js";
import { OrderStatus } from "#gen/shop/order/v1/order_service_pb.js";
import { OrderConfirmedSchema } from "#gen/shop/order/v1/order_events_pb.js";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "#gen/grpc/health/v1/health_pb.js";
import { connect } from "../support/databases.js";
import { eventually } from "../support/eventually.js";
import { expectInvariants } from "../support/invariants.js";
import { startProcessMesh, type ProcessMesh } from "../support/process-mesh.js";
import { silentLogger } from "../support/silent-logger.js";

/**
 * Real processes, killed for real with SIGKILL at chosen points of the saga. The points
 * are reached without hooks in the code under test: the test holds Postgres locks that the
 * next step needs, so the saga waits exactly there while the process is killed.
 */
describe("a saga survives crashes", () => {
  let mesh: ProcessMesh;
  let sql: ReturnType<typeof connect>;

  beforeAll(async () => {
    // Short leases and sweeps, so a killed order's sagas are picked up within seconds. The
    // lease still outlasts one attempt (1.5 s) plus the longest backoff (3 s).
    mesh = await startProcessMesh({ env: { SAGA_LEASE_MS: "5000", SAGA_SWEEP_MS: "300", SAGA_STEP_TIMEOUT_MS: "1500" } });
    sql = connect(mesh.databaseUrl);
  });
  afterAll(async () => {
    await sql?.end();
    await mesh?.stop();
  });

  const placeOrders = (n: number, token = "tok_visa") =>
    Promise.all(
      Array.from({ length: n }, async (_, i) => {
        const { order } = await mesh.order.createOrder({ customerId: `chaos-${i}`, items: [{ sku: "MW-STK-003", quantity: 1 + (i % 3) }], paymentToken: token, requestId: randomUUID() });
        return order!.id;
      }),
    );

  /** Holds a Postgres lock until released; the returned promise settles once it is held. */
  async function hold(statement: (tx: ReturnType<typeof connect>) => Promise<unknown>) {
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    let held!: () => void;
    const holding = new Promise<void>((resolve) => (held = resolve));
    const done = sql.begin(async (tx) => {
      await statement(tx as unknown as ReturnType<typeof connect>);
      held();
      await released;
    });
    await holding;
    return async () => {
      release();
      await done;
    };
  }

  const stepState = async (orderIds: string[], step: string) =>
    (await sql`select s.state from orders.saga_steps s join orders.sagas g on g.id = s.saga_id where g.aggregate_id in ${sql(orderIds)} and s.name = ${step}`).map((r) => r["state"]);

  async function waitForStep(orderIds: string[], step: string, state: string) {
    await eventually(async () => {
      const states = await stepState(orderIds, step);
      expect(states).toHaveLength(orderIds.length);
      expect(states.every((s) => s === state)).toBe(true);
    }, 20_000);
  }

  async function expectConfirmedWithOneCapture(orderIds: string[]) {
    await eventually(async () => {
      for (const orderId of orderIds) expect((await mesh.order.getOrder({ orderId })).order?.status).toBe(OrderStatus.CONFIRMED);
    }, 30_000);
    const captures = await sql`select order_id, count(*)::int as n from payment.payments where order_id in ${sql(orderIds)} and status = 'captured' group by order_id`;
    expect(captures.map((r) => r["n"])).toEqual(orderIds.map(() => 1));
  }

  it("order killed between reserve and charge: resumed, charged once, confirmed", async () => {
    const releasePayments = await hold((tx) => tx`lock table payment.payments in exclusive mode`);
    const orderIds = await placeOrders(3);
    await waitForStep(orderIds, "reserve-stock", "succeeded");
    await waitForStep(orderIds, "charge", "started");
    mesh.kill("order");
    await releasePayments();
    await expectConfirmedWithOneCapture(orderIds);
    await expectInvariants(sql);
  });

  it("order killed between charge and confirm: resumed, never charged again", async () => {
    const releasePayments = await hold((tx) => tx`lock table payment.payments in exclusive mode`);
    const orderIds = await placeOrders(3);
    await waitForStep(orderIds, "charge", "started");
    const releaseOrders = await hold((tx) => tx`select id from orders.orders where id in ${tx(orderIds)} for update`);
    await releasePayments();
    await waitForStep(orderIds, "charge", "succeeded");
    await waitForStep(orderIds, "confirm-order", "started");
    mesh.kill("order");
    await releaseOrders();
    await expectConfirmedWithOneCapture(orderIds);
    await expectInvariants(sql);
  });

  it("payment killed mid-charge: each saga completes or compensates, never charging twice", async () => {
    const releasePayments = await hold((tx) => tx`lock table payment.payments in exclusive mode`);
    const orderIds = await placeOrders(3);
    await waitForStep(orderIds, "charge", "started");
    mesh.kill("payment");
    await releasePayments();
    await expectInvariants(sql);
    const captures = await sql`select order_id, count(*)::int as n from payment.payments where order_id in ${sql(orderIds)} and status = 'captured' group by order_id`;
    expect(captures.every((r) => r["n"] === 1)).toBe(true);
  });

  it("inventory killed mid-reservation: each saga completes or compensates", async () => {
    // Reads (the pricing lookup) pass; the reservation's UPDATE waits for the lock.
    const releaseStock = await hold((tx) => tx`lock table inventory.products in exclusive mode`);
    const orderIds = await placeOrders(3);
    await waitForStep(orderIds, "reserve-stock", "started");
    mesh.kill("inventory");
    await releaseStock();
    await mesh.supervisor.waitUntilServing(30_000);
    await expectInvariants(sql);
  });

  it("every event delivered twice: each effect happens once", async () => {
    const bus = connectBus({ url: mesh.nats.url, name: "chaos-redeliver", logger: silentLogger });
    try {
      const { js, jsm } = await bus.ready;
      const info = await jsm.streams.info("SHOP_ORDER");
      for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
        const stored = await jsm.streams.getMessage("SHOP_ORDER", { seq });
        if (!stored) continue;
        await js.publish(stored.subject, stored.data, { headers: stored.header, msgID: `redelivery-${seq}` });
      }
      expect((await jsm.streams.info("SHOP_ORDER")).state.messages).toBe(2 * info.state.messages);
      await eventually(async () => expect((await jsm.consumers.info("SHOP_ORDER", "notification")).num_pending).toBe(0), 20_000);
      await eventually(async () => expect((await jsm.consumers.info("SHOP_ORDER", "notification")).num_ack_pending).toBe(0), 20_000);
      // Duplicates were skipped through the inbox, not failed into the dead-letter stream.
      expect((await listDeadLetters(jsm, deadLetterStream).catch(() => [])).filter((l) => l.consumer === "notification")).toEqual([]);
    } finally {
      await bus.close();
    }
    await expectInvariants(sql);
  });

  it("a poison message is dead-lettered with its reason and blocks nothing", async () => {
    const bus = connectBus({ url: mesh.nats.url, name: "chaos-poison", logger: silentLogger });
    try {
      const { js, jsm } = await bus.ready;
      const poisonId = randomUUID();
      await js.publish("shop.order.v1.OrderConfirmed", new Uint8Array([0x0a, 0xff, 0xff, 0xff]), {
        headers: toHeaders({ id: poisonId, type: "shop.order.v1.OrderConfirmed", source: "chaos", time: new Date() }),
        msgID: poisonId,
      });
      const alien = randomUUID();
      await js.publish("shop.order.v1.OrderConfirmed", toBinary(OrderConfirmedSchema, create(OrderConfirmedSchema, { orderId: "x" })), {
        headers: toHeaders({ id: alien, type: "shop.order.v1.OrderBeamedUp", source: "chaos", time: new Date() }),
        msgID: alien,
      });
      const letters = await eventually(async () => {
        const ours: string[] = [poisonId, alien];
        const found = (await listDeadLetters(jsm, deadLetterStream)).filter((l) => ours.includes(l.eventId));
        expect(found).toHaveLength(2);
        return found;
      }, 20_000);
      expect(letters.find((l) => l.eventId === poisonId)?.reason).toMatch(/^undecodable shop.order.v1.OrderConfirmed payload/);
      expect(letters.find((l) => l.eventId === alien)?.reason).toBe('unknown event type "shop.order.v1.OrderBeamedUp"');
    } finally {
      await bus.close();
    }
    const [after] = await placeOrders(1);
    await eventually(async () => expect((await mesh.notification.listNotifications({ customerId: "chaos-0" })).notifications.some((n) => n.orderId === after)).toBe(true), 20_000);
    await expectInvariants(sql);
  });
  // Last: a killed nats-server may lose a delivery in flight, which JetStream redelivers only
  // after the consumer's 30 s ack wait.
  it("NATS stopped while orders are placed: every event goes out once it is back, applied once", async () => {
    await mesh.nats.kill();
    const health = createClient(Health, createGrpcTransport({ baseUrl: mesh.opsUrl("order") }));
    // Readiness follows NATS; liveness does not, and the service keeps taking orders.
    await eventually(async () => expect((await health.check({ service: "readiness" })).status).toBe(ServingStatus.NOT_SERVING), 15_000);
    expect((await health.check({})).status).toBe(ServingStatus.SERVING);
    const orderIds = [...(await placeOrders(3)), ...(await placeOrders(2, "tok_decline"))];
    await eventually(async () => {
      const [row] = await sql`select count(*)::int as n from orders.orders where id in ${sql(orderIds)} and status = 'pending'`;
      expect(row?.["n"]).toBe(0); // sagas run on RPC; they do not need NATS
    }, 30_000);
    const [pending] = await sql`select count(*)::int as n from orders.outbox where published_at is null`;
    expect(pending?.["n"]).toBeGreaterThan(0);
    await mesh.nats.restart();
    await expectInvariants(sql, { timeoutMs: 45_000 });
    await eventually(async () => expect((await health.check({ service: "readiness" })).status).toBe(ServingStatus.SERVING), 15_000);
  });
});
