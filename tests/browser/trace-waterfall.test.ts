import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import type { Browser } from "playwright-core";
import { OperatorService, type Span } from "#gen/shop/gateway/v1/operator_service_pb.js";
import { StorefrontService } from "#gen/shop/gateway/v1/storefront_service_pb.js";
import { SagaState } from "#gen/shop/order/v1/order_service_pb.js";
import { NotificationKind } from "#gen/shop/notification/v1/notification_service_pb.js";
import { eventually } from "../support/eventually.js";
import { bearer, testOperatorToken } from "../support/gateway.js";
import { startProcessMesh, type ProcessMesh } from "../support/process-mesh.js";
import { launchBrowser, newPage, screenshot } from "./browser.js";

const RELAYED = "shop.order.v1.OrderConfirmed";
/** The outbox relay's PRODUCER span and the event consumer's CONSUMER span (outbox-relay.ts, event-consumer.ts). */
const relaySpan = (s: Span) => s.service === "order" && s.name === `publish ${RELAYED}`;
const consumerSpan = (s: Span) => s.service === "notification" && s.name === `process ${RELAYED}`;

/**
 * One order's trace as the console draws it, with each service its own process exporting its
 * spans to the gateway's dev trace store, as under npm start: the waterfall shows the hops
 * from the gateway through order, inventory and payment, and on through order's outbox relay
 * and NATS to notification's consumer, each under its own service.name.
 */
describe("an order's trace across the mesh's processes", () => {
  let mesh: ProcessMesh;
  let browser: Browser;
  let operatorUrl: string;
  let token: string;

  beforeAll(async () => {
    mesh = await startProcessMesh({ operator: true });
    operatorUrl = mesh.operatorUrl!;
    browser = await launchBrowser();
    token = await testOperatorToken("grace");
  }, 120_000);
  afterAll(async () => {
    await browser?.close();
    await mesh?.stop();
  });

  it("draws the waterfall of a placed order, from the gateway to notification's consumer", async () => {
    const ops = createClient(OperatorService, createConnectTransport({ baseUrl: operatorUrl, httpVersion: "1.1", interceptors: [bearer(token)] }));
    const publicApi = (interceptors: Interceptor[] = []) => createClient(StorefrontService, createConnectTransport({ baseUrl: mesh.url("gateway"), httpVersion: "1.1", interceptors }));
    const customerId = `waterfall-${randomUUID()}`;
    const { token: customerToken } = await publicApi().issueDemoToken({ customerId });
    const { order } = await publicApi([bearer(customerToken)]).placeOrder({ items: [{ sku: "MW-MUG-001", quantity: 1 }], paymentToken: "tok_visa", requestId: randomUUID() });
    const orderId = order!.id;

    const saga = await eventually(async () => {
      const found = (await ops.getSaga({ orderId })).saga;
      expect(found?.state).toBe(SagaState.COMPLETED);
      return found!;
    }, 30_000);
    await eventually(async () => {
      const { notifications } = await mesh.notification.listNotifications({ customerId });
      expect(notifications.some((n) => n.orderId === orderId && n.kind === NotificationKind.ORDER_CONFIRMED)).toBe(true);
    }, 20_000);
    // The saga ran in the trace of the request that placed the order: its attempts name it.
    const traceIds = new Set(saga.steps.flatMap((step) => step.phases.map((p) => p.traceId)).filter(Boolean));
    expect(traceIds.size).toBe(1);
    const [traceId] = traceIds as Set<string>;

    // Each process sends its spans in batches about a second apart: wait until the consumer's
    // has arrived, and then until a further batch's wait adds none.
    let spans: Span[] = [];
    await eventually(async () => {
      const before = spans.length;
      spans = (await ops.getTrace({ traceId })).spans;
      expect(spans.some(consumerSpan)).toBe(true);
      expect(spans.length).toBe(before);
    }, 20_000, 1_500);
    expect((await ops.listTraces({ limit: 100 })).traces.find((t) => t.traceId === traceId)?.rootName).toBe("shop.gateway.v1.StorefrontService/PlaceOrder");

    // Across processes: the consumer's span is a child of the relay's, whose context crossed NATS in the event's headers.
    const relay = spans.find(relaySpan);
    expect(relay).toBeDefined();
    expect(spans.find(consumerSpan)?.parentSpanId).toBe(relay!.spanId);

    const { page, errors } = await newPage(browser);
    await page.goto(`${operatorUrl}/#operator-token=${encodeURIComponent(token)}`);
    await page.locator("#operator-who", { hasText: "signed in" }).waitFor();
    // The trace list is loaded at once and then every 5 s.
    await page.locator(`#trace-list button[data-trace-id="${traceId}"]`).click({ timeout: 10_000 });
    const waterfall = page.locator(`#trace-waterfall[data-trace-id="${traceId}"]`);
    await waterfall.waitFor({ timeout: 10_000 });

    const rows = waterfall.locator(".span");
    expect(await rows.count()).toBe(spans.length);
    expect(await waterfall.locator(".span-count").textContent()).toBe(`${spans.length} spans`);
    const shown = await rows.evaluateAll((all) => all.map((r) => ({ service: r.getAttribute("data-service"), name: r.querySelector(".wf-name")?.textContent ?? "", title: r.getAttribute("title") ?? "" })));
    expect([...new Set(shown.map((r) => r.service))]).toEqual(expect.arrayContaining(["gateway", "order", "inventory", "payment", "notification"]));
    const producerRow = shown.find((r) => r.service === "order" && r.name.endsWith(`publish ${RELAYED}`));
    const consumerRow = shown.find((r) => r.service === "notification" && r.name.endsWith(`process ${RELAYED}`));
    expect(producerRow?.title).toContain(`messaging.destination.name=${RELAYED}`);
    expect(consumerRow?.title).toContain("messaging.system=nats");
    expect(await waterfall.locator(".span[data-depth='0']").count()).toBe(1);
    expect(errors).toEqual([]);
    await screenshot(page, "trace-waterfall-processes");
    await page.close();
  }, 120_000);
});
