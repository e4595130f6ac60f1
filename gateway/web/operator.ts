/**
 * The operator console, served by the gateway's operator listener (loopback unless
 * configured otherwise) and calling its OperatorService: live charts and breakers
 * (GetStats, every 2 s), sagas by view with Retry and Compensate, one saga's timeline with
 * errors, backoffs and traces (WatchSaga), dead letters with Replay, a trace viewer, and
 * the strangler fig's routes (ListRoutes, every 3 s) with the buttons that move them (SetRoute)
 * and that give up catalog writes the old shop refused (DiscardRefusedWrites).
 *
 * Sign-in: the operator token arrives in the address's fragment (`#operator-token=…`,
 * which no request carries), moves to this tab's sessionStorage, and leaves the address bar;
 * every call sends it as a bearer token. Without a token the page asks the server first: over
 * TLS the browser may hold the operator's client certificate, which needs none. Every action
 * is confirmed in a dialog first; the audit is the server's.
 */
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { OperatorService, RouteMode, SagaView, type DeadLetter, type TraceSummary } from "#gen/shop/gateway/v1/operator_service_pb.js";
import { SagaState } from "#gen/shop/order/v1/order_service_pb.js";
import type { Saga } from "#gen/shop/order/v1/saga_admin_service_pb.js";
import type { RefusedWrite } from "#gen/shop/catalog/v1/catalog_service_pb.js";
import { errorCodes, errorsData, errorsSpec, liveChart, ordersData, ordersSpec, renderBreakerStrips } from "./charts.js";
import { addStyle, clock, duration, enumName, h, ms, row, table } from "./dom.js";
import { consoleCss } from "./style.js";
import { hasOpenPhase, operatorSteps, renderTimeline } from "./timeline.js";
import { renderWaterfall } from "./waterfall.js";
import { renderRoutes, routeModeText, type RouteMove } from "./routes-view.js";

const TOKEN_KEY = "meshwork.operator-token";
const STATS_WINDOW_SECONDS = 300;
/** ListDeadLetters lists at most this many (the contract's bound): a full list may not be all. */
const DEAD_LETTERS_LISTED = 100;
/** Sagas a page of the list holds, and how many pages "More" may add up to. */
const SAGA_PAGE_SIZE = 50;
const SAGA_PAGES_SHOWN = 10;

addStyle(consoleCss);
const $ = <T extends HTMLElement>(selector: string) => document.querySelector<T>(selector)!;

