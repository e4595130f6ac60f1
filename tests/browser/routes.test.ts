import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import type { Browser, Page } from "playwright-core";
import { OperatorService, RouteMode } from "#gen/shop/gateway/v1/operator_service_pb.js";
import { StorefrontService } from "#gen/shop/gateway/v1/storefront_service_pb.js";
import { connect } from "../support/databases.js";
import { eventually } from "../support/eventually.js";
import { bearer, startGatewayWithOperator, testOperatorToken } from "../support/gateway.js";
import { startInProcessMesh, type InProcessMesh } from "../support/services.js";
import { launchBrowser, newPage, screenshot } from "./browser.js";
import { routeModesOf } from "#gateway/web/routes-view.js";
import { ROUTE_MODES } from "#platform/strangler/route-table.js";
import { CATALOG_WRITE_ROUTE, catalogRoutes } from "#shop/catalog-router.js";

const LIST_PRODUCTS = "shop.gateway.v1.StorefrontService/ListProducts";

/** The operator console's Routes view, in Debian's Chromium, over the real route table. */
describe("the operator console's Routes view", () => {
  let mesh: InProcessMesh;
  let sql: ReturnType<typeof connect>;
  let gateway: Awaited<ReturnType<typeof startGatewayWithOperator>>;
  let browser: Browser;
  let token: string;
  const operatorApi = () => createClient(OperatorService, createConnectTransport({ baseUrl: gateway.operator.url, httpVersion: "1.1", interceptors: [bearer(token)] }));
  const listProductsRoute = async () => (await operatorApi().listRoutes({})).routes.find((status) => status.route?.method === LIST_PRODUCTS)!;
  const routeRow = (page: Page) => page.locator(`#route-table tr[data-method="${LIST_PRODUCTS}"]`);

  async function signedIn(): Promise<{ page: Page; errors: string[] }> {
    const opened = await newPage(browser);
    opened.page.on("console", (message) => {
      if (/Content Security Policy/.test(message.text())) opened.errors.push(message.text());
    });
    await opened.page.goto(`${gateway.operator.url}/#operator-token=${encodeURIComponent(token)}`);
    await opened.page.locator("#operator-who", { hasText: "signed in" }).waitFor();
    return opened;
  }

  beforeAll(async () => {
    mesh = await startInProcessMesh();
    gateway = await startGatewayWithOperator(mesh);
    sql = connect(mesh.databaseUrl);
    browser = await launchBrowser();
    token = await testOperatorToken("grace");
  });
  afterAll(async () => {
    await browser?.close();
    await sql?.end();
    await gateway?.close();
    await mesh?.close();
  });

  it("shows each route's mode, calls, shadow mismatch example and the catalog's lag, and moves a route after confirmation", async () => {
    const { page, errors } = await signedIn();
    await routeRow(page).locator(".route-mode", { hasText: "legacy" }).waitFor();
    // The catalog's backfill of the old shop's six products, streaming since (its lag moves with the shared cluster's WAL).
    await page.locator("#catalog-sync[data-state=streaming]").waitFor();
    await eventually(async () => expect(await page.locator("#catalog-sync td").allTextContents()).toEqual(expect.arrayContaining(["streaming", "6", expect.stringMatching(/^\d+$/), expect.stringMatching(/^[\d.]+ m?s$/), expect.stringMatching(/^catalog_/)])));

    // Shadow: a divergence seeded in the catalog (the mug renamed there alone); the example says where.
    await sql`update catalog.products set name = 'Meshwork mug (catalog)' where sku = 'MW-MUG-001'`;
    await operatorApi().setRoute({ method: LIST_PRODUCTS, mode: RouteMode.SHADOW, reason: "compare" });
    const storefront = createClient(StorefrontService, createConnectTransport({ baseUrl: gateway.url, httpVersion: "1.1" }));
    await eventually(async () => {
      await storefront.listProducts({});
      expect((await listProductsRoute()).shadow?.mismatched).toBeGreaterThan(0n);
    });
    const example = page.locator(`.mismatch[data-method="${LIST_PRODUCTS}"] tbody tr`, { hasText: "products[MW-MUG-001].name" });
    await example.waitFor();
    expect(await example.locator("td").allTextContents()).toEqual(["products[MW-MUG-001].name", '"Meshwork mug"', '"Meshwork mug (catalog)"']);
    await routeRow(page).locator(".route-mode", { hasText: "shadow" }).waitFor();

    // Cancelled: nothing changes.
    await routeRow(page).locator("button[data-mode=new]").click();
    await page.locator("#confirm-dialog[open]").waitFor();
    expect(await page.locator("#confirm-title").textContent()).toBe(`Route ${LIST_PRODUCTS} to new?`);
    await page.click("#confirm-cancel");
    expect((await listProductsRoute()).route?.mode).toBe(RouteMode.SHADOW);

    // A canary of 30 %, confirmed with a reason.
    await routeRow(page).locator("input[data-canary-percent]").fill("30");
    await routeRow(page).locator("button[data-mode=canary]").click();
    await page.locator("#confirm-dialog[open]").waitFor();
    await page.fill("#confirm-reason", "a third of the callers");
    await page.click("#confirm-ok");
    await page.locator("#routes-outcome.ok", { hasText: "canary 30%" }).waitFor();
    await routeRow(page).locator(".route-mode", { hasText: "canary 30%" }).waitFor();
    expect((await listProductsRoute()).route).toMatchObject({ mode: RouteMode.CANARY, canaryPercent: 30, reason: "a third of the callers", changedBy: "grace (operator)" });
    await screenshot(page, "operator-routes");
    expect(errors).toEqual([]);
  });

  it("offers only Legacy and New for the catalog write route, as the route table declares each route's modes", async () => {
    // The page knows the modes by name (it loads none of the server's modules): they must agree with the table's.
    for (const [method, declared] of Object.entries(catalogRoutes)) {
      const modes = typeof declared === "string" ? ROUTE_MODES : declared.modes;
      expect(routeModesOf(method).map((mode) => RouteMode[mode].toLowerCase()), method).toEqual([...modes]);
    }
    const { page, errors } = await signedIn();
    const writeRow = page.locator(`#route-table tr[data-method="${CATALOG_WRITE_ROUTE}"]`);
    await writeRow.locator(".route-mode", { hasText: "legacy" }).waitFor();
    expect(await writeRow.locator("button").evaluateAll((buttons) => buttons.map((b) => b.getAttribute("data-mode")))).toEqual(["legacy", "new"]);
    expect(await writeRow.locator("input[data-canary-percent]").count()).toBe(0);
    // Beside the capture's lag, the writes the sync back still owes the old shop: the move back waits for 0.
    expect(await page.locator("#catalog-sync td[data-sync-back-pending]").textContent()).toBe("0");
    // None refused by the old shop: no table of refused writes.
    expect(await page.locator("#catalog-sync td[data-sync-back-refused]").textContent()).toBe("0");
    expect(await page.locator("#refused-writes").count()).toBe(0);
    expect(await routeRow(page).locator("button").evaluateAll((buttons) => buttons.map((b) => b.getAttribute("data-mode")))).toEqual(["legacy", "shadow", "canary", "new"]);
    expect(errors).toEqual([]);
  });

  it("lists the writes the old shop refused as text, and gives one up with Discard after confirmation", async () => {
    // A refusal seeded as the sync back records one; the old shop's answer is hostile text, never markup.
    const refusal = "<img src=x onerror=alert(1)> title must not be blank";
    // Two of one product: one Discard gives up both, so it is offered once, on the oldest.
    for (const answer of [refusal, "price: must be below 10000.00"]) {
      await sql`insert into catalog.sync_back (event_id, sku, name, description, price_minor, currency, state, refusal) values (gen_random_uuid(), 'MW-MUG-001', 'Refused mug', '', 1299, 'USD', 'refused', ${answer})`;
    }
    const { page, errors } = await signedIn();
    const rows = page.locator('#refused-writes tr[data-sku="MW-MUG-001"]');
    const refused = rows.first();
    await refused.waitFor();
    expect(await refused.locator("td").allTextContents()).toEqual(["MW-MUG-001", refusal, expect.stringMatching(/^\d\d:\d\d:\d\d$/), "Discard"]);
    expect(await rows.nth(1).locator("td").allTextContents()).toEqual(["MW-MUG-001", "price: must be below 10000.00", expect.stringMatching(/^\d\d:\d\d:\d\d$/), "with the above"]);
    expect(await page.locator("#refused-writes button[data-discard]").count()).toBe(1);
    expect(await page.locator("#refused-writes img").count()).toBe(0);
    expect(await page.locator("#catalog-sync td[data-sync-back-refused]").textContent()).toBe("2");
    await screenshot(page, "operator-refused-writes");

    // Cancelled: nothing is given up.
    await refused.locator("button[data-discard]").click();
    await page.locator("#confirm-dialog[open]").waitFor();
    expect(await page.locator("#confirm-title").textContent()).toBe("Discard the refused writes of MW-MUG-001?");
    await page.click("#confirm-cancel");
    expect((await operatorApi().listRoutes({})).catalogSync?.syncBackRefused).toBe(2n);

    await refused.locator("button[data-discard]").click();
    await page.locator("#confirm-dialog[open]").waitFor();
    await page.click("#confirm-ok");
    await page.locator("#routes-outcome.ok", { hasText: "MW-MUG-001: 2 refused writes discarded" }).waitFor();
    await page.locator("#refused-writes").waitFor({ state: "detached" });
    expect(await page.locator("#catalog-sync td[data-sync-back-refused]").textContent()).toBe("0");
    expect((await operatorApi().listRoutes({})).catalogSync).toMatchObject({ syncBackPending: 0n, syncBackRefused: 0n, refusedWrites: [] });
    expect(errors).toEqual([]);
  });
});
