import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { BasicTracerProvider, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { context, propagation, trace } from "@opentelemetry/api";
import { initTelemetry } from "#platform/process/telemetry.js";
import { OperatorService, SagaView, type TraceSummary } from "#gen/shop/gateway/v1/operator_service_pb.js";
import { StorefrontService } from "#gen/shop/gateway/v1/storefront_service_pb.js";
import { OrderService, SagaState } from "#gen/shop/order/v1/order_service_pb.js";
import { connectBus } from "#platform/messaging/connection.js";
import { toHeaders } from "#platform/messaging/event-headers.js";
import { connect } from "../support/databases.js";
import { eventually } from "../support/eventually.js";
import { bearer, startGateway, startGatewayWithOperator, testOperatorConfig, testOperatorToken, testTraceToken } from "../support/gateway.js";
import { startInProcessMesh, type InProcessMesh } from "../support/services.js";
import { silentLogger } from "../support/silent-logger.js";

/**
 * The operator listener's backend against the real mesh: the saga admin service behind it
 * (with the operator certificate, auditing the signed-in operator), the dead letters in
 * JetStream, the gateway's own stats, and the dev trace store fed over OTLP/HTTP.
 */
describe("the operator console's backend", () => {
  let mesh: InProcessMesh;
  let gateway: Awaited<ReturnType<typeof startGatewayWithOperator>>;
  let sql: ReturnType<typeof connect>;
  let ops: ReturnType<typeof createClient<typeof OperatorService>>;
  let shopper: ReturnType<typeof createClient<typeof StorefrontService>>;
  const orders = () => mesh.client(OrderService, "order");
  const failure = (promise: Promise<unknown>) => promise.then(() => undefined, (e: unknown) => ConnectError.from(e));

  /** Places an order through the public port and waits for its saga to finish. */
  async function settledOrder(paymentToken = "tok_visa", customerId = "ops-customer") {
    const { order } = await orders().createOrder({ customerId, items: [{ sku: "MW-MUG-001", quantity: 1 }], paymentToken, requestId: randomUUID() });
    const id = order!.id;
    await eventually(async () => expect([SagaState.COMPLETED, SagaState.COMPENSATED]).toContain((await orders().getOrder({ orderId: id })).saga?.state));
    return id;
  }

  beforeAll(async () => {
    mesh = await startInProcessMesh();
    gateway = await startGatewayWithOperator(mesh);
    sql = connect(mesh.databaseUrl);
    ops = createClient(OperatorService, createConnectTransport({ baseUrl: gateway.operator.url, httpVersion: "1.1", interceptors: [bearer(await testOperatorToken("grace"))] }));
    const { token } = await createClient(StorefrontService, createGrpcTransport({ baseUrl: gateway.url })).issueDemoToken({ customerId: "ops-customer" });
    shopper = createClient(StorefrontService, createGrpcTransport({ baseUrl: gateway.url, interceptors: [bearer(token)] }));
  });
  afterAll(async () => {
    await sql?.end();
    await gateway?.close();
    await mesh?.close();
  });

  it("lists sagas by view and unparks a parked one with RetrySaga, audited as the signed-in operator", async () => {
    const id = await settledOrder();
    // What a definitive failure of the last step leaves: the saga parked, the step failed.
    await sql`update orders.sagas set state = 'parked', last_error = 'commit-reservation: [failed_precondition] no' where aggregate_id = ${id}`;
    await sql`update orders.saga_steps set state = 'failed' where name = 'commit-reservation' and saga_id = (select id from orders.sagas where aggregate_id = ${id})`;

    expect((await ops.listSagas({ view: SagaView.PARKED })).sagas.map((s) => s.orderId)).toContain(id);
    expect((await ops.listSagas({ view: SagaView.RUNNING })).sagas.map((s) => s.orderId)).not.toContain(id);
    expect((await ops.getSaga({ orderId: id })).saga).toMatchObject({ orderId: id, state: SagaState.PARKED, lastError: "commit-reservation: [failed_precondition] no" });

    const { saga } = await ops.retrySaga({ orderId: id });
    expect(saga?.state).toBe(SagaState.RUNNING);
    await eventually(async () => expect((await ops.getSaga({ orderId: id })).saga?.state).toBe(SagaState.COMPLETED));
    expect((await ops.listSagas({ view: SagaView.PARKED })).sagas.map((s) => s.orderId)).not.toContain(id);
    const [row] = await sql`select actor, outcome from orders.saga_audit where order_id = ${id} and action = 'retry'`;
    expect(row).toEqual({ actor: "grace (console)@127.0.0.1", outcome: "accepted" });
  });

  it("relays the admin service's refusals, and refuses bad input naming the field", async () => {
    const done = await settledOrder();
    expect(await failure(ops.compensateSaga({ orderId: done, reason: "too late" }))).toMatchObject({ code: Code.FailedPrecondition });
    const [row] = await sql`select actor, outcome from orders.saga_audit where order_id = ${done} and action = 'compensate'`;
    expect(row).toEqual({ actor: "grace (console)@127.0.0.1", outcome: "refused" });
    expect(await failure(ops.getSaga({ orderId: randomUUID() }))).toMatchObject({ code: Code.NotFound });
    expect(await failure(ops.getSaga({ orderId: "nope" }))).toMatchObject({ code: Code.InvalidArgument, rawMessage: "order_id: must be a UUID" });
    expect(await failure(ops.listSagas({ view: 42 as SagaView }))).toMatchObject({ code: Code.InvalidArgument, rawMessage: "view: unknown saga view 42" });
    expect(await failure(ops.getStats({ windowSeconds: 601 }))).toMatchObject({ code: Code.InvalidArgument, rawMessage: "window_seconds: must be from 0 to 600" });
    expect(await failure(ops.listTraces({ limit: -1 }))).toMatchObject({ code: Code.InvalidArgument, rawMessage: "limit: must be from 0 to 100" });
  });

  it("watches a saga until it is finished", async () => {
    const { order } = await shopper.placeOrder({ items: [{ sku: "MW-MUG-001", quantity: 1 }], paymentToken: "tok_visa", requestId: randomUUID() });
    const states: SagaState[] = [];
    for await (const { saga } of ops.watchSaga({ orderId: order!.id }, { timeoutMs: 20_000 })) states.push(saga!.state);
    expect(states.at(-1)).toBe(SagaState.COMPLETED);
  });

  it("lists dead letters from JetStream and replays one to its subject with its event id", async () => {
    // An OrderConfirmed that cannot be decoded: notification dead-letters it at once.
    const bus = connectBus({ url: mesh.nats.url, name: "operator-console-test", logger: silentLogger });
    const eventId = randomUUID();
    try {
      const { js } = await bus.ready;
      await js.publish("shop.order.v1.OrderConfirmed", new Uint8Array([0x0a, 0xff, 0xff, 0xff]), { headers: toHeaders({ id: eventId, type: "shop.order.v1.OrderConfirmed", source: "test", time: new Date() }), msgID: eventId });
    } finally {
      await bus.close();
    }
    const ours = async () => (await ops.listDeadLetters({})).deadLetters.filter((d) => d.eventId === eventId);
    const [letter] = await eventually(async () => {
      const found = await ours();
      expect(found).toHaveLength(1);
      return found;
    }, 20_000);
    expect(letter).toMatchObject({ consumer: "notification", originalSubject: "shop.order.v1.OrderConfirmed", reason: expect.stringMatching(/^undecodable shop.order.v1.OrderConfirmed payload/) });

    await ops.replayDeadLetter({ sequence: letter!.sequence });
    // Back on its subject with its event id: notification meets it again and dead-letters it anew.
    const [again] = await eventually(async () => {
      const found = await ours();
      expect(found).toHaveLength(1);
      expect(found[0]!.sequence).toBeGreaterThan(letter!.sequence);
      return found;
    }, 20_000);
    expect(again!.originalSubject).toBe("shop.order.v1.OrderConfirmed");
    expect(await failure(ops.replayDeadLetter({ sequence: letter!.sequence }))).toMatchObject({ code: Code.NotFound });
    expect(await failure(ops.replayDeadLetter({ sequence: 0n }))).toMatchObject({ code: Code.InvalidArgument, rawMessage: expect.stringMatching(/^sequence: /) });
  });

  it("charts the last seconds: orders per second with p50 ≤ p99, errors by code, and each dependency's breaker", async () => {
    await Promise.all(Array.from({ length: 6 }, () => shopper.placeOrder({ items: [{ sku: "MW-MUG-001", quantity: 1 }], paymentToken: "tok_visa", requestId: randomUUID() })));
    const anonymous = createClient(StorefrontService, createGrpcTransport({ baseUrl: gateway.url }));
    await Promise.all(Array.from({ length: 3 }, () => failure(anonymous.listMyOrders({}))));
    const stats = await eventually(async () => {
      const response = await ops.getStats({ windowSeconds: 30 });
      expect(response.points.some((p) => p.ordersPerSecond > 0)).toBe(true);
      expect(response.points.reduce((n, p) => n + (p.errorsPerSecond["unauthenticated"] ?? 0), 0)).toBeGreaterThanOrEqual(3);
      return response;
    }, 5_000);
    const busy = stats.points.filter((p) => p.ordersPerSecond > 0);
    expect(busy.reduce((n, p) => n + p.ordersPerSecond, 0)).toBeGreaterThanOrEqual(6);
    for (const point of busy) {
      expect(point.p50Ms).toBeGreaterThan(0);
      expect(point.p99Ms).toBeGreaterThanOrEqual(point.p50Ms);
    }
    expect(stats.points.length).toBeLessThanOrEqual(30);
    expect(new Set(stats.breakers.map((b) => b.dependency))).toEqual(new Set(["order", "inventory", "payment", "oldshop", "catalog"]));
    expect(stats.breakers.filter((b) => b.dependency === "order").reduce((n, b) => n + b.calls, 0)).toBeGreaterThanOrEqual(6);
    expect(stats.breakers.every((b) => b.state === "closed")).toBe(true);
  });

  it("keeps spans another process sends over OTLP/HTTP with the trace token, and returns them by trace", async () => {
    const exporter = new OTLPTraceExporter({ url: `${gateway.operator.url}/v1/traces`, headers: { authorization: `Bearer ${testTraceToken}` } });
    const provider = new BasicTracerProvider({ resource: resourceFromAttributes({ "service.name": "payment" }), spanProcessors: [new SimpleSpanProcessor(exporter)] });
    const tracer = provider.getTracer("test");
    const root = tracer.startSpan("shop.payment.v1.PaymentService/Charge", { attributes: { "rpc.method": "Charge", "huge": "x".repeat(10_000) } });
    const child = tracer.startSpan("card-network", {}, trace.setSpan(context.active(), root));
    child.end();
    root.end();
    await provider.forceFlush();
    const traceId = root.spanContext().traceId;

    const { spans } = await eventually(() => ops.getTrace({ traceId }));
    expect(spans.map((s) => `${s.service}:${s.name}`)).toEqual(["payment:shop.payment.v1.PaymentService/Charge", "payment:card-network"]);
    expect(spans[1]!.parentSpanId).toBe(root.spanContext().spanId);
    expect(spans[0]!.parentSpanId).toBe("");
    expect(spans[0]!.attributes["rpc.method"]).toBe("Charge");
    expect(spans[0]!.attributes["huge"]!.length).toBeLessThanOrEqual(256);
    const { traces } = await ops.listTraces({});
    expect(traces.find((t) => t.traceId === traceId)).toMatchObject({ rootName: "shop.payment.v1.PaymentService/Charge", spanCount: 2, services: ["payment"] });
    await provider.shutdown();

    expect(await failure(ops.getTrace({ traceId: "0".repeat(31) + "1" }))).toMatchObject({ code: Code.NotFound });
    expect(await failure(ops.getTrace({ traceId: "not-hex" }))).toMatchObject({ code: Code.InvalidArgument, rawMessage: "trace_id: must be 32 hex digits" });
  });

  /**
   * Runs `work` with the gateway's telemetry sending its spans to the store in-process (DEV_TRACES
   * in-process). Every service of this in-process mesh records into the one provider; they all
   * name "gateway" here.
   */
  async function withInProcessTraces(work: () => Promise<void>) {
    const telemetry = await initTelemetry({ serviceName: "gateway", devTraces: "in-process" });
    try {
      await work();
    } finally {
      await telemetry.shutdown();
      trace.disable();
      context.disable();
      propagation.disable();
    }
  }

  /** Places an order through the public port and waits for its PlaceOrder trace to reach the store. */
  async function placedOrderTrace() {
    const isPlaceOrder = (t: TraceSummary) => t.rootName === "shop.gateway.v1.StorefrontService/PlaceOrder";
    const before = new Set((await ops.listTraces({ limit: 100 })).traces.filter(isPlaceOrder).map((t) => t.traceId));
    await shopper.placeOrder({ items: [{ sku: "MW-MUG-001", quantity: 1 }], paymentToken: "tok_visa", requestId: randomUUID() });
    const summary = await eventually(async () => {
      const found = (await ops.listTraces({ limit: 100 })).traces.find((t) => isPlaceOrder(t) && !before.has(t.traceId));
      expect(found).toBeDefined();
      return found!;
    }, 10_000);
    return { summary, spans: (await ops.getTrace({ traceId: summary.traceId })).spans };
  }

  it("keeps the gateway's own spans in-process, where telemetry sends them to the store (DEV_TRACES in-process)", async () => {
    await withInProcessTraces(async () => {
      const { summary: placed, spans } = await placedOrderTrace();
      expect(placed.services).toContain("gateway");
      expect(spans.map((s) => s.name)).toContain("shop.order.v1.OrderService/CreateOrder");
      expect(spans.length).toBe(placed.spanCount);
    });
  });

  it("records no span of the console's own calls, nor of the saga admin calls they make, so its polling evicts no order's trace", async () => {
    await withInProcessTraces(async () => {
      const id = await settledOrder();
      // What the page does every second or two, a few times over.
      for (let round = 0; round < 3; round++) {
        await ops.getStats({});
        await ops.listSagas({ view: SagaView.RUNNING });
        await ops.getSaga({ orderId: id });
        await ops.listDeadLetters({});
        await ops.listTraces({});
      }
      // Begun after them: once its spans are in the store, so is every span that ended before
      // (the batch processor exports in the order spans end).
      await placedOrderTrace();
      const { traces } = await ops.listTraces({ limit: 100 });
      const consoleCalls = /^shop\.(gateway\.v1\.OperatorService|order\.v1\.SagaAdminService)\//;
      expect(traces.filter((t) => consoleCalls.test(t.rootName))).toEqual([]);
      const spanNames = (await Promise.all(traces.map(async (t) => (await ops.getTrace({ traceId: t.traceId })).spans.map((s) => s.name)))).flat();
      expect(spanNames.filter((name) => consoleCalls.test(name))).toEqual([]);
    });
  });

  it("takes spans only with the trace token, only as OTLP/JSON, and at most 1 MiB", async () => {
    const post = (headers: Record<string, string>, body: string) => fetch(`${gateway.operator.url}/v1/traces`, { method: "POST", headers: { "content-type": "application/json", ...headers }, body });
    const traceId = "a".repeat(32);
    const body = JSON.stringify({ resourceSpans: [{ resource: { attributes: [{ key: "service.name", value: { stringValue: "intruder" } }] }, scopeSpans: [{ spans: [{ traceId, spanId: "b".repeat(16), name: "forged", startTimeUnixNano: "1", endTimeUnixNano: "2" }] }] }] });
    expect((await post({}, body)).status).toBe(401);
    expect((await post({ authorization: "Bearer wrong" }, body)).status).toBe(401);
    // An operator's token writes no spans, and the trace token calls no RPC.
    expect((await post({ authorization: `Bearer ${await testOperatorToken()}` }, body)).status).toBe(401);
    const withTraceToken = createClient(OperatorService, createConnectTransport({ baseUrl: gateway.operator.url, httpVersion: "1.1", interceptors: [bearer(testTraceToken)] }));
    expect(await failure(withTraceToken.listTraces({}))).toMatchObject({ code: Code.Unauthenticated });
    expect(await failure(ops.getTrace({ traceId }))).toMatchObject({ code: Code.NotFound });
    expect((await post({ authorization: `Bearer ${testTraceToken}`, "content-type": "application/x-protobuf" }, body)).status).toBe(415);
    expect((await post({ authorization: `Bearer ${testTraceToken}` }, "x".repeat(1024 * 1024 + 1))).status).toBe(413);
    expect((await post({ authorization: `Bearer ${testTraceToken}` }, body)).status).toBe(200);
    expect((await ops.getTrace({ traceId })).spans.map((s) => s.name)).toEqual(["forged"]);
  });

  it("fills a RUNNING page past the retrying sagas, reading on to the running ones", async () => {
    // No saga of the earlier tests still running: the four below are the only running ones.
    await eventually(async () => expect((await sql`select count(*)::int as n from orders.sagas where state = 'running'`)[0]!.n).toBe(0), 20_000);
    const ids = [await settledOrder(), await settledOrder(), await settledOrder(), await settledOrder()];
    const [retrying, running] = [ids.slice(0, 3), ids[3]!];
    // Held by another runner's lease, so no runner here takes them up.
    await sql`update orders.sagas set state = 'running', next_attempt_at = now() + interval '1 hour', lease_owner = 'elsewhere', lease_expires_at = now() + interval '1 hour' where aggregate_id in ${sql(retrying)}`;
    await sql`update orders.sagas set state = 'running', lease_owner = 'elsewhere', lease_expires_at = now() + interval '1 hour' where aggregate_id = ${running}`;
    try {
      // Oldest first: one admin page of one holds a retrying saga alone, three times over.
      const first = await ops.listSagas({ view: SagaView.RUNNING, pageSize: 1 });
      expect(first.sagas.map((s) => s.orderId)).toEqual([running]);
      // The last saga there is: nothing to page on to.
      expect(first.nextPageToken).toBe("");
      expect((await ops.listSagas({ view: SagaView.RETRYING, pageSize: 3 })).sagas.map((s) => s.orderId)).toEqual(retrying);
      expect(await failure(ops.listSagas({ view: SagaView.RUNNING, pageSize: 101 }))).toMatchObject({ code: Code.InvalidArgument, rawMessage: "page_size: must be from 0 to 100" });
    } finally {
      await sql`update orders.sagas set state = 'completed', next_attempt_at = null, lease_owner = null, lease_expires_at = null where aggregate_id in ${sql(ids)}`;
    }
  });

  it("answers FAILED_PRECONDITION, not the operator's UNAUTHENTICATED or PERMISSION_DENIED, when order refuses the console's certificate", async () => {
    // Inventory's certificate, from the same CA: order does not admit it to SagaAdminService.
    // No trace store of its own: it would take this process's spans from the other gateway's.
    const misconfigured = await startGateway(mesh, { operator: { ...testOperatorConfig(mesh), tls: mesh.pki.files("inventory"), traceIngestToken: undefined } });
    try {
      const client = createClient(OperatorService, createConnectTransport({ baseUrl: misconfigured.operator!.url, httpVersion: "1.1", interceptors: [bearer(await testOperatorToken("grace"))] }));
      const refused = { code: Code.FailedPrecondition, rawMessage: expect.stringMatching(/^order refused the console's certificate: /) };
      expect(await failure(client.listSagas({ view: SagaView.PARKED }))).toMatchObject(refused);
      expect(await failure(client.getSaga({ orderId: randomUUID() }))).toMatchObject(refused);
      expect(await failure(client.retrySaga({ orderId: randomUUID() }))).toMatchObject(refused);
      // The listener's own refusal of the operator is still UNAUTHENTICATED.
      const anonymous = createClient(OperatorService, createConnectTransport({ baseUrl: misconfigured.operator!.url, httpVersion: "1.1" }));
      expect(await failure(anonymous.listSagas({ view: SagaView.PARKED }))).toMatchObject({ code: Code.Unauthenticated });
    } finally {
      await misconfigured.close();
    }
  });
});
