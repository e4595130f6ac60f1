import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { Kvm } from "@nats-io/kv";
import { OperatorService, RouteMode } from "#gen/shop/gateway/v1/operator_service_pb.js";
import { SyncState } from "#gen/shop/catalog/v1/catalog_service_pb.js";
import { StorefrontService } from "#gen/shop/gateway/v1/storefront_service_pb.js";
import { connectBus } from "#platform/messaging/connection.js";
import { mintLocalOperatorToken } from "#gateway/src/operator/operator-auth.js";
import { ROUTES_BUCKET, routeKeyOf } from "#platform/strangler/route-table.js";
import { canaryBucketOf } from "#platform/strangler/route-decision.js";
import { routeCli } from "#tools/ops/route.js";
import { connect } from "../support/databases.js";
import { eventually } from "../support/eventually.js";
import { bearer, startGatewayWithOperator, testOperatorSecret, testOperatorToken } from "../support/gateway.js";
import { startInProcessMesh, type InProcessMesh } from "../support/services.js";
import { silentLogger } from "../support/silent-logger.js";

const LIST_PRODUCTS = "shop.gateway.v1.StorefrontService/ListProducts";
const UPDATE_PRODUCT = "shop.gateway.v1.OperatorService/UpdateProduct";

/**
 * The operator's surface for the strangler fig's route table: OperatorService.ListRoutes and
 * SetRoute on the gateway's operator listener, writing the real table (NATS KV) with the
 * console's NATS user, and the route CLI over the same listener.
 */
