import { createServer as createHttpServer } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { context, propagation, SpanStatusCode, trace } from "@opentelemetry/api";
import { InMemorySpanExporter } from "@opentelemetry/sdk-trace-node";
import { pino } from "pino";
import { InventoryService } from "#gen/shop/inventory/v1/inventory_service_pb.js";
import { createServiceClient } from "../rpc-client/clients.js";
import { startServer, type RunningServer } from "../rpc-server/server.js";
import { activeTraceIds, currentTraceHeaders, initTelemetry } from "./telemetry.js";

/** What the handler saw of its trace: the ids its log lines carry, and the traceparent its own calls would send. */
interface Seen {
  ids: ReturnType<typeof activeTraceIds>;
  traceparent: string | undefined;
}

/** A server whose GetStock reports what it saw of its trace in the stock's sku, and fails for sku "boom". */
async function startTracedServer(): Promise<RunningServer> {
  return startServer(
    {
      logger: pino({ level: "silent" }),
      services: [InventoryService],
      maxRequestBytes: 1024,
      shutdownGraceMs: 500,
      routes: (router) =>
        router.service(InventoryService, {
          getStock(req) {
            if (req.sku === "boom") throw new ConnectError("no such sku", Code.NotFound);
            const seen: Seen = { ids: activeTraceIds(), traceparent: currentTraceHeaders()["traceparent"] };
            return { stock: { sku: JSON.stringify(seen), available: 1 } };
          },
        }),
    },
    { host: "127.0.0.1", port: 0 },
  );
}

/** A plain connect client that sends `traceparent` as any W3C-aware caller would. */
function clientSending(baseUrl: string, traceparent: string | undefined) {
  const sending: Interceptor = (next) => (req) => {
    if (traceparent) req.header.set("traceparent", traceparent);
    return next(req);
  };
  return createClient(InventoryService, createConnectTransport({ baseUrl, httpVersion: "2", interceptors: [sending] }));
}

const seenIn = (sku: string | undefined): Seen => JSON.parse(sku ?? "{}") as Seen;
/** Unregisters the tracer provider, context manager and propagator, so the next describe installs its own. */
const disableTelemetry = () => {
  trace.disable();
  context.disable();
  propagation.disable();
};

describe("tracing with an exporter", () => {
  const exporter = new InMemorySpanExporter();
  let telemetry: Awaited<ReturnType<typeof initTelemetry>>;
  let server: RunningServer;

  beforeAll(async () => {
    telemetry = await initTelemetry({ serviceName: "telemetry-test", exporter });
    server = await startTracedServer();
  });
  afterAll(async () => {
    await server?.close();
    await telemetry?.shutdown();
    disableTelemetry();
  });

  it("records a CLIENT and a SERVER span of one trace per call, the server's in force in the handler", async () => {
    exporter.reset();
    const inventory = createServiceClient(InventoryService, { baseUrl: server.url });
    try {
      const { stock } = await inventory.client.getStock({ sku: "x" });
      const spans = exporter.getFinishedSpans().filter((span) => span.name === "shop.inventory.v1.InventoryService/GetStock");
      expect(spans.map((span) => span.kind).sort()).toEqual([1, 2]); // SERVER, CLIENT
      const serverSpan = spans.find((span) => span.kind === 1)!;
      const clientSpan = spans.find((span) => span.kind === 2)!;
      expect(serverSpan.spanContext().traceId).toBe(clientSpan.spanContext().traceId);
      expect(serverSpan.parentSpanContext?.spanId).toBe(clientSpan.spanContext().spanId);
      expect(serverSpan.attributes).toMatchObject({ "rpc.system": "grpc", "rpc.method": "GetStock", "meshwork.service": InventoryService.typeName });
      expect(seenIn(stock?.sku).ids).toEqual({ trace_id: serverSpan.spanContext().traceId, span_id: serverSpan.spanContext().spanId });
    } finally {
      inventory.close();
    }
  });

  it("marks both spans of a failed call with its status code", async () => {
    exporter.reset();
    const inventory = createServiceClient(InventoryService, { baseUrl: server.url });
    try {
      await expect(inventory.client.getStock({ sku: "boom" })).rejects.toMatchObject({ code: Code.NotFound });
      const spans = exporter.getFinishedSpans().filter((span) => span.name === "shop.inventory.v1.InventoryService/GetStock");
      expect(spans).toHaveLength(2);
      for (const span of spans) {
        expect(span.status.code).toBe(SpanStatusCode.ERROR);
        expect(span.attributes["rpc.grpc.status_code"]).toBe(Code.NotFound);
      }
    } finally {
      inventory.close();
    }
  });
});

