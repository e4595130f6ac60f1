import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { findNatsServer } from "./local-nats.js";
import { meshDeployables } from "#mesh";
import { meshNatsUsers, natsPasswordVariable, natsServerConfig, type NatsUser } from "./nats-accounts.js";

/** NATS subject matching: `*` is one token, a trailing `>` one or more. */
function matches(pattern: string, subject: string): boolean {
  const [p, s] = [pattern.split("."), subject.split(".")];
  for (let i = 0; i < p.length; i++) {
    if (p[i] === ">") return s.length > i;
    if (i >= s.length || (p[i] !== "*" && p[i] !== s[i])) return false;
  }
  return p.length === s.length;
}

const users = meshNatsUsers(meshDeployables);
const publishers = (subject: string) => users.filter((u) => u.publish.some((p) => matches(p, subject))).map((u) => u.name);
const subscribers = (subject: string) => users.filter((u) => u.subscribe.some((p) => matches(p, subject))).map((u) => u.name);

describe("meshNatsUsers", () => {
  it("names one user per deployable but the legacy one (which uses no NATS), the operator, and the console's backend", () => {
    expect(users.map((u) => u.name)).toEqual([...meshDeployables.filter((d) => !("legacy" in d)).map((d) => d.name), "operator", "console"]);
    expect(users.map((u) => u.name)).toEqual(expect.arrayContaining(["inventory", "payment", "order", "notification", "gateway"]));
  });

  it("lets a context's events be published by its own service alone (and the operator, who replays dead letters; the console only what a consumer reads)", () => {
    // notification consumes order's events: the only ones a dead letter can hold.
    expect(publishers("shop.order.v1.OrderConfirmed")).toEqual(["order", "operator", "console"]);
    expect(publishers("shop.payment.v1.PaymentCaptured")).toEqual(["payment", "operator"]);
    expect(publishers("shop.inventory.v1.StockReserved")).toEqual(["inventory", "operator"]);
    expect(publishers("dlq.notification")).toEqual(["notification"]);
  });

  it("gives no one STREAM.DELETE or PURGE, and stream creation only for the streams a user runs", () => {
    for (const action of ["DELETE", "PURGE"]) for (const stream of ["SHOP_ORDER", "SHOP_DLQ", "KV_meshwork_services"]) expect(publishers(`$JS.API.STREAM.${action}.${stream}`)).toEqual([]);
    expect(publishers("$JS.API.STREAM.CREATE.SHOP_PAYMENT")).toEqual(["payment"]);
    // A stream's owner alone configures it: a consumer could otherwise shrink its retention.
    expect(publishers("$JS.API.STREAM.UPDATE.SHOP_ORDER")).toEqual(["order"]);
    expect(publishers("$JS.API.STREAM.CREATE.SHOP_ORDER")).toEqual(["order"]);
    expect(publishers("$JS.API.STREAM.INFO.SHOP_ORDER")).toContain("notification");
    expect(publishers("$JS.API.STREAM.CREATE.SHOP_DLQ")).toEqual(["catalog", "notification"]); // the consumers, whose dead letters go there
    expect(publishers("$JS.API.STREAM.CREATE.EVIL")).toEqual([]);
    expect(publishers("$JS.API.STREAM.MSG.DELETE.SHOP_DLQ")).toEqual(["operator", "console"]);
    expect(publishers("$JS.API.STREAM.MSG.GET.SHOP_ORDER")).not.toContain("console");
    expect(publishers("$JS.API.STREAM.INFO.SHOP_ORDER")).not.toContain("console");
    expect(publishers("$JS.API.STREAM.MSG.DELETE.SHOP_ORDER")).toEqual([]);
  });

  it("lets a durable be created, read and acked by its consumer alone", () => {
    expect(publishers("$JS.API.CONSUMER.CREATE.SHOP_ORDER.notification.shop.order.v1.>")).toEqual(["notification"]);
    expect(publishers("$JS.API.CONSUMER.MSG.NEXT.SHOP_ORDER.notification")).toEqual(["notification"]);
    expect(publishers("$JS.ACK.SHOP_ORDER.notification.1.2.3.1700000000.0")).toEqual(["notification"]);
    expect(publishers("$JS.API.CONSUMER.CREATE.SHOP_ORDER.evil.shop.order.v1.>")).toEqual([]);
  });

  it("lets each service write only its own services' registry keys", () => {
    expect(publishers("$KV.meshwork_services.shop.payment.v1.PaymentService.evil1")).toEqual(["payment"]);
    expect(publishers("$KV.meshwork_services.shop.order.v1.SagaAdminService.x")).toEqual(["order"]);
    expect(publishers("$KV.meshwork_services.shop.gateway.v1.StorefrontService.x")).toEqual(["gateway"]);
  });

  it("lets the old shop's callers follow the route table, and only the console and the operator write it", () => {
    expect(publishers("$JS.API.CONSUMER.CREATE.KV_meshwork_routes.KV_WATCHER_1.$KV.meshwork_routes.>")).toEqual(["catalog", "order", "gateway", "operator", "console"]);
    expect(publishers("$JS.API.STREAM.INFO.KV_meshwork_routes")).toEqual(expect.arrayContaining(["catalog", "order", "gateway", "console"]));
    expect(publishers("$KV.meshwork_routes.shop.gateway.v1.StorefrontService.ListProducts")).toEqual(["operator", "console"]);
    for (const action of ["DELETE", "PURGE", "UPDATE", "MSG.DELETE"]) expect(publishers(`$JS.API.STREAM.${action}.KV_meshwork_routes`)).toEqual([]);
  });

  it("keeps each inbox to its user, and a context's live events to the deployables that watch it", () => {
    expect(subscribers("_INBOX_order.abc.1")).toEqual(["order"]);
    expect(subscribers("_INBOX_operator.abc")).toEqual(["operator"]);
    expect(subscribers("_INBOX_console.abc")).toEqual(["console"]);
    const watchers = (context: string) => meshDeployables.filter((d) => "watches" in d && (d.watches as readonly string[]).includes(context)).map((d) => d.name);
    expect(watchers("order")).toContain("gateway");
    for (const context of ["order", "payment", "inventory"]) expect(subscribers(`shop.${context}.v1.SomethingHappened`)).toEqual(watchers(context));
  });
});

