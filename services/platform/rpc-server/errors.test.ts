import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { connect as connectHttp2, type IncomingHttpHeaders } from "node:http2";
import { pino } from "pino";
import { StorefrontService } from "#gen/shop/gateway/v1/storefront_service_pb.js";
import { startServer, type RunningServer } from "./server.js";

/** As a dependency's error arrives through a client: its HTTP headers ride along as metadata. */
const relayed = (message: string, code: Code) =>
  new ConnectError(message, code, { "content-length": "999", "content-type": "application/proto", date: "Thu, 01 Jan 1970 00:00:00 GMT" });

/**
 * The error-mapping edge on a real server: a stand-in whose handlers fail as a relaying
 * service does, with an error that still carries a dependency's response headers, from a
 * unary handler or in the middle of a stream.
 */
describe("the error-mapping edge", () => {
  let server: RunningServer;

  beforeAll(async () => {
    server = await startServer(
      {
        logger: pino({ level: "silent" }),
        services: [StorefrontService],
        maxRequestBytes: 1024,
        shutdownGraceMs: 500,
        routes: (router) =>
          router.service(StorefrontService, {
            listMyOrders() {
              throw relayed("page_size: must not be negative", Code.InvalidArgument);
            },
            async *watchOrder(req) {
              yield { order: { id: req.orderId } };
              throw relayed(`order ${req.orderId} not found`, Code.NotFound);
            },
          }),
      },
      { host: "127.0.0.1", port: 0 },
    );
  });
  afterAll(async () => {
    await server?.close();
  });

  it("passes on a ConnectError's code and message, never its metadata", async () => {
    const trailers = await new Promise<IncomingHttpHeaders>((done, fail) => {
      const session = connectHttp2(server.url);
      session.on("error", fail);
      const stream = session.request({ ":method": "POST", ":path": "/shop.gateway.v1.StorefrontService/ListMyOrders", "content-type": "application/grpc", te: "trailers" });
      stream.on("trailers", (t) => done(t));
      stream.on("data", () => undefined);
      stream.on("error", fail);
      stream.on("close", () => {
        session.close();
        fail(new Error(`closed without trailers (RST_STREAM code ${stream.rstCode})`));
      });
      stream.end(new Uint8Array(5)); // one empty message
    });
    expect(trailers["grpc-status"]).toBe(String(Code.InvalidArgument));
    expect(decodeURIComponent(String(trailers["grpc-message"]))).toBe("page_size: must not be negative");
    expect(Object.keys(trailers).filter((name) => !name.startsWith("grpc-"))).toEqual([]);
  });

  it("does the same for an error in the middle of a stream, after the edge returned it", async () => {
    const client = createClient(StorefrontService, createGrpcTransport({ baseUrl: server.url }));
    const received: string[] = [];
    const err = await (async () => {
      for await (const update of client.watchOrder({ orderId: "o-1" })) received.push(update.order!.id);
    })().catch((e: unknown) => ConnectError.from(e));
    expect(received).toEqual(["o-1"]);
    expect(err).toMatchObject({ code: Code.NotFound, rawMessage: "order o-1 not found" });
  });
});
