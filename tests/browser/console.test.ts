import { mkdirSync } from "node:fs";
import { resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { chromium, type Browser } from "playwright-core";
import type { RunningServer } from "#platform/rpc-server/server.js";
import { startGateway } from "../support/gateway.js";
import { startInProcessMesh, type InProcessMesh } from "../support/services.js";

const screenshots = resolve(import.meta.dirname, "../../test-results");

/** Debian's Chromium, driven by playwright-core, against the console the gateway serves. */
describe("the browser console", () => {
  let mesh: InProcessMesh;
  let gateway: RunningServer;
  let browser: Browser;

  beforeAll(async () => {
    mesh = await startInProcessMesh();
    gateway = await startGateway(mesh);
    browser = await chromium.launch({
      executablePath: process.env["CHROMIUM_PATH"] ?? "/usr/bin/chromium",
      args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic", "--no-first-run", "--disable-component-update", "--disable-sync"],
    });
  });
  afterAll(async () => {
    await browser?.close();
    await gateway?.close();
    await mesh?.close();
  });

  it("signs in, places an order, and watches it reach CONFIRMED", async () => {
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on("pageerror", (err) => errors.push(err.message));
    await page.goto(gateway.url);
    await page.locator("#services td.SERVING").first().waitFor({ timeout: 15_000 });
    await page.fill("#customer", "grace");
    await page.click("#login");
    await page.locator("#who", { hasText: "signed in as grace" }).waitFor();
    await page.locator('#products input[data-sku="MW-MUG-001"]').fill("2");
    await page.selectOption("#token", "tok_visa");
    await page.click("#place");
    await page.locator("#watch-status", { hasText: "ORDER_STATUS_CONFIRMED" }).waitFor({ timeout: 20_000 });
    await page.locator("#orders td.status-ORDER_STATUS_CONFIRMED").first().waitFor();
    expect(await page.locator("#progress li").count()).toBeGreaterThan(1);
    expect(await page.locator("#error").textContent()).toBe("");
    mkdirSync(screenshots, { recursive: true });
    await page.screenshot({ path: resolve(screenshots, "console-confirmed.png"), fullPage: true });
    expect(errors).toEqual([]);
  });
});
