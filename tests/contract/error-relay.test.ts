import { randomUUID } from "node:crypto";
import { request as httpRequest, type IncomingHttpHeaders } from "node:http";
import { connect as connectHttp2, constants as http2, type IncomingHttpHeaders as Http2Headers } from "node:http2";
import { resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { create, toBinary, toJsonString, type DescMessage, type MessageInitShape } from "@bufbuild/protobuf";
import { Code, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import {
  CancelOrderRequestSchema,
  GetOrderDetailsRequestSchema,
  ListMyOrdersRequestSchema,
  PlaceOrderRequestSchema,
  StorefrontService,
  WatchOrderRequestSchema,
} from "#gen/shop/gateway/v1/storefront_service_pb.js";
import type { RunningServer } from "#platform/rpc-server/server.js";
import { startGateway } from "../support/gateway.js";
import { startInProcessMesh, type InProcessMesh } from "../support/services.js";

/**
 * Errors that the gateway relays from the services behind it reach every kind of client
 * intact: status, message and details, never the dependency's HTTP headers. Each case is
 * checked with grpc-js, with raw HTTP/2 frames, with gRPC-Web and with Connect (JSON and binary).
 */

interface RelayCase<Desc extends DescMessage = DescMessage> {
  name: string;
  method: string;
  schema: Desc;
  request: MessageInitShape<Desc>;
  code: Code;
  message: RegExp;
  streaming?: boolean;
}
const relayCase = <Desc extends DescMessage>(c: RelayCase<Desc>) => c as unknown as RelayCase;

const unknownOrder = randomUUID();
const cases: RelayCase[] = [
  relayCase({
    name: "PlaceOrder with quantity -1",
    method: "PlaceOrder",
    schema: PlaceOrderRequestSchema,
    request: { items: [{ sku: "MW-MUG-001", quantity: -1 }], paymentToken: "tok_visa", requestId: randomUUID() },
    code: Code.InvalidArgument,
    message: /^items\[0\]\.quantity: /,
  }),
  relayCase({
    name: "PlaceOrder with an unknown SKU",
    method: "PlaceOrder",
    schema: PlaceOrderRequestSchema,
    request: { items: [{ sku: "NO-SUCH-SKU", quantity: 1 }], paymentToken: "tok_visa", requestId: randomUUID() },
    code: Code.InvalidArgument,
    message: /NO-SUCH-SKU/,
  }),
  relayCase({
    name: "GetOrderDetails with a malformed order id",
    method: "GetOrderDetails",
    schema: GetOrderDetailsRequestSchema,
    request: { orderId: "not-a-uuid" },
    code: Code.InvalidArgument,
    message: /^order_id: /,
  }),
  relayCase({
    name: "GetOrderDetails with an unknown order id",
    method: "GetOrderDetails",
    schema: GetOrderDetailsRequestSchema,
    request: { orderId: unknownOrder },
    code: Code.NotFound,
    message: new RegExp(`order ${unknownOrder} not found`),
  }),
  relayCase({
    name: "CancelOrder with a malformed order id",
    method: "CancelOrder",
    schema: CancelOrderRequestSchema,
    request: { orderId: "not-a-uuid" },
    code: Code.InvalidArgument,
    message: /^order_id: /,
  }),
  relayCase({
    name: "ListMyOrders with page_size -1",
    method: "ListMyOrders",
    schema: ListMyOrdersRequestSchema,
    request: { pageSize: -1 },
    code: Code.InvalidArgument,
    message: /^page_size: /,
  }),
  relayCase({
    name: "WatchOrder with a malformed order id (a stream)",
    method: "WatchOrder",
    schema: WatchOrderRequestSchema,
    request: { orderId: "not-a-uuid" },
    code: Code.InvalidArgument,
    message: /^order_id: /,
    streaming: true,
  }),
];

/** Lower-case names of the gRPC status trailers; nothing else belongs in a relayed error's trailers. */
const isStatusTrailer = (name: string) => name === "grpc-status" || name === "grpc-message" || name === "grpc-status-details-bin";

/** One length-prefixed message, as gRPC, gRPC-Web and Connect streaming frame them. */
function envelope(flags: number, payload: Uint8Array): Uint8Array<ArrayBuffer> {
  const framed = new Uint8Array(5 + payload.length);
  framed[0] = flags;
  new DataView(framed.buffer).setUint32(1, payload.length);
  framed.set(payload, 5);
  return framed;
}

function* envelopes(body: Uint8Array): Generator<{ flags: number; payload: Uint8Array }> {
  for (let at = 0; at + 5 <= body.length; ) {
    const length = new DataView(body.buffer, body.byteOffset + at + 1, 4).getUint32(0);
    yield { flags: body[at]!, payload: body.subarray(at + 5, at + 5 + length) };
    at += 5 + length;
  }
}

describe("errors relayed through the gateway", () => {
  let mesh: InProcessMesh;
  let gateway: RunningServer;
  let token: string;
  const grpcClients: grpc.Client[] = [];

  beforeAll(async () => {
    mesh = await startInProcessMesh();
    gateway = await startGateway(mesh);
    const anonymous = createClient(StorefrontService, createConnectTransport({ baseUrl: gateway.url, httpVersion: "1.1" }));
    token = (await anonymous.issueDemoToken({ customerId: "error-relay" })).token;
  });
  afterAll(async () => {
    for (const client of grpcClients) client.close();
    await gateway?.close();
    await mesh?.close();
  });

  const path = (method: string) => `/shop.gateway.v1.StorefrontService/${method}`;
  const binary = (c: RelayCase) => toBinary(c.schema, create(c.schema, c.request));

  /** The error as a @grpc/grpc-js client built from the .proto files sees it. */
  function viaGrpcJs(c: RelayCase): Promise<grpc.ServiceError> {
    const definition = protoLoader.loadSync("shop/gateway/v1/storefront_service.proto", { includeDirs: [resolve(import.meta.dirname, "../../proto")] });
    const loaded = grpc.loadPackageDefinition(definition) as unknown as { shop: { gateway: { v1: { StorefrontService: grpc.ServiceClientConstructor } } } };
    const client = new loaded.shop.gateway.v1.StorefrontService(gateway.url.replace("http://", ""), grpc.credentials.createInsecure());
    grpcClients.push(client);
    const metadata = new grpc.Metadata();
    metadata.set("authorization", `Bearer ${token}`);
    const call = (client as unknown as Record<string, (...args: unknown[]) => unknown>)[c.method.charAt(0).toLowerCase() + c.method.slice(1)]!.bind(client);
    const request = JSON.parse(toJsonString(c.schema, create(c.schema, c.request))) as object;
    const options = { deadline: Date.now() + 10_000 };
    return new Promise((done, fail) => {
      if (c.streaming) {
        const stream = call(request, metadata, options) as grpc.ClientReadableStream<unknown>;
        stream.on("data", () => fail(new Error("a message before the error")));
        stream.on("error", done);
        stream.on("end", () => fail(new Error("the stream ended without an error")));
      } else {
        call(request, metadata, options, (err: grpc.ServiceError | null) => (err ? done(err) : fail(new Error("no error"))));
      }
    });
  }

  /** gRPC over a raw HTTP/2 stream: the frames as they arrive, and how the stream closed. */
  function viaHttp2(c: RelayCase): Promise<{ headers: Http2Headers; trailers?: Http2Headers; rstCode: number }> {
    return new Promise((done, fail) => {
      const session = connectHttp2(gateway.url);
      session.on("error", fail);
      const stream = session.request({
        ":method": "POST",
        ":path": path(c.method),
        "content-type": "application/grpc",
        te: "trailers",
        authorization: `Bearer ${token}`,
      });
      let headers: Http2Headers = {};
      let trailers: Http2Headers | undefined;
      stream.on("response", (h) => (headers = h));
      stream.on("trailers", (t) => (trailers = t));
      stream.on("data", () => undefined);
      stream.on("error", () => undefined); // a reset shows in rstCode
      stream.on("close", () => {
        done({ headers, ...(trailers ? { trailers } : {}), rstCode: stream.rstCode ?? -1 });
        session.close();
      });
      stream.end(envelope(0, binary(c)));
    });
  }

  const post = (method: string, contentType: string, body: Uint8Array<ArrayBuffer> | string) =>
    fetch(`${gateway.url}${path(method)}`, {
      method: "POST",
      headers: { "content-type": contentType, authorization: `Bearer ${token}` },
      body,
      signal: AbortSignal.timeout(10_000),
    });

  /** A POST over HTTP/1.1 with node:http, which keeps the response's header names as sent. */
  function overHttp1(method: string, contentType: string, body: Uint8Array | string, auth = true) {
    return new Promise<{ status: number; headers: IncomingHttpHeaders; headerNames: string[]; body: string }>((done, fail) => {
      const headers = { "content-type": contentType, ...(auth ? { authorization: `Bearer ${token}` } : {}) };
      const req = httpRequest(`${gateway.url}${path(method)}`, { method: "POST", headers, timeout: 10_000 }, (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (chunk: Buffer) => chunks.push(chunk));
        res.on("error", fail);
        res.on("end", () =>
          done({ status: res.statusCode!, headers: res.headers, headerNames: res.rawHeaders.filter((_, i) => i % 2 === 0), body: Buffer.concat(chunks).toString() }),
        );
      });
      req.on("error", fail);
      req.end(body);
    });
  }
  let ownErrorHeaderNames: string[];
  beforeAll(async () => {
    // An error the gateway raises itself, not relayed: IssueDemoToken without a customer id.
    const own = await overHttp1("IssueDemoToken", "application/json", '{"customerId":""}', false);
    expect(own.status).toBe(400);
    ownErrorHeaderNames = own.headerNames;
  });

  describe.each(cases)("$name", (c) => {
    it("reaches a grpc-js client with its status code and message", async () => {
      const err = await viaGrpcJs(c);
      expect({ code: err.code, details: err.details }).toEqual({ code: c.code, details: expect.stringMatching(c.message) });
    });

    it("ends a raw HTTP/2 stream cleanly, with status trailers and no transport headers", async () => {
      const { headers, trailers, rstCode } = await viaHttp2(c);
      expect(rstCode).toBe(http2.NGHTTP2_NO_ERROR);
      expect(headers[":status"]).toBe(200);
      // A Trailers-Only response carries the status in its one HEADERS frame.
      const status = trailers ?? headers;
      expect(status["grpc-status"]).toBe(String(c.code));
      expect(decodeURIComponent(String(status["grpc-message"]))).toMatch(c.message);
      if (trailers) expect(Object.keys(trailers).filter((name) => !isStatusTrailer(name))).toEqual([]);
      expect(headers["content-length"]).toBeUndefined();
    });

    it("ends a gRPC-Web response with a trailer frame that holds only the status", async () => {
      const res = await post(c.method, "application/grpc-web+proto", envelope(0, binary(c)));
      expect(res.status).toBe(200);
      const body = new Uint8Array(await res.arrayBuffer());
      const trailerFrames = [...envelopes(body)].filter((frame) => frame.flags & 0x80);
      const lines = trailerFrames.flatMap((frame) => new TextDecoder().decode(frame.payload).split("\r\n").filter(Boolean));
      // Without a trailer frame, the status travels in the response headers (Trailers-Only).
      const fields = lines.length > 0 ? new Map(lines.map((line) => [line.slice(0, line.indexOf(":")).toLowerCase(), line.slice(line.indexOf(":") + 1).trim()])) : undefined;
      const status = (name: string) => (fields ? fields.get(name) : res.headers.get(name));
      expect(status("grpc-status")).toBe(String(c.code));
      expect(decodeURIComponent(status("grpc-message") ?? "")).toMatch(c.message);
      if (fields) expect([...fields.keys()].filter((name) => !isStatusTrailer(name))).toEqual([]);
      expect(res.headers.get("content-type")).toBe("application/grpc-web+proto");
    });

    if (c.streaming) {
      it("ends a Connect stream with an end-of-stream message that carries the error and no metadata", async () => {
        const res = await post(c.method, "application/connect+json", envelope(0, new TextEncoder().encode(toJsonString(c.schema, create(c.schema, c.request)))));
        expect(res.status).toBe(200);
        expect(res.headers.get("content-type")).toBe("application/connect+json");
        const frames = [...envelopes(new Uint8Array(await res.arrayBuffer()))];
        const end = frames.find((frame) => frame.flags & 0x02);
        const { error, metadata } = JSON.parse(new TextDecoder().decode(end!.payload)) as { error: { code: string; message: string }; metadata?: Record<string, string[]> };
        expect(error.code).toBe(Code[c.code].replace(/([a-z])([A-Z])/g, "$1_$2").toLowerCase());
        expect(error.message).toMatch(c.message);
        expect(Object.keys(metadata ?? {})).toEqual([]);
      });
    } else {
      for (const [format, contentType, body] of [
        ["JSON", "application/json", (x: RelayCase) => toJsonString(x.schema, create(x.schema, x.request))],
        ["binary", "application/proto", binary],
      ] as const) {
        it(`answers Connect ${format} with a JSON error whose headers are the gateway's own`, async () => {
          const res = await overHttp1(c.method, contentType, body(c));
          // The same headers, spelled the same way, as an error the gateway raises itself:
          // Node writes its own `Date`, so a lower-case `date` is the dependency's, copied.
          expect(res.headerNames).toEqual(ownErrorHeaderNames);
          // Connect errors are JSON, whatever the request's codec, and a content-length
          // copied from the dependency's response would not match this body.
          expect(res.headers["content-type"]).toBe("application/json");
          if (res.headers["content-length"] !== undefined) expect(Number(res.headers["content-length"])).toBe(Buffer.byteLength(res.body));
          const error = JSON.parse(res.body) as { code: string; message: string };
          expect(error.code).toBe(Code[c.code].replace(/([a-z])([A-Z])/g, "$1_$2").toLowerCase());
          expect(error.message).toMatch(c.message);
        });
      }
    }
  });

  describe("with the old shop down", () => {
    const placeOrder = relayCase({
      name: "PlaceOrder while the old shop (the catalog route's default side, which prices orders) is unreachable",
      method: "PlaceOrder",
      schema: PlaceOrderRequestSchema,
      request: { items: [{ sku: "MW-MUG-001", quantity: 1 }], paymentToken: "tok_visa", requestId: randomUUID() },
      code: Code.Unavailable,
      message: /unavailable/,
    });
    beforeAll(async () => {
      await mesh.oldShop.close();
    });

    it("relays UNAVAILABLE to grpc-js, and ends a raw HTTP/2 stream with status trailers only", async () => {
      const err = await viaGrpcJs(placeOrder);
      expect({ code: err.code, details: err.details }).toEqual({ code: Code.Unavailable, details: expect.stringMatching(placeOrder.message) });
      const { trailers, rstCode } = await viaHttp2(placeOrder);
      expect(rstCode).toBe(http2.NGHTTP2_NO_ERROR);
      expect(trailers?.["grpc-status"]).toBe(String(Code.Unavailable));
      expect(Object.keys(trailers ?? {}).filter((name) => !isStatusTrailer(name))).toEqual([]);
    });
  });
});