describe("the route table's operator RPCs and CLI", () => {
  let mesh: InProcessMesh;
  let gateway: Awaited<ReturnType<typeof startGatewayWithOperator>>;
  let sql: ReturnType<typeof connect>;
  let ops: ReturnType<typeof createClient<typeof OperatorService>>;
  let operatorToken: string;
  const failure = (promise: Promise<unknown>) => promise.then(() => undefined, (e: unknown) => ConnectError.from(e));
  const opsWith = (token: string) => createClient(OperatorService, createConnectTransport({ baseUrl: gateway.operator.url, httpVersion: "1.1", interceptors: [bearer(token)] }));
  const listed = async () => (await ops.listRoutes({})).routes.find((status) => status.route?.method === LIST_PRODUCTS);
  /** The route as stored in the bucket, read with the suite's own NATS user. */
  async function stored() {
    const connection = connectBus({ url: mesh.nats.url, name: "suite-routes", logger: silentLogger });
    try {
      const kv = await new Kvm((await connection.ready).js).open(ROUTES_BUCKET);
      const entry = await kv.get(routeKeyOf(LIST_PRODUCTS));
      return entry ? { revision: entry.revision, value: entry.json<Record<string, unknown>>() } : undefined;
    } finally {
      await connection.close();
    }
  }
  function cli(args: string[], token = operatorToken) {
    const out: string[] = [];
    const err: string[] = [];
    return routeCli(args, { OPERATOR_URL: gateway.operator.url, OPERATOR_TOKEN: token }, { out: (line) => out.push(line), err: (line) => err.push(line) }).then((status) => ({ status, out: out.join("\n"), err: err.join("\n") }));
  }

  beforeAll(async () => {
    mesh = await startInProcessMesh();
    gateway = await startGatewayWithOperator(mesh);
    sql = connect(mesh.databaseUrl);
    operatorToken = await testOperatorToken("grace");
    ops = opsWith(operatorToken);
  });
  afterAll(async () => {
    await sql?.end();
    await gateway?.close();
    await mesh?.close();
  });

  it("lists the routable method at its default until an operator sets it, then as set, stored in the bucket", async () => {
    const before = await listed();
    expect(before?.route).toMatchObject({ method: LIST_PRODUCTS, mode: RouteMode.LEGACY, canaryPercent: 0, changedBy: "", revision: 0n });
    expect(before?.shadow).toMatchObject({ compared: 0n, mismatched: 0n });

    const { route } = await ops.setRoute({ method: LIST_PRODUCTS, mode: RouteMode.SHADOW, reason: "compare before the canary" });
    expect(route).toMatchObject({ method: LIST_PRODUCTS, mode: RouteMode.SHADOW, canaryPercent: 0, changedBy: "grace (operator)", reason: "compare before the canary" });
    expect(route!.revision).toBeGreaterThan(0n);
    expect((await listed())?.route).toMatchObject({ mode: RouteMode.SHADOW, revision: route!.revision, changedBy: "grace (operator)" });
    expect(await stored()).toMatchObject({ revision: Number(route!.revision), value: { mode: "shadow", canaryPercent: 0, changedBy: "grace (operator)", reason: "compare before the canary" } });
    // Asked of the catalog with the console's certificate, which GetSyncStatus admits: the old shop's six products backfilled.
    await eventually(async () => expect((await ops.listRoutes({})).catalogSync).toMatchObject({ slot: expect.stringMatching(/^catalog_/), state: SyncState.STREAMING, products: 6n, lagBytes: 0n }));
    expect((await ops.listRoutes({})).catalogSync?.appliedLsn).toMatch(/^[0-9A-F]+\/[0-9A-F]+$/);
  });

  it("refuses a change based on a revision the table has moved past", async () => {
    const { route: first } = await ops.setRoute({ method: LIST_PRODUCTS, mode: RouteMode.CANARY, canaryPercent: 10 });
    const { route: second } = await ops.setRoute({ method: LIST_PRODUCTS, mode: RouteMode.CANARY, canaryPercent: 20, expectedRevision: first!.revision });
    const conflict = await failure(ops.setRoute({ method: LIST_PRODUCTS, mode: RouteMode.NEW, expectedRevision: first!.revision }));
    expect(conflict).toMatchObject({ code: Code.FailedPrecondition });
    expect(conflict?.rawMessage).toContain("expected_revision");
    expect((await listed())?.route).toMatchObject({ mode: RouteMode.CANARY, canaryPercent: 20, revision: second!.revision });
    expect((await stored())?.value).toMatchObject({ mode: "canary", canaryPercent: 20 });
  });

  it("refuses bad input naming the field, writing nothing", async () => {
    const before = (await stored())?.revision;
    const cases = [
      [{ method: "", mode: RouteMode.NEW }, "method"],
      [{ method: "shop.gateway.v1.StorefrontService/PlaceOrder", mode: RouteMode.NEW }, "method"],
      [{ method: LIST_PRODUCTS, mode: RouteMode.UNSPECIFIED }, "mode"],
      [{ method: LIST_PRODUCTS, mode: RouteMode.CANARY, canaryPercent: 0 }, "canary_percent"],
      [{ method: LIST_PRODUCTS, mode: RouteMode.CANARY, canaryPercent: 100 }, "canary_percent"],
      [{ method: LIST_PRODUCTS, mode: RouteMode.SHADOW, canaryPercent: 5 }, "canary_percent"],
      [{ method: LIST_PRODUCTS, mode: RouteMode.NEW, reason: "x".repeat(1_001) }, "reason"],
    ] as const;
    const refusals = await Promise.all(cases.map(([req]) => failure(ops.setRoute(req))));
    expect(refusals.map((e) => [e?.code, e?.rawMessage.split(":", 1)[0]])).toEqual(cases.map(([, field]) => [Code.InvalidArgument, field]));
    expect((await stored())?.revision).toBe(before);
  });

  it("refuses callers that are not operators", async () => {
    const { token: demo } = await createClient(StorefrontService, createGrpcTransport({ baseUrl: gateway.url })).issueDemoToken({ customerId: "shopper" });
    expect(await failure(opsWith(demo).setRoute({ method: LIST_PRODUCTS, mode: RouteMode.NEW }))).toMatchObject({ code: Code.Unauthenticated });
    const roleless = await mintLocalOperatorToken(testOperatorSecret, "mallory", 60, { claim: "roles", role: "viewer" });
    expect(await failure(opsWith(roleless).setRoute({ method: LIST_PRODUCTS, mode: RouteMode.NEW }))).toMatchObject({ code: Code.PermissionDenied });
    expect(await failure(opsWith(roleless).listRoutes({}))).toMatchObject({ code: Code.PermissionDenied });
    expect((await listed())?.route?.mode).not.toBe(RouteMode.NEW);
  });

  it("moves a route with the CLI by its short name, and says why it refuses", async () => {
    const set = await cli(["set", "ListProducts", "canary", "50", "--reason", "half of the callers"]);
    expect(set).toMatchObject({ status: 0, err: "" });
    expect(set.out).toContain(`${LIST_PRODUCTS}: canary 50%`);
    expect((await listed())?.route).toMatchObject({ mode: RouteMode.CANARY, canaryPercent: 50, reason: "half of the callers", changedBy: "grace (operator)" });

    const list = await cli(["list"]);
    expect(list.status).toBe(0);
    expect(list.out).toMatch(new RegExp(`${LIST_PRODUCTS.replace(".", "\\.")}\\s+canary 50%`));
    expect(list.out).toMatch(/catalog change capture: streaming, lag \d+ bytes \/ \d+ ms, applied [0-9A-F/]+ of [0-9A-F/]+, 6 products \(slot catalog_\w+\)/);

    expect(await cli(["set", "ListProducts", "canary", "0"])).toMatchObject({ status: 2, err: expect.stringContaining("canary takes a percent from 1 to 99") });
    expect(await cli(["set", "PlaceOrder", "new"])).toMatchObject({ status: 2, err: expect.stringContaining(`no route "PlaceOrder"`) });
    expect(await cli(["set", "ListProducts", "sideways"])).toMatchObject({ status: 2, err: expect.stringContaining("mode must be one of") });
    expect(await cli(["set", "ListProducts", "new", "--expect-revision", "1"])).toMatchObject({ status: 1, err: expect.stringContaining("FailedPrecondition: expected_revision") });
    expect(await cli(["list"], "not-a-token")).toMatchObject({ status: 1, err: expect.stringContaining("Unauthenticated") });

    expect(await cli(["set", "ListProducts", "legacy", "--reason", "roll back"])).toMatchObject({ status: 0 });
    expect((await listed())?.route).toMatchObject({ mode: RouteMode.LEGACY, canaryPercent: 0, reason: "roll back" });
  });

  it("serves ListProducts from the side the route names, switching without a restart, stock from inventory", async () => {
    // Told apart by what only the catalog holds (seeded there, as a divergence would be): the mug renamed, a product inventory does not stock.
    await eventually(async () => expect((await sql`select count(*)::int as n from catalog.products`)[0]!.n).toBe(6));
    await sql`update catalog.products set name = 'Meshwork mug (catalog)' where sku = 'MW-MUG-001'`;
    await sql`insert into catalog.products (sku, name, description, price_minor, currency, source_lsn) values ('MW-NEW-999', 'Not stocked', '', 100, 'USD', '0/0')`;
    const storefront = createClient(StorefrontService, createGrpcTransport({ baseUrl: gateway.url }));
    const mug = async () => (await storefront.listProducts({})).products;
    await ops.setRoute({ method: LIST_PRODUCTS, mode: RouteMode.LEGACY });
    await eventually(async () => expect((await mug()).find((p) => p.sku === "MW-MUG-001")?.name).toBe("Meshwork mug"));
    const legacy = await mug();
    expect(legacy.map((p) => p.sku)).toContain("MW-LMP-006");
    expect(legacy.find((p) => p.sku === "MW-MUG-001")).toMatchObject({ description: expect.stringContaining("stoneware mug"), price: { currencyCode: "USD", minorUnits: 1299n } });
    expect(legacy.find((p) => p.sku === "MW-MUG-001")!.available).toBeGreaterThan(0);
    const before = await listed();

    await ops.setRoute({ method: LIST_PRODUCTS, mode: RouteMode.NEW, reason: "cut over" });
    await eventually(async () => expect((await mug()).find((p) => p.sku === "MW-MUG-001")?.name).toBe("Meshwork mug (catalog)"));
    const fromNew = await mug();
    // The catalog's products, each with inventory's stock (none for one it does not stock).
    expect(fromNew.map((p) => p.sku).sort()).toEqual([...legacy.map((p) => p.sku), "MW-NEW-999"].sort());
    expect(fromNew.find((p) => p.sku === "MW-MUG-001")).toMatchObject({ description: legacy.find((p) => p.sku === "MW-MUG-001")!.description, price: { minorUnits: 1299n } });
    expect(fromNew.find((p) => p.sku === "MW-MUG-001")!.available).toBe(legacy.find((p) => p.sku === "MW-MUG-001")!.available);
    expect(fromNew.find((p) => p.sku === "MW-NEW-999")!.available).toBe(0);
    const after = await listed();
    expect(after!.newCalls).toBeGreaterThan(before!.newCalls);

    // Shadow: the old shop answers, the catalog is compared, and the difference shows.
    await ops.setRoute({ method: LIST_PRODUCTS, mode: RouteMode.SHADOW });
    await eventually(async () => expect((await mug()).find((p) => p.sku === "MW-MUG-001")?.name).toBe("Meshwork mug"));
    await eventually(async () => expect((await listed())?.shadow?.mismatched).toBeGreaterThan(0n));
    const differences = (await listed())!.shadow!.example!.differences;
    expect(differences).toContainEqual({ $typeName: "shop.gateway.v1.FieldDifference", path: "products[MW-MUG-001].name", legacy: '"Meshwork mug"', new: '"Meshwork mug (catalog)"' });

    // Canary: each signed-in customer sticks to the side their bucket says; anonymous callers go by address; a bad token is anonymous, not refused.
    await ops.setRoute({ method: LIST_PRODUCTS, mode: RouteMode.CANARY, canaryPercent: 50 });
    await eventually(async () => expect((await listed())?.route?.mode).toBe(RouteMode.CANARY));
    const sideOf = (products: { sku: string; name: string }[]) => (products.find((p) => p.sku === "MW-MUG-001")?.name === "Meshwork mug (catalog)" ? "new" : "legacy");
    const expected = (key: string) => (canaryBucketOf(LIST_PRODUCTS, key) < 50 ? "new" : "legacy");
    const customers = Array.from({ length: 12 }, (_, i) => `canary-customer-${i}`);
    const served = await Promise.all(
      customers.map(async (customerId) => {
        const { token } = await storefront.issueDemoToken({ customerId });
        const asCustomer = createClient(StorefrontService, createGrpcTransport({ baseUrl: gateway.url, interceptors: [bearer(token)] }));
        const sides = [];
        for (let call = 0; call < 3; call++) sides.push(sideOf((await asCustomer.listProducts({})).products));
        return sides;
      }),
    );
    expect(served).toEqual(customers.map((id) => Array(3).fill(expected(`customer:${id}`))));
    expect(new Set(served.flat())).toEqual(new Set(["legacy", "new"]));
    const withBadToken = createClient(StorefrontService, createGrpcTransport({ baseUrl: gateway.url, interceptors: [bearer("not-a-token")] }));
    expect(sideOf((await withBadToken.listProducts({})).products)).toBe(expected("address:127.0.0.1"));
    expect(sideOf(await mug())).toBe(expected("address:127.0.0.1"));

    await ops.setRoute({ method: LIST_PRODUCTS, mode: RouteMode.LEGACY, reason: "roll back" });
  });

  it("lists the catalog write route beside the read route, at legacy, taking only legacy and new", async () => {
    const { routes } = await ops.listRoutes({});
    expect(routes.map((status) => status.route?.method)).toEqual([LIST_PRODUCTS, UPDATE_PRODUCT]);
    expect(routes[1]?.route).toMatchObject({ mode: RouteMode.LEGACY, revision: 0n });
    for (const refused of [{ mode: RouteMode.SHADOW }, { mode: RouteMode.CANARY, canaryPercent: 50 }]) {
      const error = await failure(ops.setRoute({ method: UPDATE_PRODUCT, ...refused }));
      expect(error).toMatchObject({ code: Code.InvalidArgument });
      expect(error?.rawMessage).toMatch(/^mode: shop\.gateway\.v1\.OperatorService\/UpdateProduct takes only ROUTE_MODE_LEGACY or ROUTE_MODE_NEW/);
    }
    expect(await cli(["set", "UpdateProduct", "shadow"])).toMatchObject({ status: 1, err: expect.stringContaining("InvalidArgument: mode:") });
    expect((await ops.listRoutes({})).routes[1]?.route).toMatchObject({ mode: RouteMode.LEGACY, revision: 0n });
  });

  it("takes an operator's UpdateProduct on the old shop while writes stay legacy, and change capture brings it to the catalog", async () => {
    const legacySql = connect(mesh.legacyDatabase.oldshopUrl);
    try {
      const price = { currencyCode: "EUR", minorUnits: 2_450n };
      const { product, side } = await ops.updateProduct({ sku: "MW-OPS-100", name: "Operator's teapot", description: "Written through the facade.", price });
      expect(side).toBe("legacy");
      expect(product).toMatchObject({ sku: "MW-OPS-100", name: "Operator's teapot", description: "Written through the facade.", price });
      expect(await legacySql`select title, blurb, price::text, currency from oldshop.products where sku = 'MW-OPS-100'`).toEqual([{ title: "Operator's teapot", blurb: "Written through the facade.", price: "24.50", currency: "EUR" }]);
      await eventually(async () => expect(await sql`select name, description, price_minor::int as minor, currency from catalog.products where sku = 'MW-OPS-100'`).toEqual([{ name: "Operator's teapot", description: "Written through the facade.", minor: 2450, currency: "EUR" }]));

      // Bad input names the field, and nothing is written.
      const good = { sku: "MW-OPS-100", name: "Renamed", description: "", price };
      const cases = [
        [{ ...good, sku: "" }, "sku"],
        [{ ...good, name: "" }, "name"],
        [{ ...good, name: "n".repeat(201) }, "name"],
        [{ ...good, description: "d".repeat(2_001) }, "description"],
        [{ ...good, price: undefined }, "price"],
        [{ ...good, price: { currencyCode: "usd", minorUnits: 100n } }, "price.currency_code"],
        [{ ...good, price: { currencyCode: "USD", minorUnits: -1n } }, "price.minor_units"],
        [{ ...good, price: { currencyCode: "USD", minorUnits: 10n ** 12n } }, "price.minor_units"],
      ] as const;
      const refusals = await Promise.all(cases.map(([req]) => failure(ops.updateProduct(req))));
      expect(refusals.map((e) => [e?.code, e?.rawMessage.split(":", 1)[0]])).toEqual(cases.map(([, field]) => [Code.InvalidArgument, field]));

      // Only operators write.
      const { token: demo } = await createClient(StorefrontService, createGrpcTransport({ baseUrl: gateway.url })).issueDemoToken({ customerId: "shopper" });
      expect(await failure(opsWith(demo).updateProduct(good))).toMatchObject({ code: Code.Unauthenticated });
      const roleless = await mintLocalOperatorToken(testOperatorSecret, "mallory", 60, { claim: "roles", role: "viewer" });
      expect(await failure(opsWith(roleless).updateProduct(good))).toMatchObject({ code: Code.PermissionDenied });
      expect(await legacySql`select title from oldshop.products where sku = 'MW-OPS-100'`).toEqual([{ title: "Operator's teapot" }]);
    } finally {
      await legacySql.end();
    }
  });

  it("moves catalog writes to the catalog, whose sync back brings them to the old shop, and back to legacy only once none is pending", async () => {
    const legacySql = connect(mesh.legacyDatabase.oldshopUrl);
    try {
      const moved = await cli(["set", "UpdateProduct", "new", "--reason", "writes to the catalog"]);
      expect(moved).toMatchObject({ status: 0, out: expect.stringContaining(`${UPDATE_PRODUCT}: new`) });
      const write = { sku: "MW-OPS-200", name: "Catalog kettle", description: "Written to the new side.", price: { currencyCode: "USD", minorUnits: 3_999n } };
      // The catalog takes writes once its own view of the route says new (it follows the same table).
      const { product, side } = await eventually(() => ops.updateProduct(write));
      expect(side).toBe("new");
      expect((await ops.listRoutes({})).routes.find((status) => status.route?.method === UPDATE_PRODUCT)).toMatchObject({ legacyCalls: 1n, newCalls: 1n });
      expect(product).toMatchObject({ sku: "MW-OPS-200", name: "Catalog kettle", price: { minorUnits: 3_999n } });
      expect(await sql`select name, price_minor::int as minor from catalog.products where sku = 'MW-OPS-200'`).toEqual([{ name: "Catalog kettle", minor: 3999 }]);
      await eventually(async () => expect(await legacySql`select title, blurb, price::text from oldshop.products where sku = 'MW-OPS-200'`).toEqual([{ title: "Catalog kettle", blurb: "Written to the new side.", price: "39.99" }]));
      await eventually(async () => expect((await ops.listRoutes({})).catalogSync?.syncBackPending).toBe(0n));

      // A write the sync back has not yet taken to the old shop (standing in for one it is
      // down for) holds the route on the new side.
      await sql`insert into catalog.sync_back (event_id, sku, name, description, price_minor, currency) values (gen_random_uuid(), 'MW-OPS-200', 'Ops', '', 100, 'USD')`;
      const held = await failure(ops.setRoute({ method: UPDATE_PRODUCT, mode: RouteMode.LEGACY }));
      expect(held).toMatchObject({ code: Code.FailedPrecondition, rawMessage: expect.stringContaining("sync_back_pending is 1") });
      expect(await cli(["set", "UpdateProduct", "legacy"])).toMatchObject({ status: 1, err: expect.stringContaining("FailedPrecondition: mode: catalog writes stay on the new side") });
      expect((await ops.listRoutes({})).routes.find((status) => status.route?.method === UPDATE_PRODUCT)?.route?.mode).toBe(RouteMode.NEW);

      await sql`delete from catalog.sync_back where refusal is null and sku = 'MW-OPS-200'`;
      const { route } = await ops.setRoute({ method: UPDATE_PRODUCT, mode: RouteMode.LEGACY, reason: "writes back to the old shop" });
      expect(route).toMatchObject({ mode: RouteMode.LEGACY, changedBy: "grace (operator)" });
      const after = await ops.updateProduct({ ...write, name: "Kettle, back home" });
      expect(after.side).toBe("legacy");
      expect(await legacySql`select title from oldshop.products where sku = 'MW-OPS-200'`).toEqual([{ title: "Kettle, back home" }]);
      await eventually(async () => expect(await sql`select name from catalog.products where sku = 'MW-OPS-200'`).toEqual([{ name: "Kettle, back home" }]));

      // The CLI's put-product writes the same way, to the side the route names.
      const put = await cli(["put-product", "MW-OPS-300", "--name", "CLI lamp", "--description", "From the command line.", "--price", "7.5", "--currency", "USD"]);
      expect(put).toMatchObject({ status: 0, err: "", out: 'MW-OPS-300: "CLI lamp" at 7.50 USD, written to the old shop (legacy)' });
      expect(await legacySql`select title, blurb, price::text, currency from oldshop.products where sku = 'MW-OPS-300'`).toEqual([{ title: "CLI lamp", blurb: "From the command line.", price: "7.50", currency: "USD" }]);
      expect(await cli(["put-product", "MW-OPS-300", "--name", "x", "--price", "7.505", "--currency", "USD"])).toMatchObject({ status: 2, err: expect.stringContaining("--price") });
      expect(await cli(["put-product", "MW-OPS-300", "--name", "x", "--price", "7", "--currency", "usd"])).toMatchObject({ status: 1, err: expect.stringContaining("InvalidArgument: price.currency_code") });
    } finally {
      await legacySql.end();
    }
  });

  it("takes discard-refused with the CLI only with one SKU, and lists no refused writes while the old shop refused none", async () => {
    expect(await cli(["discard-refused"])).toMatchObject({ status: 2, err: expect.stringContaining("discard-refused takes <sku>") });
    expect(await cli(["discard-refused", "MW-MUG-001", "MW-LMP-006"])).toMatchObject({ status: 2, err: expect.stringContaining("unexpected arguments: MW-LMP-006") });
    const list = await cli(["list"]);
    expect(list).toMatchObject({ status: 0, err: "" });
    expect(list.out).toMatch(/sync back pending 0$/m);
    expect(list.out).not.toContain("refused");
  });

  it("discards refused catalog writes only for a valid SKU the catalog holds refused writes of, and only for operators", async () => {
    expect(await failure(ops.discardRefusedWrites({ sku: "" }))).toMatchObject({ code: Code.InvalidArgument, rawMessage: expect.stringMatching(/^sku: /) });
    expect(await cli(["discard-refused", ".."])).toMatchObject({ status: 1, err: expect.stringContaining("InvalidArgument: sku: must not be only dots") });
    expect(await cli(["discard-refused", "MW-NONE-404"])).toMatchObject({ status: 1, err: expect.stringContaining("NotFound: ") });
    const roleless = await mintLocalOperatorToken(testOperatorSecret, "mallory", 60, { claim: "roles", role: "viewer" });
    expect(await failure(opsWith(roleless).discardRefusedWrites({ sku: "MW-MUG-001" }))).toMatchObject({ code: Code.PermissionDenied });
  });

  it("gives up catalog writes the old shop refused for good, taking each product again from it, after which writes may move back to legacy", async () => {
    expect(await cli(["set", "UpdateProduct", "new", "--reason", "writes to the catalog"])).toMatchObject({ status: 0 });
    // Writes the old shop refused for good (it refuses what the catalog's checks let through
    // only out of step with them, so the refusals are seeded): the catalog holds the written
    // values, the old shop the ones before (the tests above wrote them there).
    for (const [sku, name] of [["MW-OPS-300", "Refused lamp"], ["MW-OPS-200", "Refused kettle"]] as const) {
      await sql`update catalog.products set name = ${name} where sku = ${sku}`;
      await sql`insert into catalog.sync_back (event_id, sku, name, description, price_minor, currency, state, refusal) values (gen_random_uuid(), ${sku}, ${name}, '', 750, 'USD', 'refused', 'title must not be blank')`;
    }
    const sync = (await ops.listRoutes({})).catalogSync;
    expect(sync).toMatchObject({ syncBackPending: 2n, syncBackRefused: 2n });
    expect(sync?.refusedWrites.map(({ sku, refusal, writtenTime }) => ({ sku, refusal, written: writtenTime !== undefined }))).toEqual([
      { sku: "MW-OPS-300", refusal: "title must not be blank", written: true },
      { sku: "MW-OPS-200", refusal: "title must not be blank", written: true },
    ]);
    expect(await failure(ops.setRoute({ method: UPDATE_PRODUCT, mode: RouteMode.LEGACY }))).toMatchObject({ code: Code.FailedPrecondition, rawMessage: expect.stringContaining("sync_back_pending is 2") });
    const list = await cli(["list"]);
    expect(list.out).toMatch(/sync back pending 2 \(2 refused\)$/m);
    expect(list.out).toMatch(/^  MW-OPS-300 \(written \d{4}-\d\d-\d\dT[\d:.]+Z\): "title must not be blank"\n  MW-OPS-200 \(written [^)]+\): "title must not be blank"$/m);

    const discarded = await ops.discardRefusedWrites({ sku: "MW-OPS-300" });
    expect(discarded).toMatchObject({ discarded: 1, resynced: true, product: { sku: "MW-OPS-300", name: "CLI lamp", price: { currencyCode: "USD", minorUnits: 750n } } });
    expect(await sql`select name from catalog.products where sku = 'MW-OPS-300'`).toEqual([{ name: "CLI lamp" }]);
    expect((await ops.listRoutes({})).catalogSync).toMatchObject({ syncBackPending: 1n, syncBackRefused: 1n, refusedWrites: [{ sku: "MW-OPS-200" }] });
    expect(await cli(["discard-refused", "MW-OPS-200"])).toMatchObject({ status: 0, err: "", out: 'MW-OPS-200: discarded 1 refused write; taken again from the old shop: the catalog holds "Kettle, back home" at 39.99 USD' });
    expect(await sql`select name from catalog.products where sku = 'MW-OPS-200'`).toEqual([{ name: "Kettle, back home" }]);
    expect((await ops.listRoutes({})).catalogSync).toMatchObject({ syncBackPending: 0n, syncBackRefused: 0n, refusedWrites: [] });
    // Nothing refused is left to give up.
    expect(await cli(["discard-refused", "MW-OPS-300"])).toMatchObject({ status: 1, err: expect.stringContaining("NotFound: ") });
    const { route } = await ops.setRoute({ method: UPDATE_PRODUCT, mode: RouteMode.LEGACY, reason: "refused write given up" });
    expect(route?.mode).toBe(RouteMode.LEGACY);
  });
});
