import { describe, expect, it } from "vitest";
import { context, trace } from "@opentelemetry/api";
import { InMemorySpanExporter } from "@opentelemetry/sdk-trace-node";
import { DrizzleQueryError } from "drizzle-orm/errors";
import { createLogger } from "./logger.js";
import { initTelemetry } from "./telemetry.js";

describe("logs", () => {
  it("are JSON lines carrying the service, and trace_id and span_id inside a span", async () => {
    const telemetry = await initTelemetry({ serviceName: "log-test", exporter: new InMemorySpanExporter() });
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

  it("never write a failed query's bind parameters, at any depth of the error's causes", () => {
    const lines: string[] = [];
    const logger = createLogger("order", "info", { write: (line: string) => void lines.push(line) });
    const failed = new DrizzleQueryError('insert into "orders"."sagas" ("payload") values ($1)', ['{"paymentToken":"tok_secret_4242"}'], Object.assign(new Error("write CONNECTION_CLOSED"), { code: "CONNECTION_CLOSED" }));
    logger.warn({ err: failed }, "database unavailable");
    logger.error({ err: new Error("saga step failed", { cause: failed }) }, "wrapped");
    expect(lines).toHaveLength(2);
    for (const line of lines) {
      expect(line).not.toContain("tok_secret_4242");
      expect(line).toContain('insert into \\"orders\\".\\"sagas\\"');
      expect(line).toContain("params: [1 hidden]");
    }
    expect(JSON.parse(lines[0]!).err).toMatchObject({ type: "DrizzleQueryError", params: "params: [1 hidden]" });
  });
});
