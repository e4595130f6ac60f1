import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { SpanSchema, TraceSummarySchema, type Span, type TraceSummary } from "#gen/shop/gateway/v1/operator_service_pb.js";

/** A span as the store keeps it: already bounded (see limits), times in epoch milliseconds. */
export interface StoredSpan {
  traceId: string;
  spanId: string;
  /** Empty for a root. */
  parentSpanId: string;
  service: string;
  name: string;
  startMs: number;
  durationMs: number;
  status: "ok" | "error" | "unset";
  attributes: Record<string, string>;
}

export interface TraceStoreLimits {
  /** Spans in the store at most; the oldest traces go first. */
  maxSpans: number;
  /** Traces at most. */
  maxTraces: number;
  /** Spans one trace keeps at most; later ones are dropped, so one runaway trace cannot empty the store. */
  maxSpansPerTrace: number;
  /**
   * The spans' estimated size at most (spanBytes), the oldest traces going first: the span
   * bound alone would let 20,000 spans of long names and attributes hold far more memory
   * than 20,000 short ones.
   */
  maxBytes: number;
}

const defaultTraceStoreLimits: TraceStoreLimits = { maxSpans: 20_000, maxTraces: 2_000, maxSpansPerTrace: 1_000, maxBytes: 32 * 1024 * 1024 };

/** What a stored span object costs beyond its strings (its fields, ids' headers, the attribute object), roughly. */
const SPAN_OVERHEAD_BYTES = 256;
/** A span's memory, estimated from its strings' lengths (two bytes a UTF-16 unit) and a fixed overhead: an estimate, cheap enough for every span. */
export function spanBytes(span: StoredSpan): number {
  let units = span.traceId.length + span.spanId.length + span.parentSpanId.length + span.service.length + span.name.length + span.status.length;
  for (const [key, value] of Object.entries(span.attributes)) units += key.length + value.length;
  return SPAN_OVERHEAD_BYTES + 2 * units;
}

/** What a span may carry into the store: a few attributes, each short. */
export const spanBounds = { maxAttributes: 16, maxKeyLength: 64, maxValueLength: 256, maxNameLength: 256 };

/** `value` cut to `max` characters, marked when cut. */
export const truncated = (value: string, max: number) => (value.length <= max ? value : `${value.slice(0, max - 1)}…`);

/** The first few attributes as short strings, whatever their sender made of them. */
export function boundedAttributes(entries: Iterable<readonly [string, unknown]>): Record<string, string> {
  const kept: Record<string, string> = {};
  let count = 0;
  for (const [key, value] of entries) {
    if (count++ >= spanBounds.maxAttributes) break;
    if (value === undefined || value === null) continue;
    kept[truncated(key, spanBounds.maxKeyLength)] = truncated(typeof value === "string" ? value : JSON.stringify(value), spanBounds.maxValueLength);
  }
  return kept;
}

/** Ids as W3C trace context and OTLP/JSON write them. */
export const TRACE_ID = /^[0-9a-f]{32}$/;
const SPAN_ID = /^[0-9a-f]{16}$/;

export interface TraceStore {
  /** Adds spans, evicting the oldest traces past the limits; returns how many were refused (bad ids, or a full trace). */
  add(spans: readonly StoredSpan[]): number;
  /** The newest traces first, at most `limit`. */
  list(limit: number): TraceSummary[];
  /** One trace's spans by start, offsets from its first span; undefined if unknown or evicted. */
  get(traceId: string): Span[] | undefined;
  /** Spans held now, for tests and the bound. */
  size(): { spans: number; traces: number; bytes: number };
}

/**
 * Each span's depth in its trace: 0 for one whose parent is not in the trace, else one more than
 * its parent's. A cycle (spans from a hostile or broken sender naming each other as parents) ends
 * at the span already being walked, so every span gets a depth and the walk ends.
 */
