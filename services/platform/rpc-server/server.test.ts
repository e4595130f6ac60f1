import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { connect as connectHttp2 } from "node:http2";
import { createConnection } from "node:net";
import { pino } from "pino";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "#gen/grpc/health/v1/health_pb.js";
import { InventoryService } from "#gen/shop/inventory/v1/inventory_service_pb.js";
import { InvalidArgumentError } from "../domain/errors.js";
import { remainingBudgetMs } from "../rpc-client/deadline.js";
import { StorefrontService } from "#gen/shop/gateway/v1/storefront_service_pb.js";
import { startServer, type RunningServer } from "./server.js";

/**
 * A real server on a free port, with a stand-in implementation of a generated service whose
 * handlers misbehave on purpose.
 */
describe("startServer", () => {
  let server: RunningServer;
  let releaseSlowCall: () => void = () => {};

  beforeAll(async () => {
    server = await startServer(
      {
        logger: pino({ level: "silent" }),
        services: [InventoryService],
        maxRequestBytes: 1024,
        shutdownGraceMs: 5_000,
        routes: (router) =>
          router.service(InventoryService, {
            getStock(req) {
              if (req.sku === "boom") throw new Error("password=hunter2 at db.internal:5432");
              if (req.sku === "bad") throw new InvalidArgumentError("sku", "is bad");
              return { stock: { sku: req.sku, available: 1 } };
            },
            async getReservation() {
              await new Promise<void>((resolve) => (releaseSlowCall = resolve));
              return { reservation: { orderId: "slow" } };
            },
          }),
      },
      { host: "127.0.0.1", port: 0 },
    );
  });
  afterAll(() => server.close());

  const post = (path: string, body: string | Uint8Array<ArrayBuffer>, contentType = "application/json") =>
    fetch(`${server.url}/${path}`, { method: "POST", headers: { "content-type": contentType }, body });

  it("serves Connect JSON over HTTP/1.1 and gRPC over h2c on the same port", async () => {
    const http1 = await post("shop.inventory.v1.InventoryService/GetStock", JSON.stringify({ sku: "x" }));
    expect(http1.status).toBe(200);
    expect(await http1.json()).toEqual({ stock: { sku: "x", available: 1 } });

    const grpc = createClient(InventoryService, createGrpcTransport({ baseUrl: server.url }));
    expect((await grpc.getStock({ sku: "y" })).stock?.sku).toBe("y");
    const grpcWeb = createClient(InventoryService, createGrpcWebTransport({ baseUrl: server.url, httpVersion: "1.1" }));
    expect((await grpcWeb.getStock({ sku: "z" })).stock?.sku).toBe("z");
  });

  it("reports SERVING through grpc.health.v1 for the server and each service", async () => {
    const health = createClient(Health, createGrpcTransport({ baseUrl: server.url }));
    expect((await health.check({})).status).toBe(ServingStatus.SERVING);
    expect((await health.check({ service: "shop.inventory.v1.InventoryService" })).status).toBe(ServingStatus.SERVING);
    await expect(health.check({ service: "nope" })).rejects.toMatchObject({ code: Code.NotFound });
  });

  it("hides internal detail behind INTERNAL and maps classified errors", async () => {
    const client = createClient(InventoryService, createConnectTransport({ baseUrl: server.url, httpVersion: "2" }));
    const err = await client.getStock({ sku: "boom" }).catch((e: unknown) => ConnectError.from(e));
    expect(err).toMatchObject({ code: Code.Internal, rawMessage: "internal error" });
    expect(JSON.stringify(err)).not.toContain("hunter2");
    await expect(client.getStock({ sku: "bad" })).rejects.toMatchObject({ code: Code.InvalidArgument, rawMessage: "sku: is bad" });
  });

  it("answers malformed JSON and protobuf with INVALID_ARGUMENT, not INTERNAL", async () => {
    const json = await post("shop.inventory.v1.InventoryService/GetStock", "{not json");
    expect(json.status).toBe(400);
    expect(await json.json()).toMatchObject({ code: "invalid_argument" });

    const wrongType = await post("shop.inventory.v1.InventoryService/GetStock", JSON.stringify({ sku: 5 }));
    expect(await wrongType.json()).toMatchObject({ code: "invalid_argument" });

    const proto = await post("shop.inventory.v1.InventoryService/GetStock", new Uint8Array([0x0a, 0xff, 0xff, 0xff]), "application/proto");
    expect(proto.status).toBe(400);
    expect(await proto.json()).toMatchObject({ code: "invalid_argument" });
  });

  it("answers a gRPC frame that is not protobuf with INVALID_ARGUMENT", async () => {
    const session = connectHttp2(server.url);
    try {
      const garbage = Buffer.from([0x0a, 0xff, 0xff, 0xff]);
      const frame = Buffer.concat([Buffer.from([0, 0, 0, 0, garbage.length]), garbage]);
      const stream = session.request({ ":method": "POST", ":path": "/shop.inventory.v1.InventoryService/GetStock", "content-type": "application/grpc", te: "trailers" });
      stream.end(frame);
      const status = await new Promise<Record<string, unknown>>((resolve) => {
        // Trailers-only responses carry the status in the headers; others in trailers.
        stream.once("response", (headers) => headers["grpc-status"] && resolve(headers));
        stream.once("trailers", resolve);
        stream.resume();
      });
      expect(status["grpc-status"]).toBe(String(Code.InvalidArgument));
      expect(decodeURIComponent(String(status["grpc-message"]))).toMatch(/^parse binary:/);
    } finally {
      session.close();
    }
  });

  it("answers gRPC-Web that is not protobuf with INVALID_ARGUMENT in its trailer frame", async () => {
    const garbage = Buffer.from([0x0a, 0xff, 0xff, 0xff]);
    const frame = new Uint8Array(Buffer.concat([Buffer.from([0, 0, 0, 0, garbage.length]), garbage]));
    const response = await post("shop.inventory.v1.InventoryService/GetStock", frame, "application/grpc-web+proto");
    const body = Buffer.from(await response.arrayBuffer());
    const status = response.headers.get("grpc-status") ?? /grpc-status: ?(\d+)/.exec(body.toString("latin1"))?.[1];
    expect(status).toBe(String(Code.InvalidArgument));
  });

  it("gives a streaming handler the caller's deadline", async () => {
    const seen: (number | undefined)[] = [];
    const streaming = await startServer(
      {
        logger: pino({ level: "silent" }),
        services: [StorefrontService],
        maxRequestBytes: 1024,
        shutdownGraceMs: 500,
        routes: (router) =>
          router.service(StorefrontService, {
            async *watchOrder() {
              seen.push(remainingBudgetMs());
              yield {};
            },
          }),
      },
      { host: "127.0.0.1", port: 0 },
    );
    try {
      const client = createClient(StorefrontService, createGrpcTransport({ baseUrl: streaming.url }));
      for await (const update of client.watchOrder({ orderId: "x" }, { timeoutMs: 3_000 })) void update;
      expect(seen[0]).toBeGreaterThan(0);
      expect(seen[0]).toBeLessThanOrEqual(3_000);
    } finally {
      await streaming.close();
    }
  });

  it("refuses an oversized request with RESOURCE_EXHAUSTED", async () => {
    const client = createClient(InventoryService, createGrpcTransport({ baseUrl: server.url }));
    await expect(client.getStock({ sku: "x".repeat(4096) })).rejects.toMatchObject({ code: Code.ResourceExhausted });
  });

  it("rejects NUL characters in any string field before the handler runs", async () => {
    const client = createClient(InventoryService, createGrpcTransport({ baseUrl: server.url }));
    await expect(client.getStock({ sku: "a\u0000b" })).rejects.toMatchObject({ code: Code.InvalidArgument, rawMessage: "sku: must not contain NUL characters" });
    await expect(client.reserveStock({ orderId: "o", items: [{ sku: "ok" }, { sku: "\u0000" }] })).rejects.toMatchObject({
      rawMessage: "items[1].sku: must not contain NUL characters",
    });
  });

  it("drains: an in-flight call finishes during close, and health turns NOT_SERVING", async () => {
    // A client that connected and never spoke must not hold the drain for the grace period.
    const silent = createConnection({ host: "127.0.0.1", port: server.port });
    await new Promise((resolve) => silent.once("connect", resolve));
    const silentClosed = new Promise((resolve) => silent.once("close", resolve));
    const client = createClient(InventoryService, createGrpcTransport({ baseUrl: server.url }));
    const health = createClient(Health, createGrpcTransport({ baseUrl: server.url }));
    const watched: ServingStatus[] = [];
    const watching = (async () => {
      for await (const update of health.watch({})) watched.push(update.status);
    })().catch(() => {});
    const slow = client.getReservation({ orderId: "slow" });
    await new Promise((resolve) => setTimeout(resolve, 200));
    const closing = server.close();
    await new Promise((resolve) => setTimeout(resolve, 100));
    releaseSlowCall();
    expect((await slow).reservation?.orderId).toBe("slow");
    const closeStarted = Date.now();
    await closing;
    expect(Date.now() - closeStarted).toBeLessThan(2_000); // grace is 5 s
    await silentClosed;
    await watching;
    expect(watched).toEqual([ServingStatus.SERVING, ServingStatus.NOT_SERVING]);
  });
});
