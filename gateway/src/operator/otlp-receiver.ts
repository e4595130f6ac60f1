import { createHash, timingSafeEqual } from "node:crypto";
import type { NodeRequest, NodeResponse } from "#platform";
import { boundedAttributes, spanBounds, truncated, type StoredSpan, type TraceStore } from "./trace-store.js";

/** Where OTLP/HTTP exporters post traces (their default path). */
const OTLP_TRACES_PATH = "/v1/traces";
/** An exporter's batch is at most 512 spans by default, well under this. */
const MAX_BODY_BYTES = 1024 * 1024;

/** The parts of OTLP/JSON's ExportTraceServiceRequest the store reads (opentelemetry-proto, trace/v1, JSON encoding). */
interface OtlpKeyValue {
  key?: unknown;
  value?: { stringValue?: unknown; intValue?: unknown; doubleValue?: unknown; boolValue?: unknown; [other: string]: unknown };
}
interface OtlpSpan {
  traceId?: unknown;
  spanId?: unknown;
  parentSpanId?: unknown;
  name?: unknown;
  startTimeUnixNano?: unknown;
  endTimeUnixNano?: unknown;
  attributes?: unknown;
  status?: { code?: unknown };
}
interface OtlpRequest {
  resourceSpans?: { resource?: { attributes?: unknown }; scopeSpans?: { spans?: unknown }[] }[];
}

const list = <T>(value: unknown): T[] => (Array.isArray(value) ? (value as T[]) : []);

/** An attribute's value as the store shows it. */
function scalar(value: OtlpKeyValue["value"]): unknown {
  if (!value) return undefined;
  return value.stringValue ?? value.intValue ?? value.doubleValue ?? value.boolValue ?? value;
}
const attributePairs = (attributes: unknown) => list<OtlpKeyValue>(attributes).flatMap((kv) => (typeof kv.key === "string" ? [[kv.key, scalar(kv.value)] as const] : []));

/** Epoch milliseconds (to the microsecond) from OTLP/JSON's nanoseconds, a decimal string or a number. */
function millisOf(nanos: unknown): number | undefined {
  const text = typeof nanos === "number" ? String(Math.trunc(nanos)) : nanos;
  if (typeof text !== "string" || !/^\d{1,20}$/.test(text)) return undefined;
  return Number(BigInt(text) / 1000n) / 1000;
}

/** OTLP's status codes, as numbers or (proto3 JSON's enum names) strings. */
function statusOf(code: unknown): StoredSpan["status"] {
  if (code === 2 || code === "STATUS_CODE_ERROR") return "error";
  if (code === 1 || code === "STATUS_CODE_OK") return "ok";
  return "unset";
}

/** The spans of a request, bounded; those without valid ids or times are left out, and counted. */
function spansOfOtlpJson(request: OtlpRequest): { spans: StoredSpan[]; rejected: number } {
  const spans: StoredSpan[] = [];
  let rejected = 0;
  for (const resourceSpans of list<NonNullable<OtlpRequest["resourceSpans"]>[number]>(request.resourceSpans)) {
    const serviceName = attributePairs(resourceSpans.resource?.attributes).find(([key]) => key === "service.name")?.[1];
    const service = truncated(typeof serviceName === "string" ? serviceName : "unknown", spanBounds.maxKeyLength);
    for (const scopeSpans of list<{ spans?: unknown }>(resourceSpans.scopeSpans)) {
      for (const span of list<OtlpSpan>(scopeSpans.spans)) {
        const start = millisOf(span.startTimeUnixNano);
        const end = millisOf(span.endTimeUnixNano);
        if (typeof span.traceId !== "string" || typeof span.spanId !== "string" || start === undefined || end === undefined) {
          rejected++;
          continue;
        }
        spans.push({
          // OTLP/JSON writes ids in hex; the store refuses anything else.
          traceId: span.traceId.toLowerCase(),
          spanId: span.spanId.toLowerCase(),
          parentSpanId: typeof span.parentSpanId === "string" ? span.parentSpanId.toLowerCase() : "",
          service,
          name: truncated(typeof span.name === "string" ? span.name : "", spanBounds.maxNameLength),
          startMs: start,
          durationMs: Math.max(0, end - start),
          status: statusOf(span.status?.code),
          attributes: boundedAttributes(attributePairs(span.attributes)),
        });
      }
    }
  }
  return { spans, rejected };
}

const digest = (text: string) => createHash("sha256").update(text).digest();

function reply(res: NodeResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": String(Buffer.byteLength(text)) });
  res.end(text);
}

/**
 * The dev trace store's OTLP/HTTP receiver (JSON encoding, which the SDK's
 * exporter-trace-otlp-http sends), on the operator listener. Its bearer token (npm start's
 * DEV_TRACES_TOKEN, given to every process) lets a process add spans and nothing else:
 * it opens no RPC, which still needs an operator. Bodies are bounded (1 MiB), as is what
 * each span carries into the store. Returns whether the request was this receiver's.
 */
export function createOtlpReceiver(options: { store: TraceStore; token: string }): (req: NodeRequest, res: NodeResponse) => boolean {
  const expected = digest(`Bearer ${options.token}`);
  return (req, res) => {
    if (req.url?.split("?", 1)[0] !== OTLP_TRACES_PATH) return false;
    if (req.method !== "POST") {
      reply(res, 405, { message: "POST OTLP/JSON here" });
      return true;
    }
    // Compared as digests, so neither the length nor a prefix leaks through timing.
    if (!timingSafeEqual(digest(req.headers.authorization ?? ""), expected)) {
      reply(res, 401, { message: "a dev trace token is required" });
      return true;
    }
    const type = String(req.headers["content-type"] ?? "");
    const encoding = String(req.headers["content-encoding"] ?? "identity");
    if (!type.startsWith("application/json") || encoding !== "identity") {
      reply(res, 415, { message: "only OTLP/JSON without compression (exporter-trace-otlp-http's default)" });
      return true;
    }
    if (Number(req.headers["content-length"] ?? 0) > MAX_BODY_BYTES) {
      reply(res, 413, { message: `at most ${MAX_BODY_BYTES} bytes` });
      return true;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let refused = false;
    req.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size <= MAX_BODY_BYTES) chunks.push(chunk);
      else if (!refused) {
        refused = true;
        chunks.length = 0;
        reply(res, 413, { message: `at most ${MAX_BODY_BYTES} bytes` });
        req.destroy();
      }
    });
    req.on("end", () => {
      if (refused) return;
      let body: unknown;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
      } catch {
        reply(res, 400, { message: "the body is not JSON" });
        return;
      }
      const { spans, rejected } = spansOfOtlpJson((body ?? {}) as OtlpRequest);
      const refusedByStore = options.store.add(spans);
      const rejectedSpans = rejected + refusedByStore;
      // ExportTraceServiceResponse: partial_success names what was dropped.
      reply(res, 200, rejectedSpans > 0 ? { partialSuccess: { rejectedSpans: String(rejectedSpans), errorMessage: "spans without valid ids or times, or past a trace's bound" } } : {});
    });
    return true;
  };
}