/** Takes a token from the fragment into sessionStorage, and the fragment off the address. */
function signIn(): string | null {
  const match = /(?:^#|&)operator-token=([^&]+)/.exec(location.hash);
  if (match) {
    // A JWT needs no escaping: a malformed escape is kept as it came, for the server to refuse.
    let value = match[1]!;
    try {
      value = decodeURIComponent(value);
    } catch {
      // URIError: left as it is.
    }
    sessionStorage.setItem(TOKEN_KEY, value);
    history.replaceState(null, "", location.pathname + location.search);
  }
  return sessionStorage.getItem(TOKEN_KEY);
}

function requireSignIn(reason: string) {
  sessionStorage.removeItem(TOKEN_KEY);
  stopped = true;
  $("#operator-console").hidden = true;
  $("#sign-out").hidden = true;
  $("#signin-required").hidden = false;
  $("#signin-reason").textContent = reason;
  $("#operator-who").textContent = "not signed in";
}

let stopped = false;
const token = signIn();
const withToken: Interceptor = (next) => (req) => {
  // None without a token: the browser's client certificate, if any, is the credential then.
  const current = sessionStorage.getItem(TOKEN_KEY);
  if (current) req.header.set("authorization", `Bearer ${current}`);
  return next(req);
};
const operator = createClient(OperatorService, createConnectTransport({ baseUrl: location.origin, interceptors: [withToken] }));

/**
 * A refused token ends the session on the page; any other failure is shown where it happened.
 * The listener answers UNAUTHENTICATED and PERMISSION_DENIED about the operator alone (a
 * refusal of its own backend by order is FAILED_PRECONDITION).
 */
function failed(err: unknown, where: HTMLElement) {
  const error = ConnectError.from(err);
  if (error.code === Code.Unauthenticated || error.code === Code.PermissionDenied) {
    requireSignIn(error.code === Code.Unauthenticated ? "The operator token was refused (missing, expired or not signed by this gateway)." : "This token has no operator role.");
  } else {
    where.replaceChildren(h("p", { class: "error", role: "alert" }, `${Code[error.code]}: ${error.rawMessage}`));
  }
}

const outcome = (text: string, ok: boolean, where = "#action-outcome") => {
  $(where).textContent = text;
  $(where).className = `outcome ${ok ? "ok" : "error"}`;
};

// ---- confirmation dialog ----

/** Asks before an action, with a reason field labelled `askReason` if given; resolves with the reason typed (or "") on Confirm, undefined on Cancel. */
function confirmAction(title: string, text: string, confirmLabel: string, askReason?: string): Promise<string | undefined> {
  const dialog = $<HTMLDialogElement>("#confirm-dialog");
  $("#confirm-title").textContent = title;
  $("#confirm-text").textContent = text;
  $("#confirm-ok").textContent = confirmLabel;
  $("#confirm-reason-label").hidden = askReason === undefined;
  $("#confirm-reason-text").textContent = askReason ?? "";
  $<HTMLTextAreaElement>("#confirm-reason").value = "";
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => dialog.addEventListener("close", () => resolve(dialog.returnValue === "confirm" ? $<HTMLTextAreaElement>("#confirm-reason").value.trim() : undefined), { once: true }));
}

// ---- charts and breakers ----

let ordersChart: ReturnType<typeof liveChart> | undefined;
let errorsChart: ReturnType<typeof liveChart> | undefined;
let shownCodes = "";

async function loadStats() {
  const { points, breakers } = await operator.getStats({ windowSeconds: STATS_WINDOW_SECONDS });
  // Made once the page is shown, so it takes its container's width.
  ordersChart ??= liveChart($("#chart-orders"), ordersSpec(STATS_WINDOW_SECONDS));
  ordersChart.setData(ordersData(points));
  const codes = errorCodes(points);
  // uPlot's series are fixed at creation: a new error code means a new chart.
  if (!errorsChart || codes.join() !== shownCodes) {
    errorsChart?.destroy();
    $("#chart-errors").replaceChildren();
    errorsChart = liveChart($("#chart-errors"), errorsSpec(codes, STATS_WINDOW_SECONDS));
    shownCodes = codes.join();
  }
  errorsChart.setData(errorsData(points, codes));
  $("#breakers").replaceChildren(renderBreakerStrips(breakers, STATS_WINDOW_SECONDS, Date.now()));
  $("#stats-updated").textContent = `updated ${clock(Date.now())}`;
}

// ---- sagas ----

const views: Record<string, SagaView> = {
  running: SagaView.RUNNING,
  retrying: SagaView.RETRYING,
  waiting: SagaView.WAITING,
  parked: SagaView.PARKED,
  compensating: SagaView.COMPENSATING,
};
let view = "running";
const stateName = (s: SagaState) => enumName(SagaState, s);

/** Retry is for a parked saga; Compensate while running before the point of no return, or parked while compensating (the server decides). */
function sagaActions(saga: Saga, withTimeline: boolean): HTMLElement[] {
  const parked = saga.state === SagaState.PARKED;
  const canCompensate = saga.state === SagaState.RUNNING || saga.state === SagaState.WAITING || parked;
  return [
    withTimeline ? h("button", { type: "button", class: "secondary", "data-action": "show", onclick: () => void showSaga(saga.orderId) }, "Timeline") : null,
    parked ? h("button", { type: "button", "data-action": "retry", onclick: () => void retry(saga) }, "Retry") : null,
    canCompensate ? h("button", { type: "button", class: "danger", "data-action": "compensate", onclick: () => void compensate(saga) }, "Compensate") : null,
  ].filter((button) => button !== null);
}

