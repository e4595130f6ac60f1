import { context, propagation, SpanKind, SpanStatusCode, trace, TraceFlags, type Context, type Span, type TextMapGetter, type TextMapSetter } from "@opentelemetry/api";
import { AlwaysOffSampler, NodeTracerProvider, BatchSpanProcessor, ParentBasedSampler, type SpanExporter, type SpanProcessor, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-node";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { ExportResultCode, W3CTraceContextPropagator } from "@opentelemetry/core";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import type { DevTraces } from "./config.js";

const TRACER = "meshwork";

/**
 * Installs the process's tracer provider: W3C trace context, AsyncLocalStorage context
 * (registered by NodeTracerProvider), and an exporter: OTLP over HTTP when an endpoint is
 * configured, or the one a test passes in. Without either, spans still get ids and are
 * propagated (so trace ids reach logs and peers), but only a trace a caller sampled is
 * recorded: with nowhere to export, recording a span is pure cost (attributes, timing,
 * about 10 µs per hop), so the traces this process starts are marked not sampled.
 */
// Set by initTelemetry: whether no span of a trace a caller did not sample is ever recorded here.
let recordsOnlySampledTraces = false;

/**
 * The dev trace store's exporter in the process that holds it (the gateway), registered by
 * exportSpansInProcess. The provider is installed before the process builds its store, and
 * a provider's processors are fixed at construction, so the in-process processor forwards
 * to whatever is registered here; spans that end before that are dropped.
 */
let inProcessExporter: SpanExporter | undefined;
const forwardingExporter: SpanExporter = {
  export: (spans, done) => (inProcessExporter ? inProcessExporter.export(spans, done) : done({ code: ExportResultCode.SUCCESS })),
  shutdown: async () => {},
};

/** Sends this process's spans to `exporter` from now on (the dev trace store, where DEV_TRACES is in-process); returns the undo. */
export function exportSpansInProcess(exporter: SpanExporter): () => void {
  inProcessExporter = exporter;
  return () => {
    if (inProcessExporter === exporter) inProcessExporter = undefined;
  };
}

/** A dev store's spans show up within a second; the SDK's default batch waits five. */
const DEV_TRACES_DELAY_MS = 1_000;

export async function initTelemetry(options: { serviceName: string; otlpEndpoint?: string; exporter?: SpanExporter; devTraces?: DevTraces | undefined }): Promise<{ shutdown(): Promise<void> }> {
  const spanProcessors: SpanProcessor[] = [];
  if (options.exporter) spanProcessors.push(new SimpleSpanProcessor(options.exporter));
  // An OTLP collector takes the traces alone, as before there was a dev store.
  const devTraces = options.otlpEndpoint ? undefined : options.devTraces;
  const remote = options.otlpEndpoint
    ? { url: `${options.otlpEndpoint.replace(/\/$/, "")}/v1/traces` }
    : devTraces && devTraces !== "in-process"
      ? { url: devTraces.url, headers: { authorization: `Bearer ${devTraces.token}` }, batch: { scheduledDelayMillis: DEV_TRACES_DELAY_MS } }
      : undefined;
  if (remote) {
    // Loaded only where traces leave the process: a process that exports none saves the
    // 2-3 MiB of resident memory the exporter's module graph takes. It sends OTLP/HTTP
    // with JSON, which the dev store's receiver reads.
    const { OTLPTraceExporter } = await import("@opentelemetry/exporter-trace-otlp-http");
    spanProcessors.push(new BatchSpanProcessor(new OTLPTraceExporter({ url: remote.url, ...(remote.headers ? { headers: remote.headers } : {}) }), remote.batch));
  }
  if (devTraces === "in-process") spanProcessors.push(new BatchSpanProcessor(forwardingExporter, { scheduledDelayMillis: DEV_TRACES_DELAY_MS }));
  const exportsNothing = spanProcessors.length === 0;
  const provider = new NodeTracerProvider({
    resource: resourceFromAttributes({ "service.name": options.serviceName }),
    spanProcessors,
    ...(exportsNothing ? { sampler: new ParentBasedSampler({ root: new AlwaysOffSampler() }) } : {}),
  });
  provider.register({ propagator: new W3CTraceContextPropagator() });
  recordsOnlySampledTraces = exportsNothing;
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

/**
 * Whether a span started under `parent` would never be recorded, so none is needed: the
 * parent's trace is one a caller did not sample, and this process records no other (see
 * initTelemetry). The parent's ids then stand for the hop, in log lines and in the
 * traceparent sent on; a trace with no parent still gets a span, for its ids.
 */
function unrecordedTrace(parent: Context): boolean {
  if (!recordsOnlySampledTraces) return false;
  const parentSpan = trace.getSpanContext(parent);
  return parentSpan !== undefined && (parentSpan.traceFlags & TraceFlags.SAMPLED) === 0;
}

/** `run(arg)`'s promise, also when it throws before returning one. */
function settle<A, T>(run: (arg: A) => Promise<T>, arg: A): Promise<T> {
  try {
    return run(arg);
  } catch (err) {
    return Promise.reject(err);
  }
}

/** Ends `span` when `pending` settles, with an error status if it fails. */
function endingWith<T>(span: Span, pending: Promise<T>): Promise<T> {
  return pending.then(
    (result) => {
      span.end();
      return result;
    },
    (err: unknown) => {
      endWithError(span, err);
      throw err;
    },
  );
}

/**
 * Runs `work` in a span; the span records an exception and error status if it throws. A
 * span that is not recording (a trace nobody sampled) only carries ids, so nothing waits to
 * end it.
 */
export function withSpan<T>(name: string, kind: SpanKind, parent: Context, attributes: Record<string, string>, work: (span: Span) => Promise<T>): Promise<T> {
  const span = trace.getTracer(TRACER).startSpan(name, { kind, attributes }, parent);
  const pending = context.with(trace.setSpan(parent, span), settle<Span, T>, undefined, work, span);
  return span.isRecording() ? endingWith(span, pending) : pending;
}

/** Span name and attributes of an RPC, built once per method: they are the same for every call. */
interface RpcSpanShape {
  name: string;
  attributes: Record<string, string>;
}
type RpcRequest = { service: { typeName: string }; method: { name: string } };
const rpcSpans = new WeakMap<object, RpcSpanShape>();
function rpcSpan(req: RpcRequest): RpcSpanShape {
  let shape = rpcSpans.get(req.method);
  if (!shape) {
    shape = { name: `${req.service.typeName}/${req.method.name}`, attributes: { "rpc.system": "grpc", "rpc.service": req.service.typeName, "rpc.method": req.method.name } };
    rpcSpans.set(req.method, shape);
  }
  return shape;
}

/** Server interceptor: continues the caller's trace (traceparent) in a SERVER span. */
export function createServerTracingInterceptor(service: string): Interceptor {
  // The server's spans also name the service serving them; built once per method, too.
  const serverSpans = new WeakMap<object, RpcSpanShape>();
  const serverSpan = (req: RpcRequest) => {
    let shape = serverSpans.get(req.method);
    if (!shape) {
      const { name, attributes } = rpcSpan(req);
      shape = { name, attributes: { ...attributes, "meshwork.service": service } };
      serverSpans.set(req.method, shape);
    }
    return shape;
  };
  return (next) => (req) => {
    const parent = propagation.extract(context.active(), req.header, headerGetter);
    // Entered all the same: the caller's trace id reaches this call's log lines and its own calls.
    if (unrecordedTrace(parent)) return context.with(parent, settle<typeof req, Awaited<ReturnType<typeof next>>>, undefined, next, req);
    const { name, attributes } = serverSpan(req);
    return withSpan(name, SpanKind.SERVER, parent, attributes, () => next(req));
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
  return (next) => (req) => {
    const parent = context.active();
    if (unrecordedTrace(parent)) {
      propagation.inject(parent, req.header, headerSetter);
      return next(req);
    }
    const { name, attributes } = rpcSpan(req);
    const span = tracer.startSpan(name, { kind: SpanKind.CLIENT, attributes }, parent);
    propagation.inject(trace.setSpan(parent, span), req.header, headerSetter);
    return span.isRecording() ? endingWith(span, settle(next, req)) : next(req);
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
