import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { InMemorySpanExporter } from "@opentelemetry/sdk-trace-node";
import { StorefrontService } from "#gen/shop/gateway/v1/storefront_service_pb.js";
import { initTelemetry } from "#platform/process/telemetry.js";
import type { RunningServer } from "#platform/rpc-server/server.js";
import { eventually } from "../support/eventually.js";
import { startGateway } from "../support/gateway.js";
import { startInProcessMesh, type InProcessMesh } from "../support/services.js";

/**
 * One order placed at the gateway: every span it causes, across the gateway, order,
 * inventory, payment, the outbox relay and the notification consumer, shares one trace id.
 */
const exporter = new InMemorySpanExporter();
const telemetry = await initTelemetry({ serviceName: "meshwork-test", exporter });

describe("distributed tracing", () => {
  let mesh: InProcessMesh;
  let gateway: RunningServer;

  beforeAll(async () => {
    mesh = await startInProcessMesh();
    gateway = await startGateway(mesh);
  });
  afterAll(async () => {
    await gateway?.close();
    await mesh?.close();
    await telemetry.shutdown();
  });

  it("keeps the whole order flow under the caller's trace id", async () => {
    const anonymous = createClient(StorefrontService, createGrpcTransport({ baseUrl: gateway.url }));
    const { token } = await anonymous.issueDemoToken({ customerId: "tracy" });
    const traceId = "4bf92f3577b34da6a3ce929d0e0e4736";
    const traced: Interceptor = (next) => (req) => {
      req.header.set("authorization", `Bearer ${token}`);
      req.header.set("traceparent", `00-${traceId}-00f067aa0ba902b7-01`); // as any W3C-aware caller would
      return next(req);
    };
    const storefront = createClient(StorefrontService, createGrpcTransport({ baseUrl: gateway.url, interceptors: [traced] }));
    const { order } = await storefront.placeOrder({ items: [{ sku: "MW-MUG-001", quantity: 1 }], paymentToken: "tok_visa", requestId: randomUUID() });

    const expected = [
      "shop.gateway.v1.StorefrontService/PlaceOrder", // gateway, server side
      "shop.order.v1.OrderService/CreateOrder", // gateway -> order, both sides
      "shop.catalog.v1.CatalogService/ListProducts", // order prices the items through the catalog route (the old shop's adapter by default)
      "shop.inventory.v1.InventoryService/ReserveStock", // saga step 1
      "shop.payment.v1.PaymentService/Charge", // saga step 2
      "shop.inventory.v1.InventoryService/CommitReservation", // saga step 4
      "publish shop.order.v1.OrderCreated", // outbox relay
      "publish shop.order.v1.OrderConfirmed",
      "process shop.order.v1.OrderConfirmed", // notification's consumer
    ];
    const spans = await eventually(() => {
      const ours = exporter.getFinishedSpans().filter((s) => s.spanContext().traceId === traceId);
      for (const name of expected) expect(ours.map((s) => s.name), name).toContain(name);
      return ours;
    }, 20_000);
    const kinds = new Set(spans.filter((s) => s.name === "shop.payment.v1.PaymentService/Charge").map((s) => s.kind));
    expect(kinds).toEqual(new Set([2, 1])); // CLIENT (order) and SERVER (payment)
    // Nothing of this order's flow started a trace of its own.
    const confirmedPublishes = exporter.getFinishedSpans().filter((s) => s.name === "publish shop.order.v1.OrderConfirmed" && s.attributes["messaging.destination.name"]);
    expect(confirmedPublishes.length).toBeGreaterThan(0);
    expect(confirmedPublishes.every((s) => s.spanContext().traceId === traceId)).toBe(true);
    // The trace is this order's: the gateway's PlaceOrder span is its root, and the order exists.
    expect(spans.find((s) => s.name === "shop.gateway.v1.StorefrontService/PlaceOrder")?.spanContext().traceId).toBe(traceId);
    expect(order?.id).toMatch(/^[0-9a-f-]{36}$/);
  });
});
