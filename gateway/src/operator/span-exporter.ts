import { ExportResultCode, hrTimeToMilliseconds, type ExportResult } from "@opentelemetry/core";
import { SpanStatusCode } from "@opentelemetry/api";
import type { ReadableSpan, SpanExporter } from "@opentelemetry/sdk-trace-base";
import { boundedAttributes, spanBounds, truncated, type StoredSpan, type TraceStore } from "./trace-store.js";

const statusOf = (code: SpanStatusCode): StoredSpan["status"] => (code === SpanStatusCode.ERROR ? "error" : code === SpanStatusCode.OK ? "ok" : "unset");

/**
 * The gateway's own spans into its dev trace store, in-process: the gateway holds the
 * store, so its spans need no trip through OTLP (see exportSpansInProcess in the kit).
 */
export function createStoreExporter(store: TraceStore): SpanExporter {
  return {
    export(spans: ReadableSpan[], done: (result: ExportResult) => void) {
      store.add(
        spans.map((span) => ({
          traceId: span.spanContext().traceId,
          spanId: span.spanContext().spanId,
          parentSpanId: span.parentSpanContext?.spanId ?? "",
          service: truncated(String(span.resource.attributes["service.name"] ?? "unknown"), spanBounds.maxKeyLength),
          name: truncated(span.name, spanBounds.maxNameLength),
          startMs: hrTimeToMilliseconds(span.startTime),
          durationMs: hrTimeToMilliseconds(span.duration),
          status: statusOf(span.status.code),
          attributes: boundedAttributes(Object.entries(span.attributes)),
        })),
      );
      done({ code: ExportResultCode.SUCCESS });
    },
    shutdown: async () => {},
  };
}
