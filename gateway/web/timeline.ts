/**
 * The saga timeline, shared by both consoles: each step a row, its phases as bars on one
 * time axis. Attempts have their duration; the backoff before a retry is a hatched gap;
 * compensations get rows of their own below the steps, in the reverse order they run in;
 * timer and signal waits are bars of their own style, and an open one reaches to "now".
 *
 * A customer's timeline (GetOrderTimeline) carries names, states and times only. An
 * operator's (GetSaga, WatchSaga) adds each attempt's error, backoff and trace; the
 * renderer shows those in operator mode alone, so a customer's page cannot show them even
 * if a field ever reached it.
 */
import { SagaPhaseKind, type SagaStepStatus } from "#gen/shop/order/v1/order_service_pb.js";
import type { TimelineStep } from "#gen/shop/gateway/v1/storefront_service_pb.js";
import { clock, duration, h, ms } from "./dom.js";

export type PhaseKind = "attempt" | "compensation" | "timer" | "signal";

/** One bar, in epoch milliseconds. */
export interface PhaseView {
  kind: PhaseKind;
  /** 1-based for attempts and compensations, 0 for waits. */
  attempt: number;
  start: number;
  /** Unset while under way. */
  end?: number | undefined;
  /** When a timer fires or a signal wait times out. */
  due?: number | undefined;
  outcome: string;
  waitName: string;
  error?: string;
  backoffMs?: number;
  traceId?: string;
}

export interface StepView {
  name: string;
  state: string;
  phases: PhaseView[];
}

export interface TimelineOptions {
  mode: "customer" | "operator";
  now: number;
  /** Operator mode: opens an attempt's trace. */
  onTrace?: (traceId: string) => void;
}

const kindNames: Partial<Record<SagaPhaseKind, PhaseKind>> = {
  [SagaPhaseKind.ATTEMPT]: "attempt",
  [SagaPhaseKind.COMPENSATION]: "compensation",
  [SagaPhaseKind.TIMER]: "timer",
  [SagaPhaseKind.SIGNAL]: "signal",
};

type PhaseFields = { kind: SagaPhaseKind; startTime?: Parameters<typeof ms>[0]; endTime?: Parameters<typeof ms>[0]; dueTime?: Parameters<typeof ms>[0]; outcome: string; waitName: string };

/** The fields both contracts share; a phase of an unknown kind or with no start is left out. */
function basePhase(phase: PhaseFields, attempt: number): PhaseView | undefined {
  const kind = kindNames[phase.kind];
  const start = ms(phase.startTime);
  if (!kind || start === undefined) return undefined;
  return { kind, attempt, start, end: ms(phase.endTime), due: ms(phase.dueTime), outcome: phase.outcome, waitName: phase.waitName };
}

/**
 * A customer's timeline. TimelinePhase has no attempt number, so attempts are numbered here
 * in the order they came, per kind.
 */
export function customerSteps(steps: TimelineStep[]): StepView[] {
  return steps.map((step) => {
    const counts = new Map<SagaPhaseKind, number>();
    const phases = step.phases.flatMap((phase) => {
      const numbered = phase.kind === SagaPhaseKind.ATTEMPT || phase.kind === SagaPhaseKind.COMPENSATION;
      const attempt = numbered ? (counts.get(phase.kind) ?? 0) + 1 : 0;
      counts.set(phase.kind, attempt);
      return basePhase(phase, attempt) ?? [];
    });
    return { name: step.name, state: step.state, phases };
  });
}

/** An operator's timeline, with errors, backoffs and traces. */
export function operatorSteps(steps: SagaStepStatus[]): StepView[] {
  return steps.map((step) => ({
    name: step.name,
    state: step.state,
    phases: step.phases.flatMap((phase) => {
      const view = basePhase(phase, phase.attempt);
      return view ? [{ ...view, error: phase.error, backoffMs: Number(phase.backoffMs), traceId: phase.traceId }] : [];
    }),
  }));
}

/** Whether any phase is still under way (the console then refreshes the timeline every second). */
export const hasOpenPhase = (steps: StepView[]) => steps.some((step) => step.phases.some((phase) => phase.end === undefined));

/** The open wait for signal `name`, and its step, if the saga is waiting for it. */
export function openSignalWait(steps: StepView[], name: string): { step: StepView; phase: PhaseView } | undefined {
  for (const step of steps) {
    const phase = step.phases.find((p) => p.kind === "signal" && p.waitName === name && p.end === undefined);
    if (phase) return { step, phase };
  }
  return undefined;
}