/** Pages of the current view shown: "More" adds one, a new view starts again at one. */
let sagaPages = 1;

async function loadSagas() {
  const shown = view;
  const sagas: Saga[] = [];
  let pageToken = "";
  for (let page = 0; page < sagaPages; page++) {
    const next = await operator.listSagas({ view: views[shown]!, pageSize: SAGA_PAGE_SIZE, pageToken });
    sagas.push(...next.sagas);
    pageToken = next.nextPageToken;
    if (!pageToken) break;
  }
  // A tab clicked while this was loading: its own load draws the list.
  if (shown !== view) return;
  const rows = sagas.map((saga) => {
    const tr = row(
      h("td", {}, h("code", { title: saga.orderId }, saga.orderId.slice(0, 8))),
      h("td", { class: `saga-state ${stateName(saga.state)}` }, stateName(saga.state)),
      `${saga.currentStep}${saga.attempts > 1 ? ` (attempt ${saga.attempts})` : ""}`,
      saga.nextAttemptTime ? clock(ms(saga.nextAttemptTime)!) : "",
      h("td", { class: "phase-error" }, saga.lastError),
      `v${saga.version}`,
      saga.updateTime ? clock(ms(saga.updateTime)!) : "",
      h("td", { class: "actions" }, ...sagaActions(saga, true)),
    );
    tr.dataset["orderId"] = saga.orderId;
    return tr;
  });
  const more =
    pageToken && sagaPages < SAGA_PAGES_SHOWN
      ? h("button", { type: "button", class: "secondary", id: "saga-more", onclick: () => ((sagaPages++, void loadSagas().catch((err) => failed(err, $("#saga-list"))))) }, "More")
      : null;
  $("#saga-list").replaceChildren(table(["Order", "State", "Step", "Next attempt", "Last error", "Version", "Updated", "Actions"], rows, `No ${view} sagas.`, { id: "saga-table" }), ...(more ? [more] : []));
}

async function retry(saga: Saga) {
  const ok = await confirmAction("Retry this saga?", `Order ${saga.orderId} is parked at "${saga.currentStep}": ${saga.lastError || "no error recorded"}. Retrying resumes it with a fresh attempt budget.`, "Retry");
  if (ok === undefined) return;
  try {
    const { saga: after } = await operator.retrySaga({ orderId: saga.orderId });
    outcome(`Retry accepted: the saga of order ${saga.orderId} is ${after ? stateName(after.state) : "resuming"}.`, true);
  } catch (err) {
    outcome(`Retry refused: ${ConnectError.from(err).rawMessage}`, false);
  }
  await Promise.all([loadSagas(), showSaga(saga.orderId)]).catch((err) => failed(err, $("#saga-list")));
}

async function compensate(saga: Saga) {
  const reason = await confirmAction("Compensate this saga?", `Order ${saga.orderId} will be undone step by step and cancelled. This cannot be reversed.`, "Compensate", "Reason (for the order's cancel reason and the audit)");
  if (reason === undefined) return;
  try {
    const { saga: after } = await operator.compensateSaga({ orderId: saga.orderId, reason });
    outcome(`Compensation accepted: order ${saga.orderId} will be undone and cancelled (its saga was ${after ? stateName(after.state) : "compensating"} when accepted).`, true);
  } catch (err) {
    outcome(`Compensation refused: ${ConnectError.from(err).rawMessage}`, false);
  }
  await Promise.all([loadSagas(), showSaga(saga.orderId)]).catch((err) => failed(err, $("#saga-list")));
}

// ---- one saga, live ----

