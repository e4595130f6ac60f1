import { context, propagation, SpanKind, SpanStatusCode, trace, type Context, type Span, type TextMapGetter, type TextMapSetter } from "@opentelemetry/api";
import { NodeTracerProvider, BatchSpanProcessor, type SpanExporter, type SpanProcessor, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-node";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";

const TRACER = "meshwork";

/**
 * Installs the process's tracer provider: W3C trace context, AsyncLocalStorage context
 * (registered by NodeTracerProvider), and an exporter: OTLP over HTTP when an endpoint is
 * configured, or the one a test passes in. Without either, spans are still created and
 * propagated (so trace ids reach logs and peers) but not exported.
 */
export function initTelemetry(options: { serviceName: string; otlpEndpoint?: string; exporter?: SpanExporter }): { shutdown(): Promise<void> } {
  const spanProcessors: SpanProcessor[] = [];
  if (options.exporter) spanProcessors.push(new SimpleSpanProcessor(options.exporter));
  if (options.otlpEndpoint) spanProcessors.push(new BatchSpanProcessor(new OTLPTraceExporter({ url: `${options.otlpEndpoint.replace(/\/$/, "")}/v1/traces` })));
  const provider = new NodeTracerProvider({ resource: resourceFromAttributes({ "service.name": options.serviceName }), spanProcessors });
  provider.register({ propagator: new W3CTraceContextPropagator() });
  return { shutdown: () => provider.shutdown() };
}

const headerGetter: TextMapGetter<Headers> = { get: (h, key) => h.get(key) ?? undefined, keys: (h) => [...h.keys()] };
const headerSetter: TextMapSetter<Headers> = { set: (h, key, value) => h.set(key, value) };
const recordGetter: TextMapGetter<Record<string, string>> = { get: (r, key) => r[key], keys: (r) => Object.keys(r) };
const recordSetter: TextMapSetter<Record<string, string>> = { set: (r, key, value) => void (r[key] = value) };

function endWithError(span: Span, err: unknown): void {
  const code = ConnectError.from(err).code;
  span.setAttribute("rpc.grpc.status_code", code);
  span.setStatus({ code: SpanStatusCode.ERROR, message: Code[code] });
  span.end();
}

/** Runs `work` in a span; the span records an exception and error status if it throws. */
export async function withSpan<T>(name: string, kind: SpanKind, parent: Context, attributes: Record<string, string>, work: (span: Span) => Promise<T>): Promise<T> {
  const span = trace.getTracer(TRACER).startSpan(name, { kind, attributes }, parent);
  try {
    const result = await context.with(trace.setSpan(parent, span), () => work(span));
    span.end();
    return result;
  } catch (err) {
    span.recordException(err as Error);
    endWithError(span, err);
    throw err;
  }
}

/** Server interceptor: continues the caller's trace (traceparent) in a SERVER span. */
export function createServerTracingInterceptor(service: string): Interceptor {
  return (next) => (req) => {
    const parent = propagation.extract(context.active(), req.header, headerGetter);
    const name = `${req.service.typeName}/${req.method.name}`;
    return withSpan(name, SpanKind.SERVER, parent, { "rpc.system": "grpc", "rpc.service": req.service.typeName, "rpc.method": req.method.name, "meshwork.service": service }, () => next(req));
  };
}

/** Client interceptor: a CLIENT span per call, whose context travels in the request headers. */
export function createClientTracingInterceptor(): Interceptor {
  return (next) => (req) => {
    const name = `${req.service.typeName}/${req.method.name}`;
    return withSpan(name, SpanKind.CLIENT, context.active(), { "rpc.system": "grpc", "rpc.service": req.service.typeName, "rpc.method": req.method.name }, () => {
      propagation.inject(context.active(), req.header, headerSetter);
      return next(req);
    });
  };
}

/** The current trace context as headers (traceparent, tracestate), to store with an event. */
export function currentTraceHeaders(): Record<string, string> {
  const headers: Record<string, string> = {};
  propagation.inject(context.active(), headers, recordSetter);
  return headers;
}

/** The trace context carried in stored or received event headers. */
export function contextFromHeaders(headers: Record<string, string>): Context {
  return propagation.extract(context.active(), headers, recordGetter);
}

/** The active span's ids, for log lines. */
export function activeTraceIds(): { trace_id: string; span_id: string } | undefined {
  const span = trace.getActiveSpan();
  if (!span) return undefined;
  const { traceId, spanId } = span.spanContext();
  return { trace_id: traceId, span_id: spanId };
}

export { SpanKind };