describe("natsPasswordVariable", () => {
  it("names the variable after the user", () => {
    expect(natsPasswordVariable("order")).toBe("ORDER_NATS_PASSWORD");
    expect(natsPasswordVariable("inventory-2")).toBe("INVENTORY_2_NATS_PASSWORD");
  });
});

describe("natsServerConfig", () => {
  const scratch = mkdtempSync(join(tmpdir(), "meshwork-nats-config-"));
  afterAll(() => rmSync(scratch, { recursive: true, force: true }));
  const config = natsServerConfig({ port: 4999, host: "127.0.0.1", storeDir: join(scratch, "store"), users });

  it("refers to each password by variable and holds none", () => {
    for (const user of users) expect(config).toContain(`password: $${natsPasswordVariable(user.name)}\n`);
    expect(config).not.toMatch(/password: [^$]/);
  });

  it("refuses a user name or subject that would need escaping in the file", () => {
    const user = (fields: Partial<NatsUser>): NatsUser => ({ name: "x", publish: [], subscribe: [], ...fields });
    expect(() => natsServerConfig({ port: 1, host: "h", storeDir: "s", users: [user({ name: 'x" }' })] })).toThrow(/not a NATS user name/);
    expect(() => natsServerConfig({ port: 1, host: "h", storeDir: "s", users: [user({ publish: ['a"] } ] }'] })] })).toThrow(/not a subject/);
    expect(() => natsServerConfig({ port: 1, host: "h", storeDir: "s", users: [] })).toThrow(/at least one user/);
  });

  it("is a config nats-server accepts, and refuses without a user's password", () => {
    const binary = findNatsServer();
    expect(binary).toBeDefined();
    const file = join(scratch, "nats.conf");
    writeFileSync(file, config);
    const env = Object.fromEntries(users.map((u) => [natsPasswordVariable(u.name), `"${u.name}-pw"`]));
    const check = (variables: NodeJS.ProcessEnv) => spawnSync(binary!, ["-t", "-c", file], { env: variables, encoding: "utf8" });
    expect(check(env).status).toBe(0);
    const { ORDER_NATS_PASSWORD: _, ...withoutOrder } = env;
    const refused = check(withoutOrder);
    expect(refused.status).not.toBe(0);
    expect(refused.stderr).toMatch(/ORDER_NATS_PASSWORD/);
  });
});