let watching: { orderId: string; abort: AbortController; saga?: Saga; timer?: ReturnType<typeof setInterval> } | undefined;

function renderSaga(saga: Saga) {
  const steps = operatorSteps(saga.steps);
  const signals = saga.signals.map((s) => row(s.name, h("td", {}, h("code", {}, s.signalId)), s.receiveTime ? clock(ms(s.receiveTime)!) : "", s.consumeTime ? clock(ms(s.consumeTime)!) : "waiting for a step"));
  $("#saga-detail").replaceChildren(
    h(
      "div",
      { class: "saga", "data-order-id": saga.orderId, "data-state": stateName(saga.state) },
      h("p", { class: "saga-head" }, "Order ", h("code", {}, saga.orderId), ` · ${saga.type} v${saga.version} · `, h("strong", { class: `saga-state ${stateName(saga.state)}` }, stateName(saga.state)), saga.failureReason ? ` · why: ${saga.failureReason}` : "", ...sagaActions(saga, false)),
      saga.lastError ? h("p", { class: "phase-error" }, `Last error: ${saga.lastError}`) : null,
      renderTimeline(steps, { mode: "operator", now: Date.now(), onTrace: (id) => void openTrace(id) }),
      signals.length > 0 ? h("div", {}, h("h3", {}, "Signals"), table(["Signal", "Id", "Received", "Taken"], signals, "")) : null,
    ),
  );
  return hasOpenPhase(steps);
}

async function showSaga(orderId: string) {
  watching?.abort.abort();
  clearInterval(watching?.timer);
  const current = { orderId, abort: new AbortController() } as NonNullable<typeof watching>;
  watching = current;
  try {
    const { saga } = await operator.getSaga({ orderId });
    if (watching !== current || !saga) return;
    current.saga = saga;
    renderSaga(saga);
    // Open phases grow with the clock between changes.
    current.timer = setInterval(() => current.saga && renderSaga(current.saga), 1_000);
    for await (const update of operator.watchSaga({ orderId }, { signal: current.abort.signal })) {
      if (watching !== current || !update.saga) break;
      current.saga = update.saga;
      if (!renderSaga(update.saga)) clearInterval(current.timer);
    }
  } catch (err) {
    if (!current.abort.signal.aborted) failed(err, $("#saga-detail"));
  } finally {
    // The watch ends with the saga, or after five minutes: then the picture stops moving.
    clearInterval(current.timer);
  }
}

// ---- dead letters ----

async function loadDeadLetters() {
  const { deadLetters } = await operator.listDeadLetters({});
  $("#dlq-count").textContent = `(${deadLetters.length}${deadLetters.length >= DEAD_LETTERS_LISTED ? "+" : ""})`;
  const rows = deadLetters.map((dl) => {
    const tr = row(
      String(dl.sequence),
      dl.time ? clock(ms(dl.time)!) : "",
      h("td", {}, h("code", {}, dl.originalSubject)),
      dl.consumer,
      String(dl.deliveries),
      h("td", { class: "phase-error" }, dl.reason),
      h("td", {}, h("button", { type: "button", "data-action": "replay", onclick: () => void replay(dl) }, "Replay")),
    );
    tr.dataset["sequence"] = String(dl.sequence);
    tr.dataset["eventId"] = dl.eventId;
    return tr;
  });
  $("#dead-letters").replaceChildren(table(["#", "Time", "Subject", "Consumer", "Deliveries", "Reason", ""], rows, "No dead letters: every event was processed.", { id: "dead-letter-table" }));
}

async function replay(dl: DeadLetter) {
  const ok = await confirmAction("Replay this dead letter?", `Event ${dl.eventId} goes back to ${dl.originalSubject} with its original id (a consumer that did process it ignores it), and leaves the dead-letter stream.`, "Replay");
  if (ok === undefined) return;
  try {
    await operator.replayDeadLetter({ sequence: dl.sequence });
    outcome(`Replayed dead letter ${dl.sequence} to ${dl.originalSubject}.`, true);
  } catch (err) {
    outcome(`Replay refused: ${ConnectError.from(err).rawMessage}`, false);
  }
  await loadDeadLetters().catch((err) => failed(err, $("#dead-letters")));
}

