import { describe, expect, it } from "vitest";
import { context, trace } from "@opentelemetry/api";
import { InMemorySpanExporter } from "@opentelemetry/sdk-trace-node";
import { createLogger } from "./logger.js";
import { initTelemetry } from "./telemetry.js";

describe("logs", () => {
  it("are JSON lines carrying the service, and trace_id and span_id inside a span", async () => {
    const telemetry = initTelemetry({ serviceName: "log-test", exporter: new InMemorySpanExporter() });
    const lines: string[] = [];
    const logger = createLogger("order", "info", { write: (line: string) => void lines.push(line) });
    logger.info("outside");
    const span = trace.getTracer("test").startSpan("work");
    context.with(trace.setSpan(context.active(), span), () => logger.info("inside"));
    span.end();
    await telemetry.shutdown();
    const [outside, inside] = lines.map((line) => JSON.parse(line));
    expect(outside).toMatchObject({ service: "order", msg: "outside" });
    expect(outside.trace_id).toBeUndefined();
    expect(inside).toMatchObject({ service: "order", msg: "inside", trace_id: span.spanContext().traceId, span_id: span.spanContext().spanId });
  });
});