function depthsOf(spans: readonly StoredSpan[]): Map<StoredSpan, number> {
  const byId = new Map(spans.map((s) => [s.spanId, s]));
  const depths = new Map<StoredSpan, number>();
  for (const span of spans) {
    const path: StoredSpan[] = [];
    const onPath = new Set<StoredSpan>();
    let at: StoredSpan | undefined = span;
    while (at && !depths.has(at) && !onPath.has(at)) {
      path.push(at);
      onPath.add(at);
      at = byId.get(at.parentSpanId);
    }
    let depth = at && depths.has(at) ? depths.get(at)! + 1 : 0;
    for (let i = path.length - 1; i >= 0; i--) depths.set(path[i]!, depth++);
  }
  return depths;
}

/**
 * The dev trace store: the last traces of the whole mesh, in the gateway's memory, for the
 * console's waterfall with no tracing backend. Under `npm start` every process sends its
 * spans here (the OTLP receiver on the operator listener), the gateway's own in-process.
 * A trace's age is when its latest span arrived: traces are evicted oldest first, so a trace
 * that is still growing (a 3-D Secure order compensated ten minutes after it was placed)
 * stays while traces that have gone quiet go.
 */
export function createTraceStore(limits: TraceStoreLimits = defaultTraceStoreLimits): TraceStore {
  // A Map keeps insertion order: each span re-inserts its trace (add), so the first entry is
  // the trace that has gone longest without a span.
  const traces = new Map<string, StoredSpan[]>();
  let spanCount = 0;
  let bytes = 0;
  const evictOldest = () => {
    const [oldest, spans] = traces.entries().next().value!;
    traces.delete(oldest);
    spanCount -= spans.length;
    for (const span of spans) bytes -= spanBytes(span);
  };
  return {
    add(spans) {
      let refused = 0;
      for (const span of spans) {
        if (!TRACE_ID.test(span.traceId) || !SPAN_ID.test(span.spanId)) {
          refused++;
          continue;
        }
        let trace = traces.get(span.traceId);
        if (trace && trace.length >= limits.maxSpansPerTrace) {
          refused++;
          continue;
        }
        if (trace) {
          // To the newest end: a late span makes its trace the newest, not the next evicted.
          traces.delete(span.traceId);
        } else {
          if (traces.size >= limits.maxTraces) evictOldest();
          trace = [];
        }
        traces.set(span.traceId, trace);
        trace.push(span);
        spanCount++;
        bytes += spanBytes(span);
        // Never the trace just added to: it is the newest (the last entry).
        while ((spanCount > limits.maxSpans || bytes > limits.maxBytes) && traces.size > 1) evictOldest();
      }
      return refused;
    },
    list(limit) {
      const newest = [...traces.entries()].slice(-limit).reverse();
      return newest.map(([traceId, spans]) => {
        const start = Math.min(...spans.map((s) => s.startMs));
        const end = Math.max(...spans.map((s) => s.startMs + s.durationMs));
        const ids = new Set(spans.map((s) => s.spanId));
        // The root: the earliest span whose parent is not in the trace (a caller outside the mesh, or none).
        const root = spans.filter((s) => !ids.has(s.parentSpanId)).sort((a, b) => a.startMs - b.startMs)[0];
        return create(TraceSummarySchema, {
          traceId,
          rootName: root?.name ?? "",
          startTime: timestampFromMs(Math.floor(start)),
          durationMs: end - start,
          spanCount: spans.length,
          services: [...new Set(spans.map((s) => s.service))].sort(),
        });
      });
    },
    get(traceId) {
      const spans = traces.get(traceId);
      if (!spans) return undefined;
      const start = Math.min(...spans.map((s) => s.startMs));
      const depth = depthsOf(spans);
      // By start; at the same start (a child begun within its parent's first millisecond) the
      // parent first, whatever order the spans arrived in (a child usually ends, so is sent, first).
      return [...spans]
        .sort((a, b) => a.startMs - b.startMs || depth.get(a)! - depth.get(b)!)
        .map((s) => create(SpanSchema, { spanId: s.spanId, parentSpanId: s.parentSpanId, service: s.service, name: s.name, startOffsetMs: s.startMs - start, durationMs: s.durationMs, status: s.status, attributes: s.attributes }));
    },
    size: () => ({ spans: spanCount, traces: traces.size, bytes }),
  };
}
