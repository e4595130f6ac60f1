import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Browser, Page } from "playwright-core";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { StorefrontService } from "#gen/shop/gateway/v1/storefront_service_pb.js";
import { OrderService, type SagaStatus } from "#gen/shop/order/v1/order_service_pb.js";
import { initTelemetry } from "#platform/process/telemetry.js";
import type { GatewayServer } from "#gateway/src/build.js";
import { connect } from "../support/databases.js";
import { bearer, startGateway } from "../support/gateway.js";
import { startInProcessMesh, type InProcessMesh } from "../support/services.js";
import { launchBrowser, newPage, screenshot } from "./browser.js";
import { placeWithRetriedCharge } from "./retried-charge.js";

/** Tracing on, as under npm start, so the operator's saga carries trace ids this page must not show. */
const telemetry = await initTelemetry({ serviceName: "meshwork-test" });

/** The customer's console in Debian's Chromium, against the page and script the gateway serves. */
describe("the customer's console", () => {
  let mesh: InProcessMesh;
  let gateway: GatewayServer;
  let browser: Browser;
  let sql: ReturnType<typeof connect>;
  /** The saga as the operator sees it, errors and trace ids included: what the customer's page must not show. */
  const operatorSaga = async (orderId: string): Promise<SagaStatus> => (await mesh.client(OrderService, "order").getOrder({ orderId })).saga!;

  beforeAll(async () => {
    mesh = await startInProcessMesh();
    gateway = await startGateway(mesh);
    browser = await launchBrowser();
    sql = connect(mesh.databaseUrl);
  });
  afterAll(async () => {
    await browser?.close();
    await sql?.end();
    await gateway?.close();
    await mesh?.close();
    await telemetry.shutdown();
  });

  async function signedIn(customer: string): Promise<{ page: Page; errors: string[] }> {
    const opened = await newPage(browser);
    await opened.page.goto(gateway.url);
    await opened.page.locator("#health .SERVING").first().waitFor({ timeout: 15_000 });
    await opened.page.fill("#customer", customer);
    await opened.page.click("#login");
    await opened.page.locator("#who", { hasText: `signed in as ${customer}` }).waitFor();
    return opened;
  }

  /**
   * Places an order for one mug and returns its id, as the page shows it: a new id, not the
   * one on screen before (a loaded host can answer PlaceOrder after the page is first read).
   */
  async function place(page: Page, paymentToken: string): Promise<string> {
    const before = await page.locator("#watched").textContent();
    await page.locator('#products input[data-sku="MW-MUG-001"]').fill("1");
    await page.selectOption("#token", paymentToken);
    await page.click("#place");
    const shown = await page.waitForFunction((previous) => {
      const id = document.querySelector("#watched")?.textContent ?? "";
      return /^[0-9a-f-]{36}$/.test(id) && id !== previous && id;
    }, before);
    return (await shown.jsonValue()) as string;
  }

  /** My orders' row for an order, as text: the list is redrawn on every read, so a row element matched one moment can be replaced the next. */
  const ordersRow = async (page: Page, orderId: string) => (await page.locator("#orders").innerText()).split("\n").find((line) => line.startsWith(orderId.slice(0, 8))) ?? "";

  const settled = (page: Page, status: "CONFIRMED" | "CANCELLED") => page.locator("#watch-status", { hasText: `ORDER_STATUS_${status}` }).waitFor({ timeout: 20_000 });
  const row = (page: Page, step: string, section: "forward" | "compensation" = "forward") => page.locator(`#timeline .tl-row[data-step="${step}"][data-section=${section}]`);

  it("signs in, places an order, and follows its saga as a timeline to CONFIRMED", async () => {
    const { page, errors } = await signedIn("grace");
    // Probes of a loaded host can time out: the line is read again every 5 s.
    await page.locator("#health", { hasText: "All services are up." }).waitFor({ timeout: 20_000 });
    await place(page, "tok_visa");
    await settled(page, "CONFIRMED");
    await row(page, "commit-reservation").locator(".phase[data-kind=attempt][data-outcome=succeeded]").waitFor();
    const steps = await page.locator("#timeline .tl-row[data-section=forward]").evaluateAll((rows) => rows.map((r) => `${r.getAttribute("data-step")}:${r.getAttribute("data-state")}`));
    expect(steps).toEqual(["reserve-stock:succeeded", "charge:succeeded", "confirm-order:succeeded", "commit-reservation:succeeded"]);
    expect(await page.locator("#timeline .phase[data-kind=attempt]").count()).toBe(4);
    expect(await page.locator("#timeline .phase[data-kind=compensation]").count()).toBe(0);
    expect(await page.locator("#progress li").count()).toBeGreaterThan(1);
    await page.locator("#orders td.status-ORDER_STATUS_CONFIRMED").first().waitFor();
    // Breakers and their failure counts are the operator's: not on this page.
    expect(await page.locator("#breakers, .breaker").count()).toBe(0);
    expect(await page.locator("#error").textContent()).toBe("");
    await screenshot(page, "console-confirmed");
    expect(errors).toEqual([]);
  });

  it("shows a declined order's compensation: reserve-stock undone, in a row below the steps", async () => {
    const { page, errors } = await signedIn("linus");
    const orderId = await place(page, "tok_decline");
    await settled(page, "CANCELLED");
    await row(page, "reserve-stock", "compensation").locator(".phase[data-kind=compensation][data-outcome=succeeded]").waitFor();
    expect(await row(page, "charge").locator(".phase[data-kind=attempt]").getAttribute("data-outcome")).toBe("failed");
    expect(await row(page, "reserve-stock").getAttribute("data-state")).toBe("compensated");
    // Below every step's own row: compensation runs after, in reverse.
    const sections = await page.locator("#timeline .tl-row[data-step]").evaluateAll((rows) => rows.map((r) => r.getAttribute("data-section")));
    expect(sections.indexOf("compensation")).toBeGreaterThan(sections.lastIndexOf("forward"));
    // The timeline names no attempt's error, though the operator's saga has the decline's; the
    // customer learns why from the order's own cancel reason, in My orders.
    const saga = await operatorSaga(orderId);
    const declined = saga.steps.find((s) => s.name === "charge")!.phases.find((p) => p.outcome === "failed")!;
    expect(declined.error).toMatch(/card_declined/);
    expect(await page.locator("#timeline").innerHTML()).not.toContain(declined.error);
    expect(await page.locator("#timeline .phase-error, #timeline .tl-details").count()).toBe(0);
    await screenshot(page, "console-declined");
    // Another order, then back to this one from My orders: its timeline again, the list current.
    const next = await place(page, "tok_visa");
    expect(next).not.toBe(orderId);
    await settled(page, "CONFIRMED");
    await expect.poll(() => ordersRow(page, next), { timeout: 15_000 }).toContain("ORDER_STATUS_CONFIRMED");
    expect(await ordersRow(page, orderId)).toContain("ORDER_STATUS_CANCELLED");
    await page.locator(`#orders button[data-order-id="${orderId}"]`).click();
    await page.locator("#watched", { hasText: orderId }).waitFor();
    await settled(page, "CANCELLED");
    await row(page, "reserve-stock", "compensation").locator(".phase[data-kind=compensation]").first().waitFor();
    expect(errors).toEqual([]);
  });

  it("says when My orders cannot be refreshed (rate limited), keeps the list, retries with a growing wait, and catches up on its own", async () => {
    const { page, errors } = await signedIn("barbara");
    // The customer orders elsewhere (another tab): only My orders' own reads can show these,
    // no watch on this page adds any.
    const anonymous = createClient(StorefrontService, createConnectTransport({ baseUrl: gateway.url, httpVersion: "1.1" }));
    const { token } = await anonymous.issueDemoToken({ customerId: "barbara" });
    const elsewhere = createClient(StorefrontService, createConnectTransport({ baseUrl: gateway.url, httpVersion: "1.1", interceptors: [bearer(token)] }));
    const placeElsewhere = async () => (await elsewhere.placeOrder({ items: [{ sku: "MW-MUG-001", quantity: 1 }], paymentToken: "tok_visa", requestId: randomUUID() })).order!.id;
    const first = await placeElsewhere();
    await expect.poll(() => ordersRow(page, first), { timeout: 15_000 }).toContain("ORDER_STATUS_CONFIRMED");

    // Every read of My orders refused, as the gateway's per-client rate limit answers one.
    const refused: number[] = [];
    const isListMyOrders = (url: URL) => url.pathname.endsWith("/shop.gateway.v1.StorefrontService/ListMyOrders");
    await page.route(isListMyOrders, (route) => {
      refused.push(Date.now());
      return route.fulfill({ status: 429, contentType: "application/json", body: JSON.stringify({ code: "resource_exhausted", message: "rate limit of 5 calls per second exceeded; retry shortly" }) });
    });
    const second = await placeElsewhere();

    // The 5 s round meets the limit, then each retry waits longer: 1 s, 2 s, 4 s.
    const status = page.locator("#orders-status");
    await status.filter({ hasText: "Trying again in 4 s." }).waitFor({ timeout: 15_000 });
    expect(await status.textContent()).toMatch(/^My orders could not be refreshed: rate limit of 5 calls per second exceeded; retry shortly\. Trying again in 4 s\. The list shows them as of \d\d:\d\d:\d\d\.$/);
    expect(refused.length).toBeGreaterThanOrEqual(3);
    expect(refused[1]! - refused[0]!).toBeGreaterThanOrEqual(900);
    expect(refused[2]! - refused[1]!).toBeGreaterThanOrEqual(1_900);
    // The list as last read, not emptied: the first order, not yet the second.
    expect(await ordersRow(page, first)).toContain("ORDER_STATUS_CONFIRMED");
    expect(await ordersRow(page, second)).toBe("");
    await screenshot(page, "console-orders-rate-limited");

    // The limit lifts: the next retry reads the list, the second order included, and the message goes.
    await page.unroute(isListMyOrders);
    await expect.poll(() => ordersRow(page, second), { timeout: 20_000 }).toContain("ORDER_STATUS_CONFIRMED");
    expect(await status.textContent()).toBe("");
    expect(await page.locator("#error").textContent()).toBe("");
    expect(errors).toEqual([]);
  });

  it("draws a bar per attempt of a step that retried, with the backoff between them, and no error text or trace id", async () => {
    const { page, errors } = await signedIn("ada");
    const orderId = await placeWithRetriedCharge(sql, mesh.client(OrderService, "order"), () => place(page, "tok_visa"));
    await settled(page, "CONFIRMED");
    const saga = await operatorSaga(orderId);
    const charge = saga.steps.find((s) => s.name === "charge")!;
    const attempts = charge.phases.filter((p) => p.attempt > 0);
    expect(attempts.length).toBeGreaterThanOrEqual(2);
    await row(page, "commit-reservation").locator(".phase[data-outcome=succeeded]").waitFor();
    const bars = row(page, "charge").locator(".phase[data-kind=attempt]");
    expect(await bars.count()).toBe(attempts.length);
    expect(await bars.evaluateAll((els) => els.map((e) => e.getAttribute("data-outcome")))).toEqual(attempts.map((p) => p.outcome));
    expect(await bars.first().getAttribute("data-outcome")).toBe("retrying");
    expect(await row(page, "charge").locator(".backoff").count()).toBe(attempts.length - 1);

    // What the operator sees and the customer must not: the attempt's error and its trace.
    const failedAttempt = attempts[0]!;
    expect(failedAttempt.error).not.toBe("");
    const html = await page.content();
    expect(html).not.toContain(failedAttempt.error);
    for (const phase of attempts) {
      expect(phase.traceId).toMatch(/^[0-9a-f]{32}$/);
      expect(html).not.toContain(phase.traceId);
    }
    expect(html).not.toMatch(/\b[0-9a-f]{32}\b/);
    expect(await page.locator("#timeline .phase-error, #timeline .trace-link, #timeline .tl-details").count()).toBe(0);
    await screenshot(page, "console-retried");
    expect(errors).toEqual([]);
  });

  /** WatchOrder streams the gateway has open, by its own gauge. */
  const openWatches = async () => Number(/^watch_order_streams(?:\{[^}]*\})? (\d+)$/m.exec(await (await fetch(`${gateway.ops.url}/metrics`)).text())?.[1]);

  it("tok_3ds: shows the charge waiting for the customer and a Confirm payment button that confirms the order", async () => {
    const { page, errors } = await signedIn("hopper");
    const orderId = await place(page, "tok_3ds");
    const wait = row(page, "charge").locator(".phase.open[data-kind=signal]");
    await wait.waitFor({ timeout: 15_000 });
    await page.locator("#confirm-payment-button").waitFor({ state: "visible" });
    expect(await row(page, "charge").locator(".tl-wait").textContent()).toContain("waiting for payment-confirmed");
    expect(await page.locator("#watch-status").textContent()).toBe("ORDER_STATUS_PENDING");
    // The wait grows while the page looks at it.
    // Read in one go in the page: the timeline is redrawn every second.
    const width = () => page.evaluate(() => document.querySelector('#timeline .tl-row[data-step="charge"] .phase.open[data-kind=signal]')?.getBoundingClientRect().width ?? 0);
    const before = await width();
    await page.waitForTimeout(2_200);
    expect(await width()).toBeGreaterThan(before);
    await screenshot(page, "console-3ds-waiting");

    // One watch at a time: the page holds this order's (the earlier tests' orders have all
    // ended theirs), and following another order closes it, though this one still waits.
    expect(await openWatches()).toBe(1);
    await place(page, "tok_visa");
    await settled(page, "CONFIRMED");
    await expect.poll(openWatches, { timeout: 10_000 }).toBe(0);
    // Back to the waiting order from My orders: its wait and the button again.
    await page.locator(`#orders button[data-order-id="${orderId}"]`).click();
    await page.locator("#watched", { hasText: orderId }).waitFor();
    await page.locator("#confirm-payment-button").waitFor({ state: "visible" });
    expect(await openWatches()).toBe(1);

    await page.click("#confirm-payment-button");
    await settled(page, "CONFIRMED");
    await row(page, "charge").locator(".phase[data-kind=signal][data-outcome=signalled]").waitFor();
    await page.locator("#confirm-payment").waitFor({ state: "hidden" });
    await screenshot(page, "console-3ds-confirmed");
    expect(errors).toEqual([]);
  });

  const isRpc = (method: string) => (url: URL) => url.pathname.endsWith(`/shop.gateway.v1.StorefrontService/${method}`);
  /** One Connect envelope: its flags (0 a message, 2 the end of the stream) and its JSON. */
  const envelope = (flags: number, value: unknown) => {
    const json = Buffer.from(JSON.stringify(value));
    const head = Buffer.alloc(5);
    head.writeUInt8(flags, 0);
    head.writeUInt32BE(json.length, 1);
    return Buffer.concat([head, json]);
  };
  /** A server stream that fails, as the Connect protocol ends one: an end-stream envelope (flag 2) naming the error. */
  const failedStream = (code: string, message: string) => ({ status: 200, contentType: "application/connect+json", body: envelope(2, { error: { code, message } }) });

  it("reopens an order's watch that failed (the gateway away, the connection cut) after a growing wait, saying so until updates flow again; a refusal is said and not retried", async () => {
    const { page, errors } = await signedIn("margaret");
    const lost = page.locator("#watch-lost");
    const watches: number[] = [];
    // Refused for good: said once, not asked again.
    await page.route(isRpc("WatchOrder"), (route) => {
      watches.push(Date.now());
      return route.fulfill(failedStream("permission_denied", "order is not yours"));
    });
    await place(page, "tok_visa");
    await lost.filter({ hasText: "Lost the order's updates: order is not yours. Not reconnecting." }).waitFor();
    await page.waitForTimeout(2_500);
    expect(watches.length).toBe(1);
    expect(await page.locator("#watch-status").textContent()).toBe("");
    await page.unroute(isRpc("WatchOrder"));

    // The gateway restarting, then the connection cut: reopened after 1 s, then 2 s, then the order's updates.
    watches.length = 0;
    await page.route(isRpc("WatchOrder"), (route) => {
      watches.push(Date.now());
      if (watches.length === 1) return route.fulfill(failedStream("unavailable", "the gateway is restarting"));
      if (watches.length === 2) return route.abort("connectionreset");
      return route.continue();
    });
    const orderId = await place(page, "tok_visa");
    await lost.filter({ hasText: "Lost the order's updates: the gateway is restarting. Reconnecting in 1 s." }).waitFor();
    await lost.filter({ hasText: /^Lost the order's updates: .+\. Reconnecting in 2 s\.$/ }).waitFor();
    await screenshot(page, "console-watch-reconnecting");
    await settled(page, "CONFIRMED");
    expect(await lost.textContent()).toBe("");
    expect(watches.length).toBe(3);
    expect(watches[1]! - watches[0]!).toBeGreaterThanOrEqual(900);
    expect(watches[2]! - watches[1]!).toBeGreaterThanOrEqual(1_900);
    await row(page, "commit-reservation").locator(".phase[data-kind=attempt][data-outcome=succeeded]").waitFor();
    await expect.poll(() => ordersRow(page, orderId), { timeout: 15_000 }).toContain("ORDER_STATUS_CONFIRMED");
    expect(await page.locator("#error").textContent()).toBe("");
    expect(errors).toEqual([]);
  });

  it("never reopens the watch of an order the customer no longer follows", async () => {
    const { page, errors } = await signedIn("katherine");
    const lost = page.locator("#watch-lost");
    await page.route(isRpc("WatchOrder"), (route) => route.fulfill(failedStream("unavailable", "the gateway is restarting")));
    const first = await place(page, "tok_visa");
    // Reopened once after 1 s (failing again), so its next reopen waits 2 s.
    await lost.filter({ hasText: "Reconnecting in 2 s." }).waitFor();
    await page.unroute(isRpc("WatchOrder"));
    const watched: string[] = [];
    await page.route(isRpc("WatchOrder"), (route) => {
      watched.push(route.request().postDataBuffer()?.toString() ?? "");
      return route.continue();
    });
    const next = await place(page, "tok_visa");
    await settled(page, "CONFIRMED");
    expect(await lost.textContent()).toBe("");
    // Past the first order's pending 2 s and any 4 s after it: only the second order was watched.
    await page.waitForTimeout(4_500);
    expect(watched.length).toBeGreaterThanOrEqual(1);
    expect(watched.every((body) => body.includes(next))).toBe(true);
    expect(watched.some((body) => body.includes(first))).toBe(false);
    expect(await page.locator("#watched").textContent()).toBe(next);
    expect(errors).toEqual([]);
  });

  it("opens a new watch when the gateway ends one while the order still waits (its longest watch), and follows the order to its end", async () => {
    const { page, errors } = await signedIn("grace");
    const watches: number[] = [];
    await page.route(isRpc("WatchOrder"), (route) => {
      watches.push(Date.now());
      if (watches.length > 1) return route.continue();
      // The first watch as the gateway ends one at maxWatchMs: the order as it is, then a clean end.
      // A streaming call's request is one envelope too: its JSON after the 5-byte head.
      const { orderId } = JSON.parse(route.request().postDataBuffer()!.subarray(5).toString()) as { orderId: string };
      return route.fulfill({ status: 200, contentType: "application/connect+json", body: Buffer.concat([envelope(0, { order: { id: orderId, status: "ORDER_STATUS_PENDING" } }), envelope(2, {})]) });
    });
    await place(page, "tok_3ds");
    // The timeline shows the wait (the action-required event itself may have passed before the second watch began).
    await row(page, "charge").locator(".phase.open[data-kind=signal]").waitFor({ timeout: 15_000 });
    await expect.poll(() => watches.length, { timeout: 10_000 }).toBe(2);
    expect(watches[1]! - watches[0]!).toBeGreaterThanOrEqual(900);
    await page.click("#confirm-payment-button");
    await settled(page, "CONFIRMED");
    expect(await page.locator("#watch-lost").textContent()).toBe("");
    expect(errors).toEqual([]);
  });

  it("reads a timeline that failed to read again after a growing wait, though no update of the order comes meanwhile", async () => {
    const { page, errors } = await signedIn("frances");
    await place(page, "tok_3ds");
    // The order waits for the customer: no WatchOrder message comes now, only the page's own reads.
    const wait = row(page, "charge").locator(".phase.open[data-kind=signal]");
    await wait.waitFor({ timeout: 15_000 });
    await page.locator('#progress li[data-event="shop.payment.v1.PaymentActionRequired"]').waitFor({ timeout: 15_000 });
    const reads: number[] = [];
    await page.route(isRpc("GetOrderTimeline"), (route) => {
      reads.push(Date.now());
      if (reads.length > 2) return route.continue();
      return route.fulfill({ status: 503, contentType: "application/json", body: JSON.stringify({ code: "unavailable", message: "order is restarting" }) });
    });
    const timeline = page.locator("#timeline");
    await timeline.filter({ hasText: "The timeline is not available right now. Trying again in 1 s." }).waitFor();
    await timeline.filter({ hasText: "The timeline is not available right now. Trying again in 2 s." }).waitFor();
    await wait.waitFor({ timeout: 10_000 });
    expect(reads.length).toBeGreaterThanOrEqual(3);
    expect(reads[2]! - reads[1]!).toBeGreaterThanOrEqual(1_900);
    // Confirmed, so its watch ends and no later test meets it.
    await page.click("#confirm-payment-button");
    await settled(page, "CONFIRMED");
    await row(page, "charge").locator(".phase[data-kind=signal][data-outcome=signalled]").waitFor();
    expect(errors).toEqual([]);
  });
});
