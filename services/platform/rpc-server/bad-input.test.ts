import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connect as connectHttp2, createServer as createHttp2Server, type ClientHttp2Session, type Http2Server, type ServerHttp2Session } from "node:http2";
import type { AddressInfo } from "node:net";
import { create, getOption } from "@bufbuild/protobuf";
import { ValueSchema, type Value } from "@bufbuild/protobuf/wkt";
import { Code, createClient, type ConnectRouter, type HandlerContext, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { pino } from "pino";
import { Health, HealthCheckResponse_ServingStatus } from "#gen/grpc/health/v1/health_pb.js";
import { limits } from "#gen/meshwork/v1/limits_pb.js";
import { AdjustStockRequestSchema, InventoryService, ListProductsRequestSchema } from "#gen/shop/inventory/v1/inventory_service_pb.js";
import { RefundRequestSchema } from "#gen/shop/payment/v1/payment_service_pb.js";
import { createNodeHandler } from "./node-handler.js";
import { startServer, type RunningServer } from "./server.js";
import { createStringGuardInterceptor } from "./string-guard.js";

const logger = pino({ level: "silent" });

/** What the handlers saw of the last call: the timeout connect-es armed for it. */
let seenTimeoutMs: number | undefined;

const routes = (router: ConnectRouter) =>
  router.service(InventoryService, {
    async getStock(req, ctx: HandlerContext) {
      seenTimeoutMs = ctx.timeoutMs();
      // Works for 20 ms, long enough for a deadline timer that overflowed to 1 ms to fire.
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(resolve, 20);
        ctx.signal.addEventListener("abort", () => (clearTimeout(timer), reject(ctx.signal.reason)), { once: true });
      });
      return { stock: { sku: req.sku, available: 1 } };
    },
    listProducts: (req) => ({ products: req.skus.map((sku) => ({ sku })) }),
    reserveStock: (req) => ({ reservation: { orderId: req.orderId } }),
    adjustStock: (req) => ({ stock: { sku: req.sku } }),
  });

/** A frame of the gRPC and Connect streaming protocols: flags, length, payload. */
const frame = (flags: number, payload: Uint8Array = new Uint8Array()) => {
  const bytes = new Uint8Array(5 + payload.byteLength);
  bytes[0] = flags;
  new DataView(bytes.buffer).setUint32(1, payload.byteLength);
  bytes.set(payload, 5);
  return bytes;
};

/** One raw HTTP/2 request: response headers, trailers and body. */
function h2(session: ClientHttp2Session, path: string, headers: Record<string, string>, body: Uint8Array) {
  return new Promise<{ headers: Record<string, unknown>; trailers: Record<string, unknown>; body: Buffer }>((resolve, reject) => {
    const stream = session.request({ ":method": "POST", ":path": path, ...headers });
    const result = { headers: {}, trailers: {}, body: Buffer.alloc(0) };
    const chunks: Buffer[] = [];
    stream.on("response", (h) => (result.headers = h));
    stream.on("trailers", (t) => (result.trailers = t));
    stream.on("data", (chunk: Buffer) => chunks.push(chunk));
    stream.on("error", reject);
    stream.on("close", () => resolve({ ...result, body: Buffer.concat(chunks) }));
    stream.end(body);
  });
}