describe("tracing with nowhere to export", () => {
  let telemetry: Awaited<ReturnType<typeof initTelemetry>>;
  let server: RunningServer;
  const traceId = "4bf92f3577b34da6a3ce929d0e0e4736";
  const callerSpanId = "00f067aa0ba902b7";

  beforeAll(async () => {
    telemetry = await initTelemetry({ serviceName: "telemetry-test" });
    server = await startTracedServer();
  });
  afterAll(async () => {
    await server?.close();
    await telemetry?.shutdown();
    disableTelemetry();
  });

  it("continues a caller's unsampled trace: its trace id reaches the handler's logs and its own calls, still unsampled", async () => {
    const { stock } = await clientSending(server.url, `00-${traceId}-${callerSpanId}-00`).getStock({ sku: "x" });
    const seen = seenIn(stock?.sku);
    expect(seen.ids?.trace_id).toBe(traceId);
    expect(seen.traceparent).toMatch(new RegExp(`^00-${traceId}-[0-9a-f]{16}-00$`));
  });

  it("gives a call that brings no trace one of its own, so its log lines still carry a trace id", async () => {
    const { stock } = await clientSending(server.url, undefined).getStock({ sku: "x" });
    const seen = seenIn(stock?.sku);
    expect(seen.ids?.trace_id).toMatch(/^[0-9a-f]{32}$/);
    expect(seen.ids?.trace_id).not.toBe("0".repeat(32));
    expect(seen.traceparent).toMatch(new RegExp(`^00-${seen.ids?.trace_id}-[0-9a-f]{16}-00$`));
  });

  it("sends the active unsampled trace on with a platform client's call, and starts one for a call outside any", async () => {
    const inventory = createServiceClient(InventoryService, { baseUrl: server.url });
    try {
      const parent = trace.setSpanContext(context.active(), { traceId, spanId: callerSpanId, traceFlags: 0, isRemote: true });
      const inside = await context.with(parent, () => inventory.client.getStock({ sku: "x" }));
      expect(seenIn(inside.stock?.sku).ids?.trace_id).toBe(traceId);
      const outside = await inventory.client.getStock({ sku: "x" });
      const rootTrace = seenIn(outside.stock?.sku).ids?.trace_id;
      expect(rootTrace).toMatch(/^[0-9a-f]{32}$/);
      expect(rootTrace).not.toBe(traceId);
    } finally {
      inventory.close();
    }
  });

  it("still fails a call with its own status code", async () => {
    await expect(clientSending(server.url, `00-${traceId}-${callerSpanId}-00`).getStock({ sku: "boom" })).rejects.toMatchObject({ code: Code.NotFound });
  });
});

describe("tracing to an OTLP collector", () => {
  it("loads the OTLP exporter when an endpoint is set, and ships a finished span there as OTLP/HTTP", async () => {
    const received: { url: string | undefined; type: string | undefined; bytes: number }[] = [];
    const collector = createHttpServer((req, res) => {
      let bytes = 0;
      req.on("data", (chunk: Buffer) => (bytes += chunk.length));
      req.on("end", () => {
        received.push({ url: req.url, type: req.headers["content-type"], bytes });
        res.writeHead(200, { "content-type": "application/json" }).end("{}");
      });
    });
    await new Promise<void>((resolve) => collector.listen(0, "127.0.0.1", resolve));
    const telemetry = await initTelemetry({ serviceName: "telemetry-test", otlpEndpoint: `http://127.0.0.1:${(collector.address() as AddressInfo).port}/` });
    try {
      trace.getTracer("telemetry-test").startSpan("exported").end();
      await telemetry.shutdown(); // flushes the batch
      expect(received).toHaveLength(1);
      expect(received[0]).toMatchObject({ url: "/v1/traces", type: expect.stringMatching(/^application\/(json|x-protobuf)/) });
      expect(received[0]!.bytes).toBeGreaterThan(0);
    } finally {
      disableTelemetry();
      collector.close();
    }
  });
});

describe("tracing to the dev trace store", () => {
  it("ships finished spans within seconds to DEV_TRACES_URL as OTLP/JSON, with its token as the bearer", async () => {
    const token = "dev-traces-token-for-the-telemetry-test";
    const received: { url: string | undefined; authorization: string | undefined; type: string | undefined; body: string }[] = [];
    const store = createHttpServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (chunk: Buffer) => chunks.push(chunk));
      req.on("end", () => {
        received.push({ url: req.url, authorization: req.headers.authorization, type: req.headers["content-type"], body: Buffer.concat(chunks).toString("utf8") });
        res.writeHead(200, { "content-type": "application/json" }).end("{}");
      });
    });
    await new Promise<void>((resolve) => store.listen(0, "127.0.0.1", resolve));
    const telemetry = await initTelemetry({ serviceName: "telemetry-test", devTraces: { url: `http://127.0.0.1:${(store.address() as AddressInfo).port}/v1/traces`, token } });
    try {
      trace.getTracer("telemetry-test").startSpan("sent-to-the-dev-store").end();
      // No shutdown to flush it: the batch goes out on its own, within its 1 s delay.
      const deadline = Date.now() + 5_000;
      while (received.length === 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
      expect(received).toHaveLength(1);
      expect(received[0]).toMatchObject({ url: "/v1/traces", authorization: `Bearer ${token}`, type: expect.stringMatching(/^application\/json/) });
      const spans = (JSON.parse(received[0]!.body) as { resourceSpans: { resource: { attributes: { key: string; value: { stringValue?: string } }[] }; scopeSpans: { spans: { name: string }[] }[] }[] }).resourceSpans;
      expect(spans.flatMap((r) => r.scopeSpans.flatMap((s) => s.spans.map((span) => span.name)))).toEqual(["sent-to-the-dev-store"]);
      expect(spans[0]!.resource.attributes).toContainEqual({ key: "service.name", value: { stringValue: "telemetry-test" } });
    } finally {
      await telemetry.shutdown();
      disableTelemetry();
      store.close();
    }
  });
});
