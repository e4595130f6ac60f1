import { describe, expect, it } from "vitest";
import { createTraceStore, spanBytes, type StoredSpan } from "./trace-store.js";

const hex = (n: number, length: number) => n.toString(16).padStart(length, "0");
const span = (trace: number, id: number, extra: Partial<StoredSpan> = {}): StoredSpan => ({
  traceId: hex(trace, 32),
  spanId: hex(id, 16),
  parentSpanId: "",
  service: "order",
  name: `span-${id}`,
  startMs: 1_000 + id,
  durationMs: 1,
  status: "unset",
  attributes: {},
  ...extra,
});

describe("the dev trace store", () => {
  it("evicts the oldest traces past its trace bound", () => {
    const store = createTraceStore({ maxSpans: 1_000, maxTraces: 3, maxSpansPerTrace: 10, maxBytes: 1 << 30 });
    for (let t = 1; t <= 5; t++) store.add([span(t, t)]);
    expect(store.size()).toMatchObject({ spans: 3, traces: 3 });
    expect(store.get(hex(1, 32))).toBeUndefined();
    expect(store.get(hex(2, 32))).toBeUndefined();
    expect(store.list(10).map((t) => t.traceId)).toEqual([hex(5, 32), hex(4, 32), hex(3, 32)]);
  });

  it("evicts the oldest traces past its span bound, never the one being added to", () => {
    const store = createTraceStore({ maxSpans: 4, maxTraces: 100, maxSpansPerTrace: 10, maxBytes: 1 << 30 });
    store.add([span(1, 1), span(1, 2), span(2, 3)]);
    store.add([span(3, 4), span(3, 5)]);
    expect(store.size()).toMatchObject({ spans: 3, traces: 2 });
    expect(store.get(hex(1, 32))).toBeUndefined();
    expect(store.get(hex(3, 32))?.map((s) => s.name)).toEqual(["span-4", "span-5"]);
  });

  it("moves a trace that gets a late span to the newest end, so the quiet traces go first", () => {
    const store = createTraceStore({ maxSpans: 1_000, maxTraces: 3, maxSpansPerTrace: 10, maxBytes: 1 << 30 });
    store.add([span(1, 1)]);
    store.add([span(2, 2)]);
    store.add([span(3, 3)]);
    // Trace 1's compensation, ten minutes on: trace 1 is now the newest.
    store.add([span(1, 4, { name: "compensate", startMs: 600_000 })]);
    store.add([span(4, 5)]);
    expect(store.get(hex(2, 32))).toBeUndefined();
    expect(store.get(hex(1, 32))?.map((s) => s.name)).toEqual(["span-1", "compensate"]);
    expect(store.list(10).map((t) => t.traceId)).toEqual([hex(4, 32), hex(1, 32), hex(3, 32)]);
  });

  it("evicts the oldest traces past its byte budget, estimated from the spans' strings", () => {
    const big = (trace: number, id: number) => span(trace, id, { attributes: { "db.statement": "x".repeat(1_000) } });
    const one = spanBytes(big(1, 1));
    expect(one).toBeGreaterThan(2_000);
    const store = createTraceStore({ maxSpans: 1_000, maxTraces: 100, maxSpansPerTrace: 10, maxBytes: 3 * one });
    for (let t = 1; t <= 5; t++) store.add([big(t, t)]);
    expect(store.size()).toEqual({ spans: 3, traces: 3, bytes: 3 * one });
    expect(store.list(10).map((t) => t.traceId)).toEqual([hex(5, 32), hex(4, 32), hex(3, 32)]);
    // Small spans fit many more in the same budget.
    const small = createTraceStore({ maxSpans: 1_000, maxTraces: 100, maxSpansPerTrace: 10, maxBytes: 3 * one });
    for (let t = 1; t <= 5; t++) small.add([span(t, t)]);
    expect(small.size().traces).toBe(5);
  });

  it("refuses spans without valid ids and past a trace's own bound", () => {
    const store = createTraceStore({ maxSpans: 100, maxTraces: 100, maxSpansPerTrace: 2, maxBytes: 1 << 30 });
    expect(store.add([span(1, 1), span(1, 2), span(1, 3), { ...span(2, 4), traceId: "xyz" }, { ...span(2, 5), spanId: "" }])).toBe(3);
    expect(store.size()).toMatchObject({ spans: 2, traces: 1 });
  });

  it("summarises a trace from its root, and lays its spans out from the first start", () => {
    const store = createTraceStore();
    store.add([span(7, 2, { parentSpanId: hex(1, 16), service: "payment", startMs: 1_010, durationMs: 5 }), span(7, 1, { name: "PlaceOrder", service: "gateway", startMs: 1_000, durationMs: 30 })]);
    expect(store.list(1)[0]).toMatchObject({ rootName: "PlaceOrder", spanCount: 2, durationMs: 30, services: ["gateway", "payment"] });
    expect(store.get(hex(7, 32))!.map((s) => [s.name, s.startOffsetMs, s.durationMs])).toEqual([
      ["PlaceOrder", 0, 30],
      ["span-2", 10, 5],
    ]);
  });

  it("puts a parent before the children that start in its millisecond, whatever order they arrived in", () => {
    const store = createTraceStore();
    const parent = (id: number) => hex(id, 16);
    // Children end, so are exported, first: grandchild, child, root, all in the same millisecond.
    store.add([span(8, 3, { parentSpanId: parent(2), startMs: 1_000 }), span(8, 2, { parentSpanId: parent(1), startMs: 1_000 }), span(8, 1, { startMs: 1_000 })]);
    expect(store.get(hex(8, 32))!.map((s) => s.name)).toEqual(["span-1", "span-2", "span-3"]);
  });

  it("lays out spans that name each other as parents (a broken sender's cycle) without hanging", () => {
    const store = createTraceStore();
    store.add([span(9, 1, { parentSpanId: hex(2, 16), startMs: 1_000 }), span(9, 2, { parentSpanId: hex(1, 16), startMs: 1_000 }), span(9, 3, { parentSpanId: hex(3, 16), startMs: 1_000 })]);
    expect(store.get(hex(9, 32))!.map((s) => s.name).sort()).toEqual(["span-1", "span-2", "span-3"]);
  });
});
