/**
 * The operator console's live charts, drawn with uPlot (canvas, a few tens of kB), fed
 * from OperatorService.GetStats: one point per second over the last minutes.
 */
import uPlot from "uplot";
import uplotCss from "uplot/dist/uPlot.min.css";
import type { BreakerPoint, StatsPoint } from "#gen/shop/gateway/v1/operator_service_pb.js";
import { addStyle, clock, h, ms } from "./dom.js";

export interface ChartSeries {
  label: string;
  stroke: string;
  /** "y" (the left axis, default) or "ms" (the right one). */
  scale?: "y" | "ms";
  dash?: number[];
}

export interface ChartSpec {
  title: string;
  /** The x axis always spans this many seconds up to the newest point, however few points there are yet. */
  windowSeconds: number;
  yLabel: string;
  /** The right axis, for series on the "ms" scale. */
  msLabel?: string;
  series: ChartSeries[];
}

/** x in seconds since the epoch (uPlot's time scale), then one array per series. */
export type ChartData = { x: number[]; ys: number[][] };

let styled = false;

/**
 * A uPlot chart in `container` that takes new data as it comes. Its container says how many
 * points it shows (`data-points`), which the browser tests read.
 */
export function liveChart(container: HTMLElement, spec: ChartSpec) {
  if (!styled) {
    addStyle(uplotCss);
    styled = true;
  }
  const width = () => Math.max(container.clientWidth, 320);
  const axes: uPlot.Axis[] = [
    // A clock label is about 60 px wide: keep ticks further apart than that.
    { label: "time", space: 80, values: (_u, ticks) => ticks.map((t) => clock(t * 1_000)) },
    { label: spec.yLabel, scale: "y" },
  ];
  if (spec.msLabel) axes.push({ label: spec.msLabel, scale: "ms", side: 1, grid: { show: false } });
  const chart = new uPlot(
    {
      title: spec.title,
      width: width(),
      height: 200,
      scales: { x: { time: true, range: (_u, _min, max) => [max - spec.windowSeconds, max] }, y: { range: (_u, _min, max) => [0, Math.max(max, 1)] }, ms: { range: (_u, _min, max) => [0, Math.max(max, 10)] } },
      series: [{ label: "time", value: (_u, t) => (t === null ? "" : clock(t * 1_000)) }, ...spec.series.map((s) => ({ label: s.label, stroke: s.stroke, width: 2, scale: s.scale ?? "y", ...(s.dash ? { dash: s.dash } : {}) }))],
      axes,
    },
    [[], ...spec.series.map(() => [])],
    container,
  );
  const resize = new ResizeObserver(() => chart.setSize({ width: width(), height: 200 }));
  resize.observe(container);
  return {
    setData({ x, ys }: ChartData) {
      chart.setData([x, ...ys]);
      container.dataset["points"] = String(x.length);
    },
    destroy() {
      resize.disconnect();
      chart.destroy();
    },
  };
}

const seconds = (p: { time?: Parameters<typeof ms>[0] }) => (ms(p.time) ?? 0) / 1_000;

/** Orders per second, p50 and p99 latency. */
export const ordersSpec = (windowSeconds: number): ChartSpec => ({
  title: "Orders per second, with PlaceOrder latency (this gateway replica)",
  windowSeconds,
  yLabel: "orders / s",
  msLabel: "latency (ms)",
  series: [
    { label: "orders/s", stroke: "#2d5bd7" },
    { label: "p50 (ms)", stroke: "#17803d", scale: "ms" },
    { label: "p99 (ms)", stroke: "#c2410c", scale: "ms", dash: [6, 4] },
  ],
});

export const ordersData = (points: StatsPoint[]): ChartData => ({
  x: points.map(seconds),
  ys: [points.map((p) => p.ordersPerSecond), points.map((p) => p.p50Ms), points.map((p) => p.p99Ms)],
});

const errorColours = ["#b42318", "#a15c00", "#7b3fd1", "#0e7490", "#be123c", "#4d7c0f"];

/** One series per error code seen in the window, in name order so colours stay put. */
export function errorCodes(points: StatsPoint[]): string[] {
  return [...new Set(points.flatMap((p) => Object.keys(p.errorsPerSecond)))].sort();
}

/** With no error in the window, one flat "no errors" line: an empty chart would look broken. */
export const errorsSpec = (codes: string[], windowSeconds: number): ChartSpec => ({
  title: "Errors per second, by gRPC code (this gateway replica)",
  windowSeconds,
  yLabel: "errors / s",
  series: (codes.length > 0 ? codes : ["no errors"]).map((code, i) => ({ label: code, stroke: errorColours[i % errorColours.length]! })),
});

export const errorsData = (points: StatsPoint[], codes: string[]): ChartData => ({
  x: points.map(seconds),
  ys: codes.length > 0 ? codes.map((code) => points.map((p) => p.errorsPerSecond[code] ?? 0)) : [points.map(() => 0)],
});

/**
 * Each dependency's breaker over the window as a strip of coloured runs (closed, half-open,
 * open, isolated), with its calls and failures in the window: what state it was in, and when.
 */
export function renderBreakerStrips(points: BreakerPoint[], windowSeconds: number, now: number): HTMLElement {
  const byDependency = new Map<string, BreakerPoint[]>();
  for (const point of points) byDependency.set(point.dependency, [...(byDependency.get(point.dependency) ?? []), point]);
  const root = h("div", { class: "breakers", id: "breaker-strips" });
  if (byDependency.size === 0) {
    root.append(h("p", { class: "empty" }, "No breaker has seen a call yet."));
    return root;
  }
  const from = now - windowSeconds * 1_000;
  const pct = (t: number) => Math.min(100, Math.max(0, ((t - from) / (windowSeconds * 1_000)) * 100));
  for (const [dependency, series] of [...byDependency].sort(([a], [b]) => a.localeCompare(b))) {
    const sorted = series.map((p) => ({ t: ms(p.time) ?? 0, p })).sort((a, b) => a.t - b.t);
    // Runs of one state: a handful of elements however long the window.
    const runs: { state: string; start: number; end: number }[] = [];
    for (const { t, p } of sorted) {
      const last = runs.at(-1);
      if (last && last.state === p.state) last.end = t + 1_000;
      else runs.push({ state: p.state, start: t, end: t + 1_000 });
    }
    const calls = series.reduce((n, p) => n + p.calls, 0);
    const failures = series.reduce((n, p) => n + p.failures, 0);
    const current = sorted.at(-1)!.p.state;
    root.append(
      h(
        "div",
        { class: "breaker", "data-dependency": dependency, "data-state": current },
        h("span", { class: "breaker-name" }, dependency, " ", h("span", { class: `badge ${current}` }, current)),
        h(
          "span",
          { class: "strip", role: "img", "aria-label": `${dependency} breaker over the last ${windowSeconds} s: ${runs.map((r) => `${r.state} from ${clock(r.start)}`).join(", ")}` },
          ...runs.map((r) => h("span", { class: `run ${r.state}`, "data-state": r.state, style: `left:${pct(r.start).toFixed(2)}%;width:${(pct(r.end) - pct(r.start)).toFixed(2)}%`, title: `${r.state} ${clock(r.start)}–${clock(r.end)}` })),
        ),
        h("span", { class: "breaker-counts" }, `${Math.round(calls)} calls sent, ${Math.round(failures)} failed`),
      ),
    );
  }
  root.append(h("p", { class: "axis-note" }, `last ${windowSeconds / 60} minutes, to ${clock(now)}`));
  return root;
}