// ---- traces ----

const TRACES_SHOWN = 25;
/** "shop.gateway.v1.StorefrontService/PlaceOrder" → "StorefrontService/PlaceOrder": the package adds nothing here. */
const shortName = (name: string) => name.replace(/^([a-z0-9_]+\.)+(?=[A-Z])/, "");

async function loadTraces() {
  // The operator listener traces none of this page's own calls (its server's tracing: false), so the list is the mesh's traffic alone.
  const { traces } = await operator.listTraces({ limit: TRACES_SHOWN });
  const rows = traces.map((t: TraceSummary) => {
    const tr = row(
      h("td", {}, h("button", { type: "button", class: "link", "data-trace-id": t.traceId, title: t.rootName, onclick: () => void openTrace(t.traceId) }, shortName(t.rootName) || t.traceId.slice(0, 8))),
      t.startTime ? clock(ms(t.startTime)!) : "",
      duration(t.durationMs),
      String(t.spanCount),
      t.services.join(" "),
    );
    tr.dataset["traceId"] = t.traceId;
    return tr;
  });
  $("#trace-list").replaceChildren(table(["Root span", "Started", "Duration", "Spans", "Services"], rows, "No traces yet (or they go to an OTLP endpoint instead).", { id: "trace-table" }));
}

async function openTrace(traceId: string) {
  $("#trace-view").replaceChildren(h("p", { class: "empty" }, `Loading trace ${traceId}…`));
  $("#trace-section").scrollIntoView({ block: "start" });
  try {
    const { spans } = await operator.getTrace({ traceId });
    $("#trace-view").replaceChildren(renderWaterfall(traceId, spans));
  } catch (err) {
    failed(err, $("#trace-view"));
  }
}

// ---- strangler fig routes ----

async function loadRoutes() {
  // Not while the operator is typing a canary percent: a redraw would take it away.
  const typing = document.activeElement;
  if (typing instanceof HTMLInputElement && $("#routes").contains(typing)) return;
  const listed = await operator.listRoutes({});
  $("#routes").replaceChildren(...renderRoutes(listed, (move) => void moveRoute(move), (refused) => void discardRefused(refused)));
  $("#routes-updated").textContent = `updated ${clock(Date.now())}`;
}

async function moveRoute({ route, mode, canaryPercent }: RouteMove) {
  if (mode === RouteMode.CANARY && !(Number.isInteger(canaryPercent) && canaryPercent >= 1 && canaryPercent <= 99)) {
    outcome("A canary sends 1 to 99 % of callers to the new service.", false, "#routes-outcome");
    return;
  }
  const target = routeModeText(mode, canaryPercent);
  const what: Record<RouteMode, string> = {
    [RouteMode.UNSPECIFIED]: "",
    [RouteMode.LEGACY]: "The old shop serves every call; the new service is not called.",
    [RouteMode.SHADOW]: "The old shop serves every call; the new service is called too and its answers compared, never returned.",
    [RouteMode.CANARY]: `${canaryPercent} % of callers (sticky per customer, else per address) are served by the new service, the rest by the old shop.`,
    [RouteMode.NEW]: "The new service serves every call.",
  };
  const reason = await confirmAction(
    `Route ${route.method} to ${target}?`,
    `${what[mode]} Every gateway and order replica follows within moments; calls in flight finish where they started. It was ${routeModeText(route.mode, route.canaryPercent)} (revision ${route.revision}).`,
    `Route to ${target}`,
    "Reason (kept with the route)",
  );
  if (reason === undefined) return;
  try {
    // Based on the revision shown: a change someone made since is refused, not overwritten.
    const { route: after } = await operator.setRoute({ method: route.method, mode, canaryPercent, reason, expectedRevision: route.revision });
    outcome(`${route.method} is now ${after ? routeModeText(after.mode, after.canaryPercent) : target} (revision ${after?.revision}).`, true, "#routes-outcome");
  } catch (err) {
    outcome(`Route change refused: ${ConnectError.from(err).rawMessage}`, false, "#routes-outcome");
  }
  await loadRoutes().catch((err) => failed(err, $("#routes")));
}

