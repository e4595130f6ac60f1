import { readFileSync } from "node:fs";
import { createServer, type Server } from "node:https";
import type { TLSSocket } from "node:tls";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { Code, ConnectError } from "@connectrpc/connect";
import { testPki } from "#tests/support/mesh-clients.js";
import { silentLogger } from "#tests/support/silent-logger.js";
import { loadMeshCredentials, type MeshCredentials } from "#platform/trust/mesh-tls.js";
import { identityOfCertificate } from "#platform/trust/mesh-identity.js";
import { create } from "@bufbuild/protobuf";
import { ProductSchema } from "#gen/shop/catalog/v1/catalog_service_pb.js";
import { decimalOf, minorUnitsOf } from "#platform/domain/decimal-price.js";
import { createOldShopCatalog } from "./old-shop-catalog.js";
import { toMoney } from "./money.js";

/** What the fake old shop answers next: status and raw body, or no answer at all. */
type Answer = { status: number; body: string } | "hang";

const legacyProduct = (sku: string, price: string, extra: Record<string, unknown> = {}) => ({ sku, title: `Title of ${sku}`, blurb: `Blurb of ${sku}.`, price, currency: "USD", updated_at: "2026-01-01T00:00:00.000Z", ...extra });
const ok = (products: unknown[]): Answer => ({ status: 200, body: JSON.stringify({ products }) });

const codeOf = async (call: Promise<unknown>) => {
  try {
    await call;
  } catch (err) {
    return ConnectError.from(err);
  }
  throw new Error("the call succeeded");
};