describe("bad input at the kit's server", () => {
  let server: RunningServer;
  let session: ClientHttp2Session;
  const warnings: Error[] = [];
  const onWarning = (warning: Error) => warnings.push(warning);

  beforeAll(async () => {
    process.on("warning", onWarning);
    server = await startServer(
      { logger, services: [InventoryService], maxRequestBytes: 1024 * 1024, shutdownGraceMs: 1_000, maxTimeoutMs: 5_000, routes },
      { host: "127.0.0.1", port: 0 },
    );
    session = connectHttp2(server.url);
  });
  afterAll(async () => {
    process.off("warning", onWarning);
    session.close();
    await server.close();
  });

  describe("deadlines are capped, never overflowed", () => {
    const huge: { protocol: string; transport: () => Transport; header: Record<string, string> }[] = [
      { protocol: "Connect", transport: () => createConnectTransport({ baseUrl: server.url, httpVersion: "2" }), header: { "connect-timeout-ms": "9999999999" } },
      { protocol: "gRPC", transport: () => createGrpcTransport({ baseUrl: server.url }), header: { "grpc-timeout": "99999999H" } },
      { protocol: "gRPC-Web", transport: () => createGrpcWebTransport({ baseUrl: server.url, httpVersion: "1.1" }), header: { "grpc-timeout": "99999999H" } },
    ];
    for (const { protocol, transport, header } of huge) {
      it(`${protocol}: a deadline of centuries runs the call, with a timer that fits in Node's`, async () => {
        seenTimeoutMs = undefined;
        const client = createClient(InventoryService, transport());
        expect((await client.getStock({ sku: "x" }, { headers: header })).stock?.sku).toBe("x");
        expect(seenTimeoutMs).toBeGreaterThan(1_000);
        expect(seenTimeoutMs).toBeLessThanOrEqual(2_147_483_647);
        expect(warnings.filter((w) => w.name === "TimeoutOverflowWarning")).toEqual([]);
      });
    }

    it("a deadline within the cap is kept as sent", async () => {
      const client = createClient(InventoryService, createGrpcTransport({ baseUrl: server.url }));
      await client.getStock({ sku: "x" }, { headers: { "grpc-timeout": "3S" } });
      expect(seenTimeoutMs).toBeGreaterThan(2_000);
      expect(seenTimeoutMs).toBeLessThanOrEqual(3_000);
    });
  });

  describe("a Connect GET with a malformed message is INVALID_ARGUMENT, not a bare 500", () => {
    const get = (query: string) => fetch(`${server.url}/shop.inventory.v1.InventoryService/ListProducts?${query}`);
    for (const [what, query] of [
      ["percent signs", "encoding=proto&base64=1&message=%%%%"],
      ["a character outside both base64 alphabets", "encoding=proto&base64=1&message=!!!!"],
      ["a dangling sextet", "encoding=proto&base64=1&message=A"],
      ["JSON in bad base64", "encoding=json&base64=1&message=****"],
    ] as const) {
      it(`base64 with ${what}`, async () => {
        const res = await get(query);
        expect(res.status).toBe(400);
        expect(await res.json()).toEqual({ code: "invalid_argument", message: "message: query parameter is not valid base64url" });
      });
    }

    it("JSON that does not parse, or is missing, names the message type", async () => {
      for (const query of ["encoding=json&message=%%%%", "encoding=json"]) {
        const res = await get(query);
        expect(res.status).toBe(400);
        expect(await res.json()).toMatchObject({ code: "invalid_argument", message: expect.stringContaining("cannot decode message shop.inventory.v1.ListProductsRequest from JSON") });
      }
    });

    it("still serves well-formed GETs, in both alphabets and without a message", async () => {
      const sku = Buffer.from([0x0a, 0x03, 0x3e, 0x3f, 0x3f]); // skus: [">??"], whose base64 differs between alphabets
      for (const message of [sku.toString("base64"), sku.toString("base64url")]) {
        const res = await get(`encoding=proto&base64=1&message=${encodeURIComponent(message)}`);
        expect(res.status).toBe(200);
      }
      const json = await get(`encoding=json&message=${encodeURIComponent(JSON.stringify({ skus: ["a"] }))}`);
      expect(await json.json()).toEqual({ products: [{ sku: "a" }] });
      expect((await get("encoding=proto")).status).toBe(200); // no message: the empty request
    });
  });

  describe("a frame flagged compressed without an encoding is INVALID_ARGUMENT", () => {
    it("gRPC", async () => {
      const res = await h2(session, "/shop.inventory.v1.InventoryService/GetStock", { "content-type": "application/grpc" }, frame(0x01));
      const status = res.trailers["grpc-status"] ?? res.headers["grpc-status"];
      expect(status).toBe(String(Code.InvalidArgument));
    });

    it("gRPC-Web, in its trailer frame", async () => {
      const res = await fetch(`${server.url}/shop.inventory.v1.InventoryService/GetStock`, {
        method: "POST",
        headers: { "content-type": "application/grpc-web+proto" },
        body: frame(0x01),
      });
      const trailers = Buffer.from(await res.arrayBuffer()).toString("latin1");
      expect(trailers).toContain(`grpc-status: ${Code.InvalidArgument}`);
      expect(trailers).toContain("grpc-message: received compressed envelope, but do not know how to decompress");
    });

    it("gRPC and Connect streaming (grpc.health.v1.Health/Watch)", async () => {
      const grpc = await h2(session, "/grpc.health.v1.Health/Watch", { "content-type": "application/grpc" }, frame(0x01));
      expect(grpc.trailers["grpc-status"] ?? grpc.headers["grpc-status"]).toBe(String(Code.InvalidArgument));
      const connect = await h2(session, "/grpc.health.v1.Health/Watch", { "content-type": "application/connect+proto" }, frame(0x01));
      const endStream = JSON.parse(connect.body.subarray(5).toString("utf8")) as { error?: { code?: string } };
      expect(connect.body[0]).toBe(0x02);
      expect(endStream.error?.code).toBe("invalid_argument");
    });

    it("a streaming request that is not protobuf is INVALID_ARGUMENT too", async () => {
      const connect = await h2(session, "/grpc.health.v1.Health/Watch", { "content-type": "application/connect+proto" }, frame(0x00, new Uint8Array([0xff, 0xff])));
      expect(JSON.parse(connect.body.subarray(5).toString("utf8"))).toMatchObject({ error: { code: "invalid_argument", message: expect.stringMatching(/^parse binary:/) } });
    });

    it("an encoding we do not support is UNIMPLEMENTED, as the gRPC spec says", async () => {
      const res = await h2(session, "/shop.inventory.v1.InventoryService/GetStock", { "content-type": "application/grpc", "grpc-encoding": "snappy" }, frame(0x01));
      expect(res.trailers["grpc-status"] ?? res.headers["grpc-status"]).toBe(String(Code.Unimplemented));
      const connect = await fetch(`${server.url}/shop.inventory.v1.InventoryService/GetStock`, {
        method: "POST",
        headers: { "content-type": "application/proto", "content-encoding": "snappy" },
        body: new Uint8Array([1, 2, 3]),
      });
      expect(connect.status).toBe(501);
    });
  });

  describe("request limits from the contract", () => {
    const client = () => createClient(InventoryService, createConnectTransport({ baseUrl: server.url, httpVersion: "2" }));

    it("the contract states them as (meshwork.v1.limits) options", () => {
      expect(getOption(AdjustStockRequestSchema.field.reason!, limits).maxLen).toBe(1000);
      expect(getOption(RefundRequestSchema.field.reason!, limits).maxLen).toBe(1000);
      expect(getOption(ListProductsRequestSchema.field.skus!, limits).maxItems).toBe(100);
    });

    it("a string without an option holds at most 128 characters, counted as code points", async () => {
      await expect(client().getStock({ sku: "x".repeat(129) })).rejects.toMatchObject({ code: Code.InvalidArgument, rawMessage: "sku: must be at most 128 characters" });
      // 128 astral characters are 256 UTF-16 units, and still 128 characters.
      expect((await client().getStock({ sku: "\u{1F600}".repeat(128) })).stock?.sku).toBe("\u{1F600}".repeat(128));
      await expect(client().getStock({ sku: "\u{1F600}".repeat(129) })).rejects.toMatchObject({ code: Code.InvalidArgument });
    });

    it("a field's max_len replaces the default", async () => {
      expect((await client().adjustStock({ sku: "a", delta: 1, reason: "r".repeat(1000) })).stock?.sku).toBe("a");
      await expect(client().adjustStock({ sku: "a", delta: 1, reason: "r".repeat(1001) })).rejects.toMatchObject({
        code: Code.InvalidArgument,
        rawMessage: "reason: must be at most 1000 characters",
      });
    });

    it("a repeated field holds at most its max_items, and each string in it its max_len", async () => {
      const skus = (n: number) => Array.from({ length: n }, (_, i) => `sku-${i}`);
      expect((await client().listProducts({ skus: skus(100) })).products).toHaveLength(100);
      await expect(client().listProducts({ skus: skus(70_000) })).rejects.toMatchObject({ code: Code.InvalidArgument, rawMessage: "skus: must have at most 100 items" });
      await expect(client().listProducts({ skus: ["a", "b".repeat(129)] })).rejects.toMatchObject({ rawMessage: "skus[1]: must be at most 128 characters" });
    });

    it("nested messages are checked, with the path to the field", async () => {
      const items = [{ sku: "a", quantity: 1 }, { sku: "b".repeat(200), quantity: 1 }];
      await expect(client().reserveStock({ orderId: "o", items })).rejects.toMatchObject({ code: Code.InvalidArgument, rawMessage: "items[1].sku: must be at most 128 characters" });
      const many = Array.from({ length: 101 }, () => ({ sku: "a", quantity: 1 }));
      await expect(client().reserveStock({ orderId: "o", items: many })).rejects.toMatchObject({ rawMessage: "items: must have at most 100 items" });
      await expect(client().reserveStock({ orderId: "o", items: [{ sku: "a\u0000", quantity: 1 }] })).rejects.toMatchObject({ rawMessage: "items[0].sku: must not contain NUL characters" });
    });

    it("a message type that contains itself is planned once and checked at any depth", async () => {
      const guard = createStringGuardInterceptor()(async () => ({}) as never);
      const check = (message: Value) => guard({ stream: false, method: { input: ValueSchema }, message } as never);
      const nested = create(ValueSchema, {
        kind: { case: "structValue", value: { fields: { note: { kind: { case: "listValue", value: { values: [{ kind: { case: "stringValue", value: "n".repeat(129) } }] } } } } } },
      });
      await expect(check(nested)).rejects.toMatchObject({ code: Code.InvalidArgument, rawMessage: "struct_value.fields[note].list_value.values[0].string_value: must be at most 128 characters" });
      const wide = create(ValueSchema, { kind: { case: "listValue", value: { values: Array.from({ length: 101 }, () => ({})) } } });
      await expect(check(wide)).rejects.toMatchObject({ rawMessage: "list_value.values: must have at most 100 items" });
      await expect(check(create(ValueSchema, { kind: { case: "stringValue", value: "fine" } }))).resolves.toEqual({});
    });

    it("a streaming request is checked too", async () => {
      const health = createClient(Health, createGrpcTransport({ baseUrl: server.url }));
      const watch = async () => {
        for await (const _ of health.watch({ service: "s".repeat(129) })) return;
      };
      await expect(watch()).rejects.toMatchObject({ code: Code.InvalidArgument, rawMessage: "service: must be at most 128 characters" });
    });
  });
});

