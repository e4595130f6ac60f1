import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Kvm } from "@nats-io/kv";
import { startTestNats, type TestNats } from "#tests/support/nats.js";
import { eventually } from "#tests/support/eventually.js";
import { startTcpFaultProxy } from "#tools/chaos/tcp-fault-proxy.js";
import { silentLogger } from "#tests/support/silent-logger.js";
import { connectBus, type BusConnection } from "../messaging/connection.js";
import { ROUTES_BUCKET, RouteConflictError, RouteTableUnavailableError, UnknownRouteError, openRouteTable, routeKeyOf, type RouteTable } from "./route-table.js";
import { InvalidArgumentError } from "../domain/errors.js";

const LIST = "shop.gateway.v1.StorefrontService/ListProducts";
const OTHER = "shop.gateway.v1.StorefrontService/GetProduct";
const WRITE = "shop.gateway.v1.OperatorService/UpdateProduct";
const routes = { [LIST]: "legacy", [OTHER]: "new", [WRITE]: { mode: "legacy", modes: ["legacy", "new"] } } as const;
const change = { changedBy: "ada (operator)", reason: "the backfill is done" };

describe("route table", () => {
  let nats: TestNats;
  const buses: BusConnection[] = [];
  const tables: RouteTable[] = [];
  /** A route table as one mesh NATS user (its real permissions), or the suite's. */
  const tableAs = (user?: string) => {
    const bus = connectBus({ url: user ? nats.urlFor(user) : nats.url, name: `routes-${user ?? "suite"}`, logger: silentLogger });
    buses.push(bus);
    const table = openRouteTable({ bus, routes, logger: silentLogger });
    tables.push(table);
    return table;
  };
  let gateway: RouteTable;
  let order: RouteTable;
  let console_: RouteTable;

  beforeAll(async () => {
    nats = await startTestNats();
    gateway = tableAs("gateway");
    order = tableAs("order");
    console_ = tableAs("console");
  });
  afterAll(async () => {
    for (const table of tables) table.close();
    await Promise.all(buses.map((bus) => bus.close()));
    await nats.stop();
  });

  it("serves each method's default, revision 0, before any entry exists, and refuses methods it does not route", () => {
    expect(gateway.route(LIST)).toMatchObject({ method: LIST, mode: "legacy", canaryPercent: 0, changedBy: "", revision: 0 });
    expect(gateway.list().map((r) => [r.method, r.mode])).toEqual([
      [LIST, "legacy"],
      [OTHER, "new"],
      [WRITE, "legacy"],
    ]);
    expect(gateway.modes(LIST)).toEqual(["legacy", "shadow", "canary", "new"]);
    expect(gateway.modes(WRITE)).toEqual(["legacy", "new"]);
    expect(() => gateway.route("shop.gateway.v1.StorefrontService/Nope")).toThrow(UnknownRouteError);
  });

  it("takes a change from the console's user and every follower sees it without a restart", async () => {
    // Retried: the bucket just created may not take a write yet on a loaded host (no responders).
    const written = await eventually(() => console_.set(LIST, { ...change, mode: "shadow" }));
    expect(written).toMatchObject({ method: LIST, mode: "shadow", canaryPercent: 0, changedBy: "ada (operator)", reason: "the backfill is done" });
    expect(written.revision).toBeGreaterThan(0);
    expect(Date.parse(written.changeTime)).toBeGreaterThan(Date.now() - 60_000);
    // The writer knows its own change at once; the followers as the watch delivers it.
    expect(console_.route(LIST)).toEqual(written);
    await eventually(() => expect(gateway.route(LIST)).toEqual(written));
    await eventually(() => expect(order.route(LIST)).toEqual(written));
    expect(gateway.route(OTHER).mode).toBe("new");
  });

  it("compares and sets: a change based on a stale revision is refused, one on the current revision taken", async () => {
    const current = await console_.set(LIST, { ...change, mode: "canary", canaryPercent: 10 });
    await expect(console_.set(LIST, { ...change, mode: "new" }, current.revision - 1)).rejects.toBeInstanceOf(RouteConflictError);
    expect(console_.route(LIST)).toEqual(current);
    const next = await console_.set(LIST, { ...change, mode: "canary", canaryPercent: 50 }, current.revision);
    expect(next.revision).toBeGreaterThan(current.revision);
    await eventually(() => expect(gateway.route(LIST)).toMatchObject({ mode: "canary", canaryPercent: 50, revision: next.revision }));
  });

  it("validates a change before writing it, naming the field", async () => {
    const before = console_.route(LIST);
    await expect(console_.set(LIST, { ...change, mode: "canary", canaryPercent: 0 })).rejects.toThrow(/^canary_percent: must be 1 to 99/);
    await expect(console_.set(LIST, { ...change, mode: "canary", canaryPercent: 100 })).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(console_.set(LIST, { ...change, mode: "new", canaryPercent: 5 })).rejects.toThrow(/^canary_percent: must be 0 unless/);
    await expect(console_.set(LIST, { ...change, mode: "sideways" as "new" })).rejects.toThrow(/^mode: /);
    await expect(console_.set(LIST, { ...change, mode: "new", reason: "x".repeat(1_001) })).rejects.toThrow(/^reason: /);
    await expect(console_.set("shop.gateway.v1.StorefrontService/Nope", { ...change, mode: "new" })).rejects.toBeInstanceOf(UnknownRouteError);
    expect(console_.route(LIST)).toEqual(before);
  });

  it("takes only the modes a route declares: a write's route moves between legacy and new, never shadow or canary", async () => {
    await expect(console_.set(WRITE, { ...change, mode: "shadow" })).rejects.toThrow(/^mode: this route takes only legacy or new, not shadow/);
    await expect(console_.set(WRITE, { ...change, mode: "canary", canaryPercent: 50 })).rejects.toBeInstanceOf(InvalidArgumentError);
    expect(console_.route(WRITE)).toMatchObject({ mode: "legacy", revision: 0 });
    const moved = await console_.set(WRITE, { ...change, mode: "new" });
    await eventually(() => expect(gateway.route(WRITE)).toEqual(moved));
    // One written behind the table's back is ignored like any entry that does not validate.
    const bus = connectBus({ url: nats.url, name: "routes-raw-write", logger: silentLogger });
    buses.push(bus);
    const kv = await new Kvm((await bus.ready).js).open(ROUTES_BUCKET);
    await kv.put(routeKeyOf(WRITE), JSON.stringify({ mode: "shadow", canaryPercent: 0, changedBy: "x", changeTime: new Date().toISOString(), reason: "" }));
    const marker = await kv.put(routeKeyOf(OTHER), JSON.stringify({ mode: "new", canaryPercent: 0, changedBy: "x", changeTime: new Date().toISOString(), reason: "" }));
    await eventually(() => expect(gateway.route(OTHER).revision).toBe(marker));
    expect(gateway.route(WRITE)).toEqual(moved);
    expect(() => openRouteTable({ bus, routes: { [WRITE]: { mode: "shadow", modes: ["legacy", "new"] } }, logger: silentLogger })).toThrow(/defaults to shadow, which it does not take/);
  });

  it("refuses writes from a follower's NATS user: the gateway's and order's users read the table only", async () => {
    const before = console_.route(LIST);
    await expect(gateway.set(LIST, { ...change, mode: "new" })).rejects.toBeInstanceOf(RouteTableUnavailableError);
    expect(console_.route(LIST)).toEqual(before);
  });

  it("ignores an entry that does not validate, keeping the last good route, and returns to the default when the entry is deleted", async () => {
    const good = await console_.set(LIST, { ...change, mode: "shadow" });
    await eventually(() => expect(gateway.route(LIST)).toEqual(good));
    // The suite's user stands for anyone who writes the bucket behind the table's back.
    const bus = connectBus({ url: nats.url, name: "routes-raw", logger: silentLogger });
    buses.push(bus);
    const kv = await new Kvm((await bus.ready).js).open(ROUTES_BUCKET);
    for (const bad of ["{not json", JSON.stringify({ mode: "canary", canaryPercent: 150, changedBy: "", changeTime: new Date().toISOString(), reason: "" }), JSON.stringify({ mode: "new" })]) {
      await kv.put(routeKeyOf(LIST), bad);
    }
    const marker = await kv.put(routeKeyOf(OTHER), JSON.stringify({ mode: "legacy", canaryPercent: 0, changedBy: "x", changeTime: new Date().toISOString(), reason: "" }));
    // The later good entry of another key has arrived, so the bad ones before it were seen, and ignored.
    await eventually(() => expect(gateway.route(OTHER).revision).toBe(marker));
    expect(gateway.route(LIST)).toEqual(good);
    await kv.delete(routeKeyOf(OTHER));
    await eventually(() => expect(gateway.route(OTHER)).toMatchObject({ mode: "new", revision: 0 }));
  });

  it("catches up on request: once caughtUp says so, a follower behind a slow link holds the bucket's newest change", async () => {
    const proxy = await startTcpFaultProxy();
    try {
      const natsUrl = new URL(nats.urlFor("order"));
      proxy.setTarget(Number(natsUrl.port));
      natsUrl.port = new URL(proxy.url).port;
      const bus = connectBus({ url: natsUrl.href, name: "routes-slow", logger: silentLogger });
      buses.push(bus);
      const slow = openRouteTable({ bus, routes, logger: silentLogger });
      tables.push(slow);
      await eventually(async () => expect(await slow.caughtUp()).toBe("current"));
      // Every chunk a second late: the watch delivers the change well after the writer has its answer.
      proxy.setMode({ kind: "slow", delayMs: 1_000 });
      const changed = await console_.set(WRITE, { ...change, mode: slow.route(WRITE).mode === "new" ? "legacy" : "new", reason: "behind a slow link" });
      expect(slow.route(WRITE).revision).toBeLessThan(changed.revision);
      expect(await slow.caughtUp(5_000)).toBe("current");
      expect(slow.route(WRITE)).toEqual(changed);
      slow.close();
    } finally {
      await proxy.close();
    }
  });

  it("keeps serving the last known routes while NATS is away, and follows again once it is back", async () => {
    const known = await console_.set(LIST, { ...change, mode: "new" });
    await eventually(() => expect(gateway.route(LIST)).toEqual(known));
    await nats.kill();
    const asked = Date.now();
    expect(await gateway.caughtUp(300)).toBe("unknown");
    expect(Date.now() - asked).toBeLessThan(2_000);
    expect(gateway.route(LIST)).toEqual(known);
    await expect(console_.set(LIST, { ...change, mode: "legacy" })).rejects.toBeInstanceOf(RouteTableUnavailableError);
    expect(gateway.route(LIST)).toEqual(known);
    await nats.restart();
    const back = await eventually(() => console_.set(LIST, { ...change, mode: "legacy", reason: "rollback" }), 20_000, 500);
    await eventually(() => expect(gateway.route(LIST)).toEqual(back), 20_000);
  }, 60_000);
});
