import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { StorefrontService } from "#gen/shop/gateway/v1/storefront_service_pb.js";
import { OrderStatus } from "#gen/shop/order/v1/order_service_pb.js";
import type { ServiceServer } from "#platform/service.js";
import { connect } from "../support/databases.js";
import { eventually } from "../support/eventually.js";
import { bearer, startGateway } from "../support/gateway.js";
import { startInProcessMesh, type InProcessMesh } from "../support/services.js";
import { fromAddress } from "./from-address.js";

const limits = { perCustomer: 2, perAddress: 3 };
type Storefront = Client<typeof StorefrontService>;

/**
 * The gateway's caps on open WatchOrder streams, against the real mesh. Orders are held
 * PENDING by locking payment's table, so each watch stays open until it is released. The
 * attacker's customers come from 127.0.0.2; honest customers from 127.0.0.1.
 */
describe("WatchOrder caps", () => {
  let mesh: InProcessMesh;
  let gateway: ServiceServer;
  let sql: ReturnType<typeof connect>;
  let unlockPayments: () => void = () => {};
  let paymentsLocked: Promise<unknown> = Promise.resolve();

  const as = async (customerId: string, localAddress = "127.0.0.1"): Promise<Storefront> => {
    const nodeOptions = fromAddress(localAddress);
    const { token } = await createClient(StorefrontService, createGrpcTransport({ baseUrl: gateway.url, nodeOptions })).issueDemoToken({ customerId });
    return createClient(StorefrontService, createGrpcTransport({ baseUrl: gateway.url, nodeOptions, interceptors: [bearer(token)] }));
  };
  const place = async (customer: Storefront) =>
    (await customer.placeOrder({ items: [{ sku: "MW-MUG-001", quantity: 1 }], paymentToken: "tok_visa", requestId: randomUUID() })).order!.id;

  /** An open watch: its first update has arrived; `cancel` leaves it; `done` is its end. */
  async function watch(customer: Storefront, orderId: string) {
    const leave = new AbortController();
    const updates = customer.watchOrder({ orderId }, { signal: leave.signal })[Symbol.asyncIterator]();
    const first = await updates.next();
    const done = (async () => {
      let last = (first.value as { order?: { status: OrderStatus } } | undefined)?.order?.status;
      for (let next = await updates.next(); !next.done; next = await updates.next()) last = next.value.order?.status;
      return last;
    })();
    done.catch(() => {});
    return { cancel: () => leave.abort(), done };
  }
  const refusal = (customer: Storefront, orderId: string) => watch(customer, orderId).then(() => undefined, (err: unknown) => ConnectError.from(err));
  // From the gateway's ops port: /metrics is served there alone.
  const openWatches = async () => Number(/^watch_order_streams(?:\{[^}]*\})? (\d+)$/m.exec(await (await fetch(`${gateway.ops.url}/metrics`)).text())?.[1]);

  beforeAll(async () => {
    mesh = await startInProcessMesh();
    gateway = await startGateway(mesh, { watchLimits: limits });
    sql = connect(mesh.databaseUrl);
    let locked!: () => void;
    const holding = new Promise<void>((resolve) => (locked = resolve));
    paymentsLocked = sql.begin(async (tx) => {
      await tx`lock table payment.payments in exclusive mode`;
      locked();
      await new Promise<void>((resolve) => (unlockPayments = resolve));
    });
    await holding;
  });
  afterAll(async () => {
    unlockPayments();
    await paymentsLocked;
    await sql?.end();
    await gateway?.close();
    await mesh?.close();
  });

  it("refuses a customer's watch past the per-customer cap, and frees the slot when a watch ends", async () => {
    const ada = await as("ada");
    const orders = [await place(ada), await place(ada), await place(ada)];
    const open = [await watch(ada, orders[0]!), await watch(ada, orders[1]!)];
    const refused = await refusal(ada, orders[2]!);
    expect(refused?.code).toBe(Code.ResourceExhausted);
    expect(refused?.rawMessage).toBe("too many open WatchOrder streams: at most 2 per customer; close one first");
    // Another customer at the same address is not held to ada's cap.
    const bea = await as("bea");
    const beas = await watch(bea, await place(bea));

    open[0]!.cancel(); // the client leaves
    const third = await eventually(() => watch(ada, orders[2]!), 5_000);
    for (const w of [open[1]!, third, beas]) w.cancel();
    await eventually(async () => expect(await openWatches()).toBe(0), 5_000);
  });

  it("refuses watches past the per-address cap from 127.0.0.2 while 127.0.0.1 is served", async () => {
    const [carol, dave, erin] = await Promise.all([as("carol", "127.0.0.2"), as("dave", "127.0.0.2"), as("erin", "127.0.0.2")]);
    const held = [await watch(carol, await place(carol)), await watch(carol, await place(carol)), await watch(dave, await place(dave))];
    const erinsOrder = await place(erin);
    const refused = await refusal(erin, erinsOrder);
    expect(refused?.code).toBe(Code.ResourceExhausted);
    expect(refused?.rawMessage).toBe("too many open WatchOrder streams: at most 3 per client address; close one first");

    const honest = await as("frank");
    const franks = await watch(honest, await place(honest));
    franks.cancel();

    held[0]!.cancel();
    const erins = await eventually(() => watch(erin, erinsOrder), 5_000);
    for (const w of [held[1]!, held[2]!, erins]) w.cancel();
    await eventually(async () => expect(await openWatches()).toBe(0), 5_000);
  });

  it("frees slots when watches fail and when their orders end", async () => {
    const gus = await as("gus");
    // Watches that fail (an unknown order) hold nothing afterwards.
    for (let i = 0; i < limits.perCustomer + 2; i++) {
      expect((await refusal(gus, randomUUID()))?.code).toBe(Code.NotFound);
    }
    const watches = [await watch(gus, await place(gus)), await watch(gus, await place(gus))];
    expect(await openWatches()).toBe(2);
    unlockPayments(); // the orders complete, and their watches end on their own
    expect(await Promise.all(watches.map((w) => w.done))).toEqual([OrderStatus.CONFIRMED, OrderStatus.CONFIRMED]);
    await eventually(async () => expect(await openWatches()).toBe(0), 5_000);
    const after = await watch(gus, await place(gus));
    expect(await after.done).toBe(OrderStatus.CONFIRMED);
  });
});
