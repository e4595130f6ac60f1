import { context, propagation, SpanKind, SpanStatusCode, trace, type Context, type Span, type TextMapGetter, type TextMapSetter } from "@opentelemetry/api";
import { AlwaysOffSampler, NodeTracerProvider, BatchSpanProcessor, ParentBasedSampler, type SpanExporter, type SpanProcessor, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-node";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";

const TRACER = "meshwork";

/**
 * Installs the process's tracer provider: W3C trace context, AsyncLocalStorage context
 * (registered by NodeTracerProvider), and an exporter: OTLP over HTTP when an endpoint is
 * configured, or the one a test passes in. Without either, spans still get ids and are
 * propagated (so trace ids reach logs and peers), but only a trace a caller sampled is
 * recorded: with nowhere to export, recording a span is pure cost (attributes, timing,
 * about 10 µs per hop), so the traces this process starts are marked not sampled.
 */
export function initTelemetry(options: { serviceName: string; otlpEndpoint?: string; exporter?: SpanExporter }): { shutdown(): Promise<void> } {
  const spanProcessors: SpanProcessor[] = [];
  if (options.exporter) spanProcessors.push(new SimpleSpanProcessor(options.exporter));
  if (options.otlpEndpoint) spanProcessors.push(new BatchSpanProcessor(new OTLPTraceExporter({ url: `${options.otlpEndpoint.replace(/\/$/, "")}/v1/traces` })));
  const exportsNothing = spanProcessors.length === 0;
  const provider = new NodeTracerProvider({
    resource: resourceFromAttributes({ "service.name": options.serviceName }),
    spanProcessors,
    ...(exportsNothing ? { sampler: new ParentBasedSampler({ root: new AlwaysOffSampler() }) } : {}),
  });
  provider.register({ propagator: new W3CTraceContextPropagator() });
  return { shutdown: () => provider.shutdown() };
}

const headerGetter: TextMapGetter<Headers> = { get: (h, key) => h.get(key) ?? undefined, keys: (h) => [...h.keys()] };
const headerSetter: TextMapSetter<Headers> = { set: (h, key, value) => h.set(key, value) };
const recordGetter: TextMapGetter<Record<string, string>> = { get: (r, key) => r[key], keys: (r) => Object.keys(r) };
const recordSetter: TextMapSetter<Record<string, string>> = { set: (r, key, value) => void (r[key] = value) };

function endWithError(span: Span, err: unknown): void {
  span.recordException(err as Error);
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
    endWithError(span, err);
    throw err;
  }
}

/** Span name and attributes of an RPC, built once per method: they are the same for every call. */
const rpcSpans = new WeakMap<object, { name: string; attributes: Record<string, string> }>();
function rpcSpan(req: { service: { typeName: string }; method: { name: string } }) {
  let shape = rpcSpans.get(req.method);
  if (!shape) {
    shape = { name: `${req.service.typeName}/${req.method.name}`, attributes: { "rpc.system": "grpc", "rpc.service": req.service.typeName, "rpc.method": req.method.name } };
    rpcSpans.set(req.method, shape);
  }
  return shape;
}

/** Server interceptor: continues the caller's trace (traceparent) in a SERVER span. */
export function createServerTracingInterceptor(service: string): Interceptor {
  return (next) => (req) => {
    const parent = propagation.extract(context.active(), req.header, headerGetter);
    const { name, attributes } = rpcSpan(req);
    return withSpan(name, SpanKind.SERVER, parent, { ...attributes, "meshwork.service": service }, () => next(req));
  };
}

/**
 * Client interceptor: a CLIENT span per call, whose context travels in the request headers.
 * The span is never entered as the active context, unlike withSpan: nothing under the call
 * opens spans or logs, and entering a context per call is an AsyncLocalStorage run, which
 * also switches on Node 20's async hooks in a process that only makes calls.
 */
export function createClientTracingInterceptor(): Interceptor {
  const tracer = trace.getTracer(TRACER);
  return (next) => async (req) => {
    const { name, attributes } = rpcSpan(req);
    const parent = context.active();
    const span = tracer.startSpan(name, { kind: SpanKind.CLIENT, attributes }, parent);
    propagation.inject(trace.setSpan(parent, span), req.header, headerSetter);
    try {
      const res = await next(req);
      span.end();
      return res;
    } catch (err) {
      endWithError(span, err);
      throw err;
    }
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