async function discardRefused({ sku, refusal }: RefusedWrite) {
  const ok = await confirmAction(
    `Discard the refused writes of ${sku}?`,
    `The old shop refused them for good (${JSON.stringify(refusal)}). They are given up and, unless a later write of it is still on its way to the old shop, the catalog takes ${sku} again as the old shop holds it (it drops the product if the old shop has none). To keep such a write instead, mend what the old shop refused and write the product again.`,
    "Discard",
  );
  if (ok === undefined) return;
  try {
    const { discarded, resynced } = await operator.discardRefusedWrites({ sku });
    outcome(`${sku}: ${discarded} refused write${discarded === 1 ? "" : "s"} discarded; ${resynced ? "taken again from the old shop" : "a later write of it is on its way to the old shop"}.`, true, "#routes-outcome");
  } catch (err) {
    outcome(`Discard refused: ${ConnectError.from(err).rawMessage}`, false, "#routes-outcome");
  }
  await loadRoutes().catch((err) => failed(err, $("#routes")));
}

// ---- start ----

/** Runs `load` now and every `everyMs` until the session ends; a failure shows in `where`. */
function poll(load: () => Promise<void>, where: () => HTMLElement, everyMs: number) {
  const tick = () => {
    if (stopped) return;
    load()
      .catch((err) => failed(err, where()))
      .finally(() => !stopped && setTimeout(tick, everyMs));
  };
  tick();
}

// A token link opened in this tab while the page is up changes only the fragment: start over with it.
addEventListener("hashchange", () => {
  if (/operator-token=/.test(location.hash) && signIn()) location.reload();
});

function showConsole(who: string) {
  $("#operator-console").hidden = false;
  // A certificate's session is the browser's: the page cannot sign it out.
  $("#sign-out").hidden = !token;
  $("#operator-who").textContent = who;
  $("#sign-out").addEventListener("click", () => requireSignIn("Signed out."));
  for (const tab of document.querySelectorAll<HTMLButtonElement>("#saga-views [role=tab]")) {
    tab.addEventListener("click", () => {
      view = tab.dataset["view"]!;
      sagaPages = 1;
      for (const other of document.querySelectorAll("#saga-views [role=tab]")) other.setAttribute("aria-selected", String(other === tab));
      void loadSagas().catch((err) => failed(err, $("#saga-list")));
    });
  }
  $("#open-saga").addEventListener("submit", (event) => {
    event.preventDefault();
    void showSaga($<HTMLInputElement>("#open-saga-id").value.trim());
  });
  poll(loadStats, () => $("#breakers"), 2_000);
  poll(loadRoutes, () => $("#routes"), 3_000);
  poll(loadSagas, () => $("#saga-list"), 3_000);
  poll(loadDeadLetters, () => $("#dead-letters"), 5_000);
  poll(loadTraces, () => $("#trace-list"), 5_000);
}

if (token) {
  showConsole("signed in as operator");
} else {
  // No token: perhaps the operator's client certificate, which only the server can tell.
  operator.getStats({ windowSeconds: 1 }).then(
    () => showConsole("signed in with the operator certificate"),
    (err: unknown) => {
      const { code } = ConnectError.from(err);
      if (code === Code.Unauthenticated || code === Code.PermissionDenied) requireSignIn("This page needs an operator token.");
      // Anything else is no answer about the operator: the views show their own failures.
      else showConsole("operator");
    },
  );
}
