/**
 * One trace as a waterfall: a row per span, children under their parent and indented,
 * each bar placed by its offset from the trace's start and as wide as it lasted, coloured
 * by the service that recorded it.
 */
import type { Span } from "#gen/shop/gateway/v1/operator_service_pb.js";
import { duration, h } from "./dom.js";

/** The mesh's processes keep their colours from one trace to the next. */
const serviceColours: Record<string, string> = {
  gateway: "#2d5bd7",
  order: "#7b3fd1",
  inventory: "#17803d",
  payment: "#c2410c",
  notification: "#0e7490",
};
const spare = ["#a21caf", "#4d7c0f", "#b45309", "#be123c", "#1d4ed8"];

function serviceColour(service: string): string {
  const known = serviceColours[service];
  if (known) return known;
  let hash = 0;
  for (const char of service) hash = (hash * 31 + char.charCodeAt(0)) >>> 0;
  return spare[hash % spare.length]!;
}

/** Spans in display order, each with its depth: parents before children, siblings by start. */
function spanTree(spans: Span[]): { span: Span; depth: number }[] {
  const ids = new Set(spans.map((s) => s.spanId));
  const children = new Map<string, Span[]>();
  // A span whose parent is not in the trace (not recorded, or evicted) is shown as a root.
  const roots: Span[] = [];
  for (const span of spans) {
    if (span.parentSpanId && ids.has(span.parentSpanId)) children.set(span.parentSpanId, [...(children.get(span.parentSpanId) ?? []), span]);
    else roots.push(span);
  }
  const byStart = (a: Span, b: Span) => a.startOffsetMs - b.startOffsetMs;
  const out: { span: Span; depth: number }[] = [];
  const visit = (span: Span, depth: number) => {
    out.push({ span, depth });
    for (const child of (children.get(span.spanId) ?? []).sort(byStart)) visit(child, depth + 1);
  };
  for (const root of roots.sort(byStart)) visit(root, 0);
  return out;
}

/** The waterfall of one trace (`#trace-waterfall .span` rows), or an empty state. */
export function renderWaterfall(traceId: string, spans: Span[]): HTMLElement {
  const root = h("div", { id: "trace-waterfall", class: "waterfall", "data-trace-id": traceId, "data-span-count": spans.length });
  if (spans.length === 0) {
    root.append(h("p", { class: "empty" }, "This trace has no spans."));
    return root;
  }
  const total = Math.max(...spans.map((s) => s.startOffsetMs + s.durationMs), 1);
  const services = [...new Set(spans.map((s) => s.service))];
  root.append(
    h("p", { class: "wf-summary" }, h("strong", { class: "span-count" }, `${spans.length} spans`), ` across ${services.length} services, ${duration(total)}: `, h("code", {}, traceId)),
    h("ul", { class: "legend", "aria-label": "Services" }, ...services.map((service) => h("li", { "data-service": service }, h("span", { class: "swatch", style: `background:${serviceColour(service)}`, "aria-hidden": "true" }), service))),
    h("div", { class: "wf-row wf-axis", "aria-hidden": "true" }, h("span", { class: "wf-name" }, "span"), h("span", { class: "wf-track" }, h("span", { class: "wf-tick", style: "left:0" }, "0 ms"), h("span", { class: "wf-tick end" }, duration(total)))),
  );
  for (const { span, depth } of spanTree(spans)) {
    const left = (span.startOffsetMs / total) * 100;
    const width = (span.durationMs / total) * 100;
    const label = `${span.service}: ${span.name}, +${duration(span.startOffsetMs)}, ${duration(span.durationMs)}, ${span.status}`;
    const attributes = Object.entries(span.attributes).map(([k, v]) => `${k}=${v}`);
    root.append(
      h(
        "div",
        { class: `wf-row span${span.status === "error" ? " error" : ""}`, "data-service": span.service, "data-depth": depth, title: [label, ...attributes].join("\n") },
        h("span", { class: "wf-name", style: `padding-left:${depth * 14}px` }, h("span", { class: "wf-service", style: `color:${serviceColour(span.service)}` }, span.service), " ", span.name),
        h("span", { class: "wf-track" }, h("span", { class: "wf-bar", role: "img", "aria-label": label, style: `left:${left.toFixed(3)}%;width:${width.toFixed(3)}%;background:${serviceColour(span.service)}` }), h("span", { class: "wf-duration", style: left + width > 85 ? `right:${(100 - left).toFixed(3)}%;margin-right:4px` : `left:${(left + width).toFixed(3)}%;margin-left:4px` }, duration(span.durationMs))),
      ),
    );
  }
  return root;
}
