import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import type { Browser, BrowserContext, Page } from "playwright-core";
import { OperatorService } from "#gen/shop/gateway/v1/operator_service_pb.js";
import { OrderService, SagaState } from "#gen/shop/order/v1/order_service_pb.js";
import { StorefrontService } from "#gen/shop/gateway/v1/storefront_service_pb.js";
import { connectBus } from "#platform/messaging/connection.js";
import { toHeaders } from "#platform/messaging/event-headers.js";
import { initTelemetry } from "#platform/process/telemetry.js";
import { connect } from "../support/databases.js";
import { eventually } from "../support/eventually.js";
import { bearer, startGateway, startGatewayWithOperator, testOperatorConfig, testOperatorToken } from "../support/gateway.js";
import { startInProcessMesh, type InProcessMesh } from "../support/services.js";
import { silentLogger } from "../support/silent-logger.js";
import { launchBrowser, newPage, screenshot } from "./browser.js";
import { placeWithRetriedCharge } from "./retried-charge.js";

/**
 * Spans into the gateway's dev trace store, as under npm start. The services here share this
 * process, and so its one service.name: the waterfall shows one colour, but every span.
 */
const telemetry = await initTelemetry({ serviceName: "meshwork-test", devTraces: "in-process" });

/** The operator console on the gateway's operator listener, in Debian's Chromium. */
describe("the operator console", () => {
  let mesh: InProcessMesh;
  let gateway: Awaited<ReturnType<typeof startGatewayWithOperator>>;
  let browser: Browser;
  let sql: ReturnType<typeof connect>;
  let token: string;
  const orders = () => mesh.client(OrderService, "order");
  const operatorApi = () => createClient(OperatorService, createConnectTransport({ baseUrl: gateway.operator.url, httpVersion: "1.1", interceptors: [bearer(token)] }));

  /** A customer's storefront client on the public port, as the customers' console is, so the gateway's stats and traces see its calls. */
  async function customerStorefront() {
    const anonymous = createClient(StorefrontService, createConnectTransport({ baseUrl: gateway.url, httpVersion: "1.1" }));
    const { token: customer } = await anonymous.issueDemoToken({ customerId: "ops-customer" });
    return createClient(StorefrontService, createConnectTransport({ baseUrl: gateway.url, httpVersion: "1.1", interceptors: [bearer(customer)] }));
  }
  async function placeOrders(count: number, paymentToken = "tok_visa"): Promise<string[]> {
    const storefront = await customerStorefront();
    const ids: string[] = [];
    for (let i = 0; i < count; i++) ids.push((await storefront.placeOrder({ items: [{ sku: "MW-MUG-001", quantity: 1 }], paymentToken, requestId: randomUUID() })).order!.id);
    return ids;
  }
  const settled = (orderId: string) =>
    eventually(async () => {
      const { saga } = await orders().getOrder({ orderId });
      expect([SagaState.COMPLETED, SagaState.COMPENSATED]).toContain(saga?.state);
      return saga!;
    }, 20_000);

  /** A page that also records what the content security policy refused: the console must work under it. */
  async function openPage(context?: BrowserContext): Promise<{ page: Page; errors: string[] }> {
    const opened = context ? { page: await context.newPage(), errors: [] as string[] } : await newPage(browser);
    if (context) opened.page.on("pageerror", (err) => opened.errors.push(err.message));
    opened.page.on("console", (message) => {
      if (/Content Security Policy/.test(message.text())) opened.errors.push(message.text());
    });
    return opened;
  }

  async function signedIn(): Promise<{ page: Page; errors: string[] }> {
    const opened = await openPage();
    await opened.page.goto(`${gateway.operator.url}/#operator-token=${encodeURIComponent(token)}`);
    await opened.page.locator("#operator-who", { hasText: "signed in" }).waitFor();
    return opened;
  }

  /** Confirms the page's dialog, with a reason if it asks for one. */
  async function confirmDialog(page: Page, reason?: string) {
    await page.locator("#confirm-dialog[open]").waitFor();
    if (reason !== undefined) await page.fill("#confirm-reason", reason);
    await page.click("#confirm-ok");
    await page.locator("#confirm-dialog[open]").waitFor({ state: "detached" });
  }

  beforeAll(async () => {
    mesh = await startInProcessMesh();
    gateway = await startGatewayWithOperator(mesh);
    browser = await launchBrowser();
    sql = connect(mesh.databaseUrl);
    token = await testOperatorToken("grace");
  });
  afterAll(async () => {
    await browser?.close();
    await sql?.end();
    await gateway?.close();
    await mesh?.close();
    await telemetry.shutdown();
  });

  it("asks for an operator sign-in without a token, and the public port serves no operator page", async () => {
    const { page, errors } = await openPage();
    await page.goto(gateway.operator.url);
    await page.locator("#signin-required").waitFor();
    expect(await page.locator("#signin-heading").textContent()).toBe("Operator sign-in required");
    expect(await page.locator("#operator-console").isHidden()).toBe(true);
    // A customer's demo token is no operator's.
    const anonymous = createClient(StorefrontService, createConnectTransport({ baseUrl: gateway.url, httpVersion: "1.1" }));
    const { token: demo } = await anonymous.issueDemoToken({ customerId: "mallory" });
    await page.goto(`${gateway.operator.url}/#operator-token=${demo}`);
    await page.locator("#signin-reason", { hasText: "refused" }).waitFor();
    expect(page.url()).not.toContain(demo);
    expect((await fetch(`${gateway.url}/operator.js`)).status).toBe(404);
    await screenshot(page, "operator-signin-required");
    expect(errors).toEqual([]);
  });

  it("takes a token link with a malformed escape to the sign-in, the page still working", async () => {
    const { page, errors } = await openPage();
    await page.goto(`${gateway.operator.url}/#operator-token=%E0%A4%A`);
    await page.locator("#signin-reason", { hasText: "refused" }).waitFor();
    expect(page.url()).not.toContain("operator-token");
    expect(errors).toEqual([]);
  });

  it("opens without a token for a browser holding the operator's client certificate, and asks one without it to sign in", async () => {
    // No trace store of its own: it would take this process's spans from the other gateway's.
    const tls = await startGateway(mesh, { operator: { ...testOperatorConfig(mesh), serveTls: true, traceIngestToken: undefined } });
    const url = tls.operator!.url;
    const withCertificate = await browser.newContext({ ignoreHTTPSErrors: true, clientCertificates: [{ origin: new URL(url).origin, certPath: mesh.pki.operator.certFile, keyPath: mesh.pki.operator.keyFile }] });
    const without = await browser.newContext({ ignoreHTTPSErrors: true });
    try {
      const { page, errors } = await openPage(withCertificate);
      await page.goto(url);
      await page.locator("#operator-who", { hasText: "operator certificate" }).waitFor();
      expect(await page.locator("#signin-required").isHidden()).toBe(true);
      expect(await page.locator("#sign-out").isHidden()).toBe(true);
      await page.locator("#stats-updated", { hasText: "updated" }).waitFor();
      await page.locator("#saga-table, #saga-list .empty").first().waitFor();
      expect(errors).toEqual([]);

      const anonymous = await openPage(without);
      await anonymous.page.goto(url);
      await anonymous.page.locator("#signin-required").waitFor();
      expect(await anonymous.page.locator("#operator-console").isHidden()).toBe(true);
      expect(anonymous.errors).toEqual([]);
    } finally {
      await withCertificate.close();
      await without.close();
      await tls.close();
    }
  });

  it("charts orders per second with p50 and p99, errors per second, and each breaker over time", async () => {
    await placeOrders(5);
    // And one the gateway refuses, for the errors chart.
    await expect((await customerStorefront()).placeOrder({ items: [], paymentToken: "tok_visa", requestId: randomUUID() })).rejects.toMatchObject({ code: Code.InvalidArgument });
    const { page, errors } = await signedIn();
    // The address bar keeps no token once the page has it.
    expect(page.url()).not.toContain("operator-token");
    // GetStats is each gateway replica's own traffic.
    expect(await page.locator("#charts-heading").textContent()).toContain("this gateway replica");
    const points = async (chart: string) => Number((await page.locator(chart).getAttribute("data-points")) ?? 0);
    await eventually(async () => expect(await points("#chart-orders")).toBeGreaterThan(0), 10_000);
    expect(await points("#chart-errors")).toBeGreaterThan(0);
    expect(await page.locator("#chart-orders canvas").count()).toBeGreaterThan(0);
    expect(await page.locator("#chart-orders .u-legend").textContent()).toContain("p99 (ms)");
    await page.locator("#chart-errors .u-legend", { hasText: "invalid_argument" }).waitFor({ timeout: 10_000 });
    // The chart shows what GetStats has: seconds in which orders were placed.
    const { points: stats, breakers } = await operatorApi().getStats({ windowSeconds: 300 });
    expect(stats.some((p) => p.ordersPerSecond > 0)).toBe(true);
    await page.locator("#breakers .breaker").first().waitFor();
    const dependencies = await page.locator("#breakers .breaker").evaluateAll((els) => els.map((e) => e.getAttribute("data-dependency")));
    expect(dependencies).toEqual([...new Set(breakers.map((b) => b.dependency))].sort());
    expect(dependencies).toContain("order");
    expect(await page.locator('#breakers .breaker[data-dependency="order"] .run').count()).toBeGreaterThan(0);
    await screenshot(page, "operator-charts");
    expect(errors).toEqual([]);
  });

  it("shows a saga's timeline with each attempt's error and backoff, and opens an attempt's trace as a waterfall", async () => {
    const orderId = await placeWithRetriedCharge(sql, orders(), async () => (await placeOrders(1))[0]!);
    const saga = await settled(orderId);
    const attempts = saga.steps.find((s) => s.name === "charge")!.phases.filter((p) => p.attempt > 0);
    expect(attempts.length).toBeGreaterThanOrEqual(2);

    const { page, errors } = await signedIn();
    await page.fill("#open-saga-id", orderId);
    await page.click("#open-saga button[type=submit]");
    const charge = page.locator('#saga-detail .tl-row[data-step="charge"][data-section=forward]');
    await charge.locator(".phase[data-kind=attempt]").first().waitFor();
    expect(await charge.locator(".phase[data-kind=attempt]").count()).toBe(attempts.length);
    // The failed attempt's error inline and in its bar's tooltip, with its backoff.
    const failed = attempts[0]!;
    expect(failed.outcome).toBe("retrying");
    expect(await charge.locator(".phase-error").first().textContent()).toContain(failed.error);
    expect(await charge.locator(".phase[data-attempt='1']").getAttribute("title")).toContain(failed.error);
    expect(await charge.locator(".tl-details").textContent()).toContain("backoff");
    await screenshot(page, "operator-saga-timeline");

    // Its trace: the attempt's link opens the waterfall of that trace.
    const traced = attempts.find((p) => p.traceId)!;
    await charge.locator(`.trace-link[data-trace-id="${traced.traceId}"]`).first().click();
    await page.locator(`#trace-waterfall[data-trace-id="${traced.traceId}"]`).waitFor();
    const { spans } = await operatorApi().getTrace({ traceId: traced.traceId });
    expect(spans.length).toBeGreaterThan(1);
    expect(await page.locator("#trace-waterfall .span").count()).toBe(spans.length);
    expect(await page.locator("#trace-waterfall .span-count").textContent()).toBe(`${spans.length} spans`);
    const services = [...new Set(spans.map((s) => s.service))];
    expect(await page.locator("#trace-waterfall .legend li").count()).toBe(services.length);
    await screenshot(page, "operator-trace-waterfall");
    expect(errors).toEqual([]);
  });

  it("lists recent traces and draws a placed order's trace across the services the store has", async () => {
    const [orderId] = await placeOrders(1);
    await settled(orderId!);
    const { page, errors } = await signedIn();
    const { traces } = await eventually(async () => {
      const listed = await operatorApi().listTraces({ limit: 30 });
      expect(listed.traces.some((t) => t.rootName.endsWith("StorefrontService/PlaceOrder"))).toBe(true);
      return listed;
    });
    const placed = traces.find((t) => t.rootName.endsWith("StorefrontService/PlaceOrder"))!;
    const link = page.locator(`#trace-list button[data-trace-id="${placed.traceId}"]`);
    await link.waitFor({ timeout: 10_000 });
    await link.click();
    await page.locator(`#trace-waterfall[data-trace-id="${placed.traceId}"]`).waitFor();
    const { spans } = await operatorApi().getTrace({ traceId: placed.traceId });
    expect(await page.locator("#trace-waterfall .span").count()).toBe(spans.length);
    const shown = await page.locator("#trace-waterfall .span").evaluateAll((rows) => [...new Set(rows.map((r) => r.getAttribute("data-service")))].sort());
    expect(shown).toEqual([...new Set(spans.map((s) => s.service))].sort());
    // The root first, unindented; every other span under its parent.
    expect(await page.locator("#trace-waterfall .span").first().getAttribute("data-depth")).toBe("0");
    expect(await page.locator("#trace-waterfall .span[data-depth='0']").count()).toBeLessThan(spans.length);
    await screenshot(page, "operator-trace-list");
    expect(errors).toEqual([]);
  });

  it("unparks a parked saga with the Retry action, confirmed in a dialog", async () => {
    const [orderId] = await placeOrders(1);
    await settled(orderId!);
    // What a definitive failure of the last step leaves: the saga parked, the step failed.
    await sql`update orders.sagas set state = 'parked', last_error = 'commit-reservation: [failed_precondition] no' where aggregate_id = ${orderId!}`;
    await sql`update orders.saga_steps set state = 'failed' where name = 'commit-reservation' and saga_id = (select id from orders.sagas where aggregate_id = ${orderId!})`;

    const { page, errors } = await signedIn();
    await page.click('#saga-views [data-view="parked"]');
    const parked = page.locator(`#saga-table tr[data-order-id="${orderId}"]`);
    await parked.waitFor();
    expect(await parked.textContent()).toContain("[failed_precondition] no");
    // Cancelling the dialog does nothing.
    await parked.locator("[data-action=retry]").click();
    await page.locator("#confirm-dialog[open]").waitFor();
    await page.click("#confirm-cancel");
    expect((await orders().getOrder({ orderId: orderId! })).saga?.state).toBe(SagaState.PARKED);

    await parked.locator("[data-action=retry]").click();
    await screenshot(page, "operator-retry-dialog");
    await confirmDialog(page);
    await page.locator("#action-outcome", { hasText: "Retry accepted" }).waitFor();
    await eventually(async () => expect((await orders().getOrder({ orderId: orderId! })).saga?.state).toBe(SagaState.COMPLETED));
    await page.locator("#saga-detail .saga[data-state=completed]").waitFor({ timeout: 10_000 });
    await parked.waitFor({ state: "detached", timeout: 10_000 });
    const [audit] = await sql`select actor, outcome from orders.saga_audit where order_id = ${orderId!} and action = 'retry'`;
    expect(audit?.["outcome"]).toBe("accepted");
    // The console's backend calls as spiffe://meshwork/console, for the operator it names.
    expect(String(audit?.["actor"])).toMatch(/^grace \(console\)@/);
    await screenshot(page, "operator-retried");
    expect(errors).toEqual([]);
  });

  it("lists a 3-D Secure order waiting for its customer, and compensates it with a reason, the timeline following live", async () => {
    const [orderId] = await placeOrders(1, "tok_3ds");
    await eventually(async () => expect((await orders().getOrder({ orderId: orderId! })).saga?.state).toBe(SagaState.WAITING));
    const { page, errors } = await signedIn();
    await page.click('#saga-views [data-view="waiting"]');
    const waiting = page.locator(`#saga-table tr[data-order-id="${orderId}"]`);
    await waiting.waitFor();
    await waiting.locator("[data-action=show]").click();
    const wait = page.locator('#saga-detail .tl-row[data-step="charge"] .phase.open[data-kind=signal]');
    await wait.waitFor();
    expect(await page.locator('#saga-detail .tl-row[data-step="charge"] .tl-wait').textContent()).toContain("waiting for payment-confirmed");
    await screenshot(page, "operator-saga-waiting");

    await waiting.locator("[data-action=compensate]").click();
    await confirmDialog(page, "customer called to cancel");
    await page.locator("#action-outcome", { hasText: "Compensation accepted" }).waitFor();
    // The timeline moves on by itself (WatchSaga): the wait ends, the reservation is undone.
    await page.locator('#saga-detail .saga[data-state=compensated] .tl-row[data-step="reserve-stock"][data-section=compensation] .phase[data-kind=compensation]').first().waitFor({ timeout: 15_000 });
    expect(await page.locator('#saga-detail .tl-row[data-step="charge"] .phase.open').count()).toBe(0);
    const { order } = await orders().getOrder({ orderId: orderId! });
    expect(order?.cancelReason).toContain("customer called to cancel");
    const [audit] = await sql`select outcome from orders.saga_audit where order_id = ${orderId!} and action = 'compensate'`;
    expect(audit?.["outcome"]).toBe("accepted");
    await screenshot(page, "operator-compensated");
    expect(errors).toEqual([]);
  });

  it("replays a dead letter: it leaves the list, and its event goes back to its consumer", async () => {
    // An OrderConfirmed whose payload cannot be decoded: notification dead-letters it at once.
    const bus = connectBus({ url: mesh.nats.url, name: "operator-console-test", logger: silentLogger });
    const eventId = randomUUID();
    try {
      const { js } = await bus.ready;
      await js.publish("shop.order.v1.OrderConfirmed", new Uint8Array([0x0a, 0xff, 0xff, 0xff]), { headers: toHeaders({ id: eventId, type: "shop.order.v1.OrderConfirmed", source: "test", time: new Date() }), msgID: eventId });
    } finally {
      await bus.close();
    }
    const lettersOf = async () => (await operatorApi().listDeadLetters({})).deadLetters.filter((d) => d.eventId === eventId);
    const [letter] = await eventually(async () => {
      const found = await lettersOf();
      expect(found).toHaveLength(1);
      return found;
    });

    const { page, errors } = await signedIn();
    const listed = page.locator(`#dead-letter-table tr[data-sequence="${letter!.sequence}"]`);
    await listed.waitFor();
    expect(await listed.textContent()).toContain("shop.order.v1.OrderConfirmed");
    expect(await listed.textContent()).toContain("undecodable shop.order.v1.OrderConfirmed payload");
    expect(await listed.getAttribute("data-event-id")).toBe(eventId);
    await screenshot(page, "operator-dead-letters");
    await listed.locator("[data-action=replay]").click();
    await confirmDialog(page);
    await page.locator("#action-outcome", { hasText: `Replayed dead letter ${letter!.sequence}` }).waitFor();
    await listed.waitFor({ state: "detached" });
    // Replayed to its subject with its id: the consumer had it again (and, as it still cannot
    // be decoded, dead-lettered it anew, under a new sequence).
    const again = await eventually(async () => {
      const found = await lettersOf();
      expect(found).toHaveLength(1);
      expect(found[0]!.sequence).not.toBe(letter!.sequence);
      return found[0]!;
    });
    await page.locator(`#dead-letter-table tr[data-sequence="${again.sequence}"]`).waitFor({ timeout: 10_000 });
    await screenshot(page, "operator-dead-letter-replayed");
    expect(errors).toEqual([]);
  });
});