/** A retrying attempt's backoff: from its end to the next attempt of the same kind, or until it is due. */
interface Backoff {
  start: number;
  end: number;
  pending: boolean;
}

function backoffs(phases: PhaseView[], now: number): Backoff[] {
  return phases.flatMap((phase, i): Backoff[] => {
    if (phase.outcome !== "retrying" || phase.end === undefined) return [];
    const next = phases.slice(i + 1).find((p) => p.kind === phase.kind && p.start >= phase.end!);
    if (next) return [{ start: phase.end, end: next.start, pending: false }];
    const due = phase.backoffMs ? phase.end + phase.backoffMs : now;
    return [{ start: phase.end, end: Math.max(due, phase.end), pending: true }];
  });
}

/** 1, 2 or 5 times a power of ten: about `count` ticks over `span` milliseconds. */
function tickStep(span: number, count = 5): number {
  const raw = span / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  return [1, 2, 5, 10].map((m) => m * power).find((step) => step >= raw) ?? raw;
}

function phaseLabel(phase: PhaseView): string {
  switch (phase.kind) {
    case "attempt":
      return `attempt ${phase.attempt}`;
    case "compensation":
      return `compensation attempt ${phase.attempt}`;
    case "timer":
      return `timer ${phase.waitName}`.trim();
    case "signal":
      return `wait for signal ${phase.waitName}`.trim();
  }
}

/** What a bar's tooltip and the details line say: label, outcome, times; operators also get error and backoff. */
function describe(phase: PhaseView, now: number, operator: boolean): string {
  const end = phase.end ?? now;
  const times = `${clock(phase.start)}–${phase.end === undefined ? "now" : clock(phase.end)} (${duration(end - phase.start)})`;
  const due = phase.due !== undefined && phase.end === undefined ? `, ${phase.kind === "timer" ? "fires" : "times out"} at ${clock(phase.due)}` : "";
  const extra = operator ? [phase.error ? `error: ${phase.error}` : "", phase.backoffMs ? `backoff ${duration(phase.backoffMs)}` : ""].filter(Boolean) : [];
  return [`${phaseLabel(phase)}: ${phase.outcome}, ${times}${due}`, ...extra].join("\n");
}

/**
 * The timeline as one element. Pure: the same steps, mode and `now` give the same DOM.
 * Bars are `.phase[data-kind][data-outcome][data-attempt]`, backoffs `.backoff`, rows
 * `.tl-row[data-step][data-section=forward|compensation]`.
 */