describe("the old shop's anti-corruption adapter", () => {
  let server: Server;
  let url: string;
  let credentials: MeshCredentials;
  let answer: Answer;
  const seen: { method: string; path: string; body: string; caller: string | undefined; socket: object }[] = [];
  const sockets = new Set<object>();

  beforeAll(async () => {
    const pki = await testPki();
    const own = pki.files("oldshop");
    // A real HTTPS/1.1 server with the old shop's certificate, requiring a mesh client certificate.
    server = createServer({ cert: readFileSync(own.certFile), key: readFileSync(own.keyFile), ca: readFileSync(own.caFile), requestCert: true, rejectUnauthorized: true }, (req, res) => {
      const socket = req.socket as TLSSocket;
      sockets.add(socket);
      const chunks: Buffer[] = [];
      req.on("data", (chunk: Buffer) => chunks.push(chunk));
      req.on("end", () => {
        seen.push({ method: req.method ?? "", path: req.url ?? "", body: Buffer.concat(chunks).toString("utf8"), caller: identityOfCertificate(socket.getPeerCertificate()), socket });
        if (answer === "hang") return;
        res.writeHead(answer.status, { "content-type": "application/json" });
        res.end(answer.body);
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
    credentials = loadMeshCredentials(pki.files("order"), { logger: silentLogger });
  });
  afterAll(async () => {
    credentials.close();
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });
  beforeEach(() => {
    seen.length = 0;
  });
  const adapter = (resilience = {}) => createOldShopCatalog({ baseUrl: url, tls: { credentials, peer: "oldshop" }, resilience: { initialBackoffMs: 1, maxBackoffMs: 5, ...resilience } });

  it("maps the legacy JSON to v1 products exactly, asking by SKU with the caller's certificate over one kept-alive connection", async () => {
    const shop = adapter();
    answer = ok([legacyProduct("MW-TEE-002", "24.99"), legacyProduct("MW-MUG-001", "12.99", { blurb: "" }), legacyProduct("MW-PIN-003", "0.29")]);
    const { products } = await shop.client.listProducts({ skus: ["MW-MUG-001", "MW-TEE-002", "MW-PIN-003", "MW-NONE"] });
    expect(products.map((p) => [p.sku, p.name, p.description, p.price?.currencyCode, p.price?.minorUnits])).toEqual([
      ["MW-MUG-001", "Title of MW-MUG-001", "", "USD", 1299n],
      ["MW-PIN-003", "Title of MW-PIN-003", "Blurb of MW-PIN-003.", "USD", 29n],
      ["MW-TEE-002", "Title of MW-TEE-002", "Blurb of MW-TEE-002.", "USD", 2499n],
    ]);
    answer = ok([]);
    expect((await shop.client.listProducts({})).products).toEqual([]);
    expect(seen.map((s) => [s.path, s.caller])).toEqual([
      ["/api/products?sku=MW-MUG-001&sku=MW-TEE-002&sku=MW-PIN-003&sku=MW-NONE", "order"],
      ["/api/products", "order"],
    ]);
    expect(seen[0]!.socket).toBe(seen[1]!.socket);
    shop.close();
  });

  it("refuses a malformed answer whole with UNAVAILABLE naming the field, never passing on a wrong price", async () => {
    // Each counts against the old shop (an unwell legacy): a breaker of 5 would open midway.
    const shop = adapter({ maxAttempts: 1, breakerThreshold: 100 });
    const cases: [Answer, string][] = [
      [ok([legacyProduct("MW-MUG-001", "12.999")]), 'products[0].price: "12.999" is not a decimal'],
      [ok([legacyProduct("MW-MUG-001", 12.99 as unknown as string)]), "products[0].price: 12.99 is not a decimal string"],
      [ok([legacyProduct("MW-MUG-001", "-1.00")]), "products[0].price"],
      [ok([legacyProduct("MW-MUG-001", "1e3")]), "products[0].price"],
      [ok([legacyProduct("MW-MUG-001", "1.00", { currency: "usd" })]), "products[0].currency"],
      [ok([legacyProduct("MW-MUG-001", "1.00", { title: "" })]), "products[0].title"],
      [ok([legacyProduct("MW-MUG-001", "1.00", { blurb: null })]), "products[0].blurb"],
      [ok([legacyProduct("MW-MUG-001", "1.00"), legacyProduct("MW-EVIL", "1.00")]), 'products[1].sku: "MW-EVIL" was not asked for'],
      [ok([legacyProduct("MW-MUG-001", "1.00"), legacyProduct("MW-MUG-001", "2.00")]), "products[1].sku"],
      [{ status: 200, body: '{"items":[]}' }, "products: not a list"],
      [{ status: 200, body: "<html>" }, "not JSON"],
    ];
    for (const [next, field] of cases) {
      answer = next;
      const err = await codeOf(shop.client.listProducts({ skus: ["MW-MUG-001"] }));
      expect.soft([err.code, err.rawMessage]).toEqual([Code.Unavailable, expect.stringContaining(field)]);
    }
    expect(seen).toHaveLength(cases.length);
    shop.close();
  });

  it("maps the old shop's statuses to the contract's codes", async () => {
    const shop = adapter({ maxAttempts: 1, breakerThreshold: 100 });
    const statuses: [Answer, Code, string][] = [
      [{ status: 400, body: JSON.stringify({ error: "at most 100 SKUs", field: "sku" }) }, Code.InvalidArgument, "sku: at most 100 SKUs"],
      [{ status: 404, body: JSON.stringify({ error: "not found" }) }, Code.NotFound, "not found"],
      [{ status: 403, body: JSON.stringify({ error: "not a reader" }) }, Code.PermissionDenied, "not a reader"],
      [{ status: 401, body: "" }, Code.PermissionDenied, "HTTP 401"],
      [{ status: 503, body: JSON.stringify({ error: "database down" }) }, Code.Unavailable, "HTTP 503: database down"],
    ];
    for (const [next, code, text] of statuses) {
      answer = next;
      const err = await codeOf(shop.client.listProducts({ skus: ["MW-MUG-001"] }));
      expect.soft([err.code, err.rawMessage]).toEqual([code, expect.stringContaining(text)]);
    }
    shop.close();
  });

  it("retries an unavailable old shop, and opens its breaker after consecutive failures", async () => {
    const shop = adapter({ maxAttempts: 3, breakerThreshold: 4, halfOpenAfterMs: 60_000 });
    answer = { status: 503, body: "{}" };
    expect((await codeOf(shop.client.listProducts({}))).code).toBe(Code.Unavailable);
    expect(seen).toHaveLength(3);
    expect((await codeOf(shop.client.listProducts({}))).code).toBe(Code.Unavailable);
    expect(shop.stats().breaker).toBe("open");
    const sent = seen.length;
    expect((await codeOf(shop.client.listProducts({}))).rawMessage).toMatch(/circuit breaker for oldshop is open/);
    expect(seen).toHaveLength(sent);
    shop.close();
  });

  it("gives up on an old shop that does not answer, and refuses an answer beyond its size bound", async () => {
    const shop = adapter({ maxAttempts: 1, timeoutMs: 300, attemptTimeoutMs: 300 });
    answer = "hang";
    const startedAt = Date.now();
    expect((await codeOf(shop.client.listProducts({}))).code).toBe(Code.DeadlineExceeded);
    expect(Date.now() - startedAt).toBeLessThan(2_000);
    shop.close();
    const small = createOldShopCatalog({ baseUrl: url, tls: { credentials, peer: "oldshop" }, maxResponseBytes: 10_000, resilience: { maxAttempts: 1 } });
    answer = ok(Array.from({ length: 200 }, (_, i) => legacyProduct(`MW-${i}`, "1.00")));
    expect((await codeOf(small.client.listProducts({}))).rawMessage).toMatch(/larger than 10000 bytes/);
    small.close();
  });

  it("writes a product as the old shop's PUT, mapping names and the price exactly, and reads back what it stored", async () => {
    const shop = adapter();
    const product = (sku: string, minor: number) => create(ProductSchema, { sku, name: `Name of ${sku}`, description: `About ${sku}.`, price: toMoney("EUR", minor) });
    answer = { status: 200, body: JSON.stringify(legacyProduct("MW NEW/1", "0.07", { currency: "EUR" })) };
    const stored = await shop.putProduct(product("MW NEW/1", 7));
    expect([stored.sku, stored.name, stored.price?.currencyCode, stored.price?.minorUnits]).toEqual(["MW NEW/1", "Title of MW NEW/1", "EUR", 7n]);
    answer = { status: 200, body: JSON.stringify(legacyProduct("MW-MUG-001", "9999999999.99")) };
    await shop.putProduct(product("MW-MUG-001", 999_999_999_999));
    expect(seen.map((s) => [s.method, s.path, JSON.parse(s.body), s.caller])).toEqual([
      ["PUT", "/api/products/MW%20NEW%2F1", { title: "Name of MW NEW/1", blurb: "About MW NEW/1.", price: "0.07", currency: "EUR" }, "order"],
      ["PUT", "/api/products/MW-MUG-001", { title: "Name of MW-MUG-001", blurb: "About MW-MUG-001.", price: "9999999999.99", currency: "EUR" }, "order"],
    ]);
    shop.close();
  });

  it("refuses a write the old shop could not hold before sending it; the old shop's 400 is permanent, its 5xx retried", async () => {
    const shop = adapter({ maxAttempts: 3, breakerThreshold: 100 });
    const write = (minor: bigint | undefined) => shop.client.updateProduct({ sku: "MW-MUG-001", name: "Mug", ...(minor === undefined ? {} : { price: { currencyCode: "USD", minorUnits: minor } }) });
    for (const [minor, field] of [[undefined, "price: required"], [-1n, "price.minor_units"], [10n ** 12n, "price.minor_units"]] as const) {
      const err = await codeOf(write(minor));
      expect.soft([err.code, err.rawMessage]).toEqual([Code.InvalidArgument, expect.stringContaining(field)]);
    }
    expect((await codeOf(shop.client.updateProduct({ sku: "", price: { currencyCode: "USD", minorUnits: 1n } }))).rawMessage).toMatch(/^sku: required/);
    // "/api/products/.." would be another path: refused before sending.
    for (const sku of [".", "..", "..."]) {
      const err = await codeOf(shop.client.updateProduct({ sku, name: "Mug", price: { currencyCode: "USD", minorUnits: 1n } }));
      expect.soft([sku, err.code, err.rawMessage]).toEqual([sku, Code.InvalidArgument, "sku: must not be only dots"]);
    }
    expect(seen).toHaveLength(0);
    answer = { status: 400, body: JSON.stringify({ error: "1 to 200 characters", field: "title" }) };
    const refused = await codeOf(write(100n));
    expect([refused.code, refused.rawMessage]).toEqual([Code.InvalidArgument, "title: 1 to 200 characters (the old shop)"]);
    expect(seen).toHaveLength(1);
    answer = { status: 503, body: JSON.stringify({ error: "database down" }) };
    expect((await codeOf(write(100n))).code).toBe(Code.Unavailable);
    expect(seen).toHaveLength(4);
    shop.close();
  });

  it("accepts only the old shop's certificate, and speaks plain HTTP only without mTLS", async () => {
    const impostor = createOldShopCatalog({ baseUrl: url, tls: { credentials, peer: "catalog" }, resilience: { maxAttempts: 1 } });
    answer = ok([]);
    const err = await codeOf(impostor.client.listProducts({}));
    expect([err.code, err.rawMessage]).toEqual([Code.Unavailable, expect.stringContaining("expected the server to be spiffe://meshwork/catalog")]);
    expect(seen).toHaveLength(0);
    impostor.close();
    expect(() => createOldShopCatalog({ baseUrl: url.replace("https:", "http:"), tls: { credentials, peer: "oldshop" } })).toThrow(/must be a https:\/\/ address under mTLS/);
    expect(() => createOldShopCatalog({ baseUrl: url })).toThrow(/must be a http:\/\/ address/);
  });
});

describe("decimalOf", () => {
  it("writes minor units as the old shop's decimal string, digit by digit", () => {
    expect([1299n, 29n, 500n, 7n, 0n, 999_999_999_999n].map(decimalOf)).toEqual(["12.99", "0.29", "5.00", "0.07", "0.00", "9999999999.99"]);
    expect([-1n, 10n ** 12n].map(decimalOf)).toEqual([undefined, undefined]);
  });
});

describe("minorUnitsOf", () => {
  it("reads a decimal price digit by digit", () => {
    expect(["12.99", "0.29", "5", "5.5", "0.07", "9999999999.99", "0"].map(minorUnitsOf)).toEqual([1299, 29, 500, 550, 7, 999999999999, 0]);
    expect(["", "1.", ".5", "1.234", "-1", "+1", "1e2", " 1", "1,00", "NaN", "12345678901"].map(minorUnitsOf)).toEqual(Array(11).fill(undefined));
  });
});
