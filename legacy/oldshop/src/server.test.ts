import { readFileSync } from "node:fs";
import { Agent, request } from "node:https";
import postgres from "postgres";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLegacyDatabase } from "#tests/support/legacy-databases.js";
import { testPki } from "#tests/support/mesh-clients.js";
import type { MeshPki } from "#tools/mesh/mesh-pki.js";
import { startOldShop, type OldShop } from "./server.js";

interface Answer {
  status: number;
  body: Record<string, unknown> | undefined;
}

/** One HTTPS/1.1 call to the old shop, presenting `as`'s mesh certificate (none: no certificate). */
function call(shop: OldShop, pki: MeshPki, as: string | undefined, method: string, path: string, body?: string): Promise<Answer> {
  const own = as ? pki.files(as) : undefined;
  return new Promise((resolve, reject) => {
    const req = request(
      new URL(path, shop.url),
      {
        method,
        ca: readFileSync(pki.operator.caFile),
        ...(own ? { cert: readFileSync(own.certFile), key: readFileSync(own.keyFile) } : {}),
        headers: body === undefined ? {} : { "content-type": "application/json", "content-length": Buffer.byteLength(body) },
        agent: false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (chunk: Buffer) => chunks.push(chunk));
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          resolve({ status: res.statusCode!, body: text ? (JSON.parse(text) as Record<string, unknown>) : undefined });
        });
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

const health = async (shop: OldShop) => {
  const res = await fetch(`${shop.opsUrl}/healthz`);
  return { status: res.status, body: (await res.json()) as unknown };
};

const silent = pino({ level: "silent" });
const readers = ["spiffe://meshwork/gateway", "spiffe://meshwork/order", "spiffe://meshwork/operator"];
const writers = ["spiffe://meshwork/operator"];

describe("the old shop's JSON API, over HTTPS with mesh client certificates", () => {
  let shop: OldShop;
  let pki: MeshPki;
  let admin: postgres.Sql;

  beforeAll(async () => {
    const [database, issued] = await Promise.all([createLegacyDatabase(), testPki()]);
    pki = issued;
    admin = postgres(database.adminUrl, { max: 2, onnotice: () => {} });
    shop = await startOldShop({ databaseUrl: database.oldshopUrl, port: 0, opsPort: 0, tls: pki.files("oldshop"), readers, writers, logger: silent });
  });
  afterAll(async () => {
    await shop?.close();
    await admin?.end();
  });

  it("lists the seeded catalog by SKU with decimal-string prices", async () => {
    const { status, body } = await call(shop, pki, "gateway", "GET", "/api/products");
    expect(status).toBe(200);
    const products = body!["products"] as Record<string, unknown>[];
    expect(products.map((p) => p["sku"])).toEqual(["MW-BTL-005", "MW-HOD-004", "MW-LMP-006", "MW-MUG-001", "MW-STK-003", "MW-TEE-002"]);
    expect(products.find((p) => p["sku"] === "MW-MUG-001")).toMatchObject({ title: "Meshwork mug", price: "12.99", currency: "USD", blurb: expect.stringMatching(/\.$/) });
    expect(new Date(products[0]!["updated_at"] as string).getTime()).toBeGreaterThan(0);
  });

  it("filters by ?sku= and refuses more than 100 of them, naming the field", async () => {
    const filtered = await call(shop, pki, "order", "GET", "/api/products?sku=MW-LMP-006&sku=MW-MUG-001&sku=UNKNOWN");
    expect(filtered.status).toBe(200);
    expect((filtered.body!["products"] as { sku: string }[]).map((p) => p.sku)).toEqual(["MW-LMP-006", "MW-MUG-001"]);
    const tooMany = await call(shop, pki, "order", "GET", `/api/products?${Array.from({ length: 101 }, (_, i) => `sku=S${i}`).join("&")}`);
    expect(tooMany).toEqual({ status: 400, body: { error: expect.stringContaining("100"), field: "sku" } });
    const tooLong = await call(shop, pki, "order", "GET", `/api/products?sku=${"x".repeat(129)}`);
    expect(tooLong.body).toMatchObject({ field: "sku" });
  });

  it("reads one product, and answers 404 for an unknown SKU or path", async () => {
    expect(await call(shop, pki, "gateway", "GET", "/api/products/MW-TEE-002")).toMatchObject({ status: 200, body: { sku: "MW-TEE-002", price: "24.99" } });
    expect(await call(shop, pki, "gateway", "GET", "/api/products/NO-SUCH-SKU")).toEqual({ status: 404, body: { error: "not found" } });
    expect((await call(shop, pki, "gateway", "GET", "/api/orders")).status).toBe(404);
  });

  it("lets a writer upsert and delete, and the rows change", async () => {
    const put = await call(shop, pki, "operator", "PUT", "/api/products/MW-NEW-100", JSON.stringify({ title: "New thing", blurb: "Fresh.", price: "7.5", currency: "EUR" }));
    expect(put).toMatchObject({ status: 200, body: { sku: "MW-NEW-100", title: "New thing", price: "7.50", currency: "EUR" } });
    const [row] = await admin`select title, blurb, price, currency from oldshop.products where sku = 'MW-NEW-100'`;
    expect(row).toEqual({ title: "New thing", blurb: "Fresh.", price: "7.50", currency: "EUR" });
    const updated = await call(shop, pki, "operator", "PUT", "/api/products/MW-NEW-100", JSON.stringify({ title: "Renamed", price: "8.00", currency: "EUR" }));
    expect(updated.body).toMatchObject({ title: "Renamed", blurb: "", price: "8.00" });
    expect((await call(shop, pki, "operator", "DELETE", "/api/products/MW-NEW-100")).status).toBe(204);
    expect(await admin`select 1 from oldshop.products where sku = 'MW-NEW-100'`).toHaveLength(0);
    expect((await call(shop, pki, "operator", "DELETE", "/api/products/MW-NEW-100")).status).toBe(404);
  });

  it("refuses writes by a reader (403), callers not listed (403) and callers without a certificate (401)", async () => {
    const change = JSON.stringify({ title: "Hijacked", price: "0.01", currency: "USD" });
    expect((await call(shop, pki, "gateway", "PUT", "/api/products/MW-MUG-001", change)).status).toBe(403);
    expect((await call(shop, pki, "payment", "GET", "/api/products")).status).toBe(403);
    expect((await call(shop, pki, "payment", "DELETE", "/api/products/MW-MUG-001")).status).toBe(403);
    expect(await call(shop, pki, undefined, "GET", "/api/products")).toMatchObject({ status: 401, body: { error: expect.any(String) } });
    const [row] = await admin`select title, price from oldshop.products where sku = 'MW-MUG-001'`;
    expect(row).toEqual({ title: "Meshwork mug", price: "12.99" });
  });

  it.each([
    [{ title: "T", price: "12.999", currency: "USD" }, "price"],
    [{ title: "T", price: "-1.00", currency: "USD" }, "price"],
    [{ title: "T", price: "10000000000", currency: "USD" }, "price"],
    [{ title: "T", price: 12.99, currency: "USD" }, "price"],
    [{ title: "T", price: "1.00", currency: "usd" }, "currency"],
    [{ title: "", price: "1.00", currency: "USD" }, "title"],
    [{ title: "   ", price: "1.00", currency: "USD" }, "title"],
    [{ title: "T".repeat(201), price: "1.00", currency: "USD" }, "title"],
    [{ title: "T", blurb: "b".repeat(2001), price: "1.00", currency: "USD" }, "blurb"],
    [[1, 2], "body"],
  ])("answers 400 naming the field for %j", async (change, field) => {
    const { status, body } = await call(shop, pki, "operator", "PUT", "/api/products/MW-BAD-001", JSON.stringify(change));
    expect(status).toBe(400);
    expect(body!["field"]).toBe(field);
  });

  it.each(["...", "%20%20", "%2E%2E%2E"])("refuses the SKU %s in the path, 400 naming sku, and stores nothing", async (sku) => {
    const change = JSON.stringify({ title: "T", price: "1.00", currency: "USD" });
    expect(await call(shop, pki, "operator", "PUT", `/api/products/${sku}`, change)).toMatchObject({ status: 400, body: { field: "sku" } });
    expect(await admin`select sku from oldshop.products where trim(sku) = '' or sku ~ '^[.]+$'`).toHaveLength(0);
  });

  it("closes the connection of every caller it refuses (401, 403), so refused callers hold none of its sockets", async () => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const refusedWith = (as: string | undefined, method: string) =>
      new Promise<{ status: number; connection: string | undefined; closed: Promise<void> }>((resolve, reject) => {
        const own = as ? pki.files(as) : undefined;
        const req = request(new URL("/api/products/MW-MUG-001", shop.url), { method, agent, ca: readFileSync(pki.operator.caFile), ...(own ? { cert: readFileSync(own.certFile), key: readFileSync(own.keyFile) } : {}) }, (res) => {
          const closed = new Promise<void>((done) => res.socket.once("close", () => done()));
          res.resume();
          res.on("end", () => resolve({ status: res.statusCode!, connection: res.headers.connection, closed }));
        });
        req.on("error", reject);
        req.end();
      });
    try {
      for (const [as, method, status] of [[undefined, "GET", 401], ["payment", "GET", 403], ["gateway", "DELETE", 403]] as const) {
        const refused = await refusedWith(as, method);
        expect({ status: refused.status, connection: refused.connection }).toEqual({ status, connection: "close" });
        // Closed by the old shop at once, long before its 5 s keep-alive timeout.
        await expect(Promise.race([refused.closed.then(() => "closed"), new Promise((done) => setTimeout(() => done("still open"), 2_000))])).resolves.toBe("closed");
      }
    } finally {
      agent.destroy();
    }
  });

  it("answers 400 for a body that is not JSON, and 413 for one over 16 KiB", async () => {
    expect((await call(shop, pki, "operator", "PUT", "/api/products/MW-BAD-001", "{nope")).body).toMatchObject({ field: "body" });
    const huge = JSON.stringify({ title: "T", blurb: "b".repeat(17 * 1024), price: "1.00", currency: "USD" });
    expect((await call(shop, pki, "operator", "PUT", "/api/products/MW-BAD-001", huge)).status).toBe(413);
    expect(await admin`select 1 from oldshop.products where sku = 'MW-BAD-001'`).toHaveLength(0);
  });

  it("answers GET /healthz SERVING on its ops port without a certificate, and on its API port to a caller it admits", async () => {
    expect(await health(shop)).toEqual({ status: 200, body: { status: "SERVING" } });
    expect(await call(shop, pki, "gateway", "GET", "/healthz")).toEqual({ status: 200, body: { status: "SERVING" } });
  });
});

describe("the old shop's health when its database is gone", () => {
  it("reports 503 NOT_SERVING on /healthz", async () => {
    const database = await createLegacyDatabase();
    const shop = await startOldShop({ databaseUrl: database.oldshopUrl, port: 0, opsPort: 0, readers, writers, trustedProxies: ["127.0.0.1"], logger: silent });
    const admin = postgres(database.adminUrl, { max: 1, onnotice: () => {} });
    try {
      expect((await health(shop)).status).toBe(200);
      const name = new URL(database.adminUrl).pathname.slice(1);
      await admin.unsafe(`revoke connect on database ${name} from oldshop`);
      await admin`select pg_terminate_backend(pid) from pg_stat_activity where datname = ${name} and usename = 'oldshop'`;
      expect(await health(shop)).toEqual({ status: 503, body: { status: "NOT_SERVING" } });
    } finally {
      await admin.end();
      await shop.close();
    }
  });

  it("without TLS, believes only a trusted proxy's x-forwarded-client-cert", async () => {
    const database = await createLegacyDatabase();
    const shop = await startOldShop({ databaseUrl: database.oldshopUrl, port: 0, opsPort: 0, readers, writers, trustedProxies: ["127.0.0.1"], logger: silent });
    try {
      const asGateway = await fetch(`${shop.url}/api/products/MW-MUG-001`, { headers: { "x-forwarded-client-cert": 'By=spiffe://meshwork/oldshop;URI=spiffe://meshwork/gateway;Subject=""' } });
      expect(asGateway.status).toBe(200);
      expect((await fetch(`${shop.url}/api/products/MW-MUG-001`)).status).toBe(401);
      const escaped = await fetch(`${shop.url}/api/products/MW-MUG-001`, { headers: { "x-forwarded-client-cert": 'By=spiffe://meshwork/oldshop;Subject="CN=a\\"b\\\\,O=c;d";URI=spiffe://meshwork/gateway' } });
      expect(escaped.status).toBe(200);
    } finally {
      await shop.close();
    }
  });
});

describe("the old shop behind a sidecar (MESH_TLS=off)", () => {
  let shop: OldShop;
  beforeAll(async () => {
    const database = await createLegacyDatabase();
    shop = await startOldShop({ databaseUrl: database.oldshopUrl, port: 0, opsPort: 0, readers, writers, trustedProxies: ["127.0.0.1"], logger: silent });
  });
  afterAll(async () => {
    await shop?.close();
  });
  const asForwarded = (header: string) => fetch(`${shop.url}/api/products`, { headers: { "x-forwarded-client-cert": header } }).then((res) => res.status);

  it.each([
    // A client's open quote, which a proxy appending its element (APPEND_FORWARD) passes through: it would swallow the proxy's element.
    ['URI=spiffe://meshwork/operator;By="', "an unbalanced quote"],
    ['URI=spiffe://meshwork/operator;By=",By=spiffe://meshwork/oldshop;URI=spiffe://meshwork/payment', "a client's open quote swallowing the proxy's element"],
    ["URI=spiffe://meshwork/operator,By=spiffe://meshwork/oldshop;URI=spiffe://meshwork/gateway", "two elements (the proxy appended instead of replacing)"],
    ['By=spiffe://meshwork/oldshop;URI=spiffe://meshwork/gate"way', "a quote inside a bare value"],
    ['By=spiffe://meshwork/oldshop;URI="spiffe://meshwork/gateway"x', "text after a closing quote"],
    ['By=spiffe://meshwork/oldshop;Subject="a\\";URI=spiffe://meshwork/gateway', "an escaped quote left open"],
  ])("refuses %j (%s) as no caller, 401", async (header) => {
    expect(await asForwarded(header)).toBe(401);
  });

  it("admits one element naming a listed caller, quoted or not", async () => {
    expect(await asForwarded('By=spiffe://meshwork/oldshop;Hash=ab;Subject="";URI="spiffe://meshwork/gateway"')).toBe(200);
    expect(await asForwarded("By=spiffe://meshwork/oldshop;URI=spiffe://meshwork/order")).toBe(200);
  });
});