export function renderTimeline(steps: StepView[], options: TimelineOptions): HTMLElement {
  const operator = options.mode === "operator";
  const all = steps.flatMap((step) => step.phases);
  const root = h("div", { class: "timeline", "data-mode": options.mode, role: "group", "aria-label": "Saga timeline" });
  if (all.length === 0) {
    root.append(h("p", { class: "empty" }, steps.length === 0 ? "No steps have started yet." : `Steps: ${steps.map((s) => `${s.name} (${s.state})`).join(", ")}; none has started.`));
    return root;
  }
  const t0 = Math.min(...all.map((p) => p.start));
  const ends = steps.flatMap((step) => [...step.phases.map((p) => p.end ?? options.now), ...backoffs(step.phases, options.now).map((b) => b.end)]);
  // At least 50 ms wide, so a saga of a few milliseconds is not drawn as one full-width bar.
  const span = Math.max(Math.max(...ends) - t0, 50);
  const x = (t: number) => `${(((t - t0) / span) * 100).toFixed(3)}%`;
  const w = (from: number, to: number) => `${((Math.max(0, to - from) / span) * 100).toFixed(3)}%`;

  const step = tickStep(span);
  const ticks: HTMLElement[] = [];
  for (let t = 0; t <= span + 1e-9; t += step) ticks.push(h("span", { class: "tl-tick", style: `left:${((t / span) * 100).toFixed(3)}%` }, `+${duration(t)}`));
  root.append(
    h("div", { class: "tl-row tl-axis-row", "aria-hidden": "true" }, h("div", { class: "tl-label" }, h("span", { class: "tl-axis-title" }, `time since ${clock(t0)}`)), h("div", { class: "tl-axis" }, ...ticks)),
  );

  const bar = (phase: PhaseView) =>
    h("div", {
      class: `phase${phase.end === undefined ? " open" : ""}`,
      "data-kind": phase.kind,
      "data-outcome": phase.outcome,
      "data-attempt": phase.attempt,
      style: `left:${x(phase.start)};width:${w(phase.start, phase.end ?? options.now)}`,
      title: describe(phase, options.now, operator),
      role: "img",
      "aria-label": describe(phase, options.now, operator).replaceAll("\n", "; "),
    });

  const details = (phases: PhaseView[]) => {
    if (!operator) return null;
    const lines = phases
      .filter((p) => p.error || p.traceId || p.backoffMs || p.outcome !== "succeeded")
      .map((p) =>
        h(
          "li",
          { class: "phase-detail", "data-kind": p.kind, "data-attempt": p.attempt },
          `${phaseLabel(p)} · ${p.outcome} · ${duration((p.end ?? options.now) - p.start)}`,
          p.backoffMs ? ` · backoff ${duration(p.backoffMs)}` : "",
          p.error ? h("span", { class: "phase-error" }, ` · ${p.error}`) : "",
          p.traceId ? h("button", { type: "button", class: "link trace-link", "data-trace-id": p.traceId, onclick: () => options.onTrace?.(p.traceId!) }, `trace ${p.traceId.slice(0, 8)}`) : "",
        ),
      );
    return lines.length > 0 ? h("ul", { class: "tl-details" }, ...lines) : null;
  };

  const stepRow = (view: StepView, section: "forward" | "compensation", phases: PhaseView[]) => {
    const first = Math.min(...phases.map((p) => p.start));
    const openWait = phases.find((p) => (p.kind === "signal" || p.kind === "timer") && p.end === undefined);
    const name = section === "compensation" ? `undo ${view.name}` : view.name;
    return h(
      "div",
      { class: "tl-row", "data-step": view.name, "data-state": view.state, "data-section": section },
      h(
        "div",
        { class: "tl-label" },
        h("span", { class: "tl-name" }, name),
        section === "forward" ? h("span", { class: `state state-${view.state}` }, view.state) : null,
        h("span", { class: "tl-times" }, `${clock(first)} · ${phases.every((p) => p.end !== undefined) ? duration(Math.max(...phases.map((p) => p.end!)) - first) : "under way"}`),
        openWait ? h("span", { class: "tl-wait" }, openWait.kind === "signal" ? `waiting for ${openWait.waitName}` : `timer ${openWait.waitName}`, openWait.due !== undefined ? ` until ${clock(openWait.due)}` : "") : null,
      ),
      h(
        "div",
        { class: "tl-track" },
        ...backoffs(phases, options.now).map((b) =>
          h("div", { class: `backoff${b.pending ? " pending" : ""}`, style: `left:${x(b.start)};width:${w(b.start, b.end)}`, title: `backoff ${duration(b.end - b.start)}${b.pending ? " (next attempt pending)" : ""}` }),
        ),
        ...phases.map(bar),
      ),
      details(phases),
    );
  };

  for (const view of steps) {
    const forward = view.phases.filter((p) => p.kind !== "compensation");
    if (forward.length > 0) root.append(stepRow(view, "forward", forward));
    else root.append(h("div", { class: "tl-row", "data-step": view.name, "data-state": view.state, "data-section": "forward" }, h("div", { class: "tl-label" }, h("span", { class: "tl-name" }, view.name), h("span", { class: `state state-${view.state}` }, view.state)), h("div", { class: "tl-track" })));
  }
  // Compensations run last step first: so are their rows.
  const compensated = [...steps].reverse().filter((view) => view.phases.some((p) => p.kind === "compensation"));
  if (compensated.length > 0) {
    root.append(h("div", { class: "tl-section" }, "Compensation (undoes the steps in reverse)"));
    for (const view of compensated) root.append(stepRow(view, "compensation", view.phases.filter((p) => p.kind === "compensation")));
  }
  root.append(timelineLegend());
  return root;
}

function timelineLegend(): HTMLElement {
  const entries: [string, string][] = [
    ["attempt", "attempt"],
    ["failed", "failed or retrying attempt"],
    ["backoff", "backoff before a retry"],
    ["compensation", "compensation"],
    ["timer", "timer"],
    ["signal", "signal wait"],
  ];
  return h("ul", { class: "legend tl-legend", "aria-label": "Timeline legend" }, ...entries.map(([swatch, label]) => h("li", {}, h("span", { class: `swatch swatch-${swatch}`, "aria-hidden": "true" }), label)));
}