describe("createNodeHandler's deadline cap", () => {
  let server: Http2Server;
  let url: string;
  const sessions = new Set<ServerHttp2Session>();
  beforeAll(async () => {
    const withWatch = (router: ConnectRouter) =>
      routes(router).service(Health, {
        check: () => ({}),
        async *watch(_req, ctx) {
          seenTimeoutMs = ctx.timeoutMs();
          yield { status: HealthCheckResponse_ServingStatus.SERVING };
        },
      });
    server = createHttp2Server(createNodeHandler({ logger, routes: withWatch, maxTimeoutMs: 5_000 }));
    server.on("session", (session: ServerHttp2Session) => sessions.add(session));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const session of sessions) session.destroy();
    await closed;
  });

  it("gives a caller asking for more than maxTimeoutMs exactly maxTimeoutMs, on every protocol", async () => {
    const calls: { transport: Transport; header: Record<string, string> }[] = [
      { transport: createConnectTransport({ baseUrl: url, httpVersion: "2" }), header: { "connect-timeout-ms": "9999999999" } },
      { transport: createGrpcTransport({ baseUrl: url }), header: { "grpc-timeout": "99999999H" } },
      { transport: createGrpcWebTransport({ baseUrl: url, httpVersion: "2" }), header: { "grpc-timeout": "60S" } },
    ];
    const seen: number[] = [];
    for (const { transport, header } of calls) {
      seenTimeoutMs = undefined;
      await createClient(InventoryService, transport).getStock({ sku: "x" }, { headers: header });
      seen.push(seenTimeoutMs ?? Number.NaN);
    }
    expect(seen).toHaveLength(3);
    for (const timeoutMs of seen) expect(timeoutMs > 4_000 && timeoutMs <= 5_000).toBe(true);
  });

  it("leaves a stream the caller's longer timeout, capped only at Node's timer ceiling", async () => {
    const health = createClient(Health, createGrpcTransport({ baseUrl: url }));
    for (const [header, atLeast, atMost] of [["60S", 59_000, 60_000], ["99999999H", 2_000_000_000, 2_147_483_647]] as const) {
      seenTimeoutMs = undefined;
      for await (const _ of health.watch({}, { headers: { "grpc-timeout": header } })) break;
      expect(seenTimeoutMs).toBeGreaterThan(atLeast);
      expect(seenTimeoutMs).toBeLessThanOrEqual(atMost);
    }
  });
});
