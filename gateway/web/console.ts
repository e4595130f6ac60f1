/**
 * The customer's console: plain DOM and the generated StorefrontService client over
 * connect-web. It signs in with a demo token, places orders, and follows one order live:
 * every WatchOrder message re-reads the order's timeline (GetOrderTimeline: step names,
 * states and times, nothing an operator alone should see), and while a phase is open it is
 * re-read every second, so a wait visibly grows. A 3-D Secure payment shows its waiting step
 * with a Confirm payment button (ConfirmPayment). A watch or a timeline read that fails is
 * tried again with the same growing wait as My orders (retryMs). Errors, traces, breakers, charts and
 * actions are on the operator console, not here; the health line below is GetMeshStatus's,
 * which anyone may call, reduced to up or down.
 */
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { OrderStatus, type Order } from "#gen/shop/order/v1/order_service_pb.js";
import { StorefrontService } from "#gen/shop/gateway/v1/storefront_service_pb.js";
import { addStyle, clock, h, money, row } from "./dom.js";
import { consoleCss } from "./style.js";
import { customerSteps, hasOpenPhase, openSignalWait, renderTimeline, type StepView } from "./timeline.js";

/** The signal the charge step waits for under 3-D Secure, and the event that says so. */
const PAYMENT_CONFIRMED = "payment-confirmed";
const ACTION_REQUIRED = "shop.payment.v1.PaymentActionRequired";
/** Refreshing an open phase every second stops after this many (the 3-D Secure wait lasts 10 minutes at most by default). */
const MAX_LIVE_REFRESHES = 15 * 60;

addStyle(consoleCss);

let token = "";
const withToken: Interceptor = (next) => (req) => {
  if (token) req.header.set("authorization", `Bearer ${token}`);
  return next(req);
};
const storefront = createClient(StorefrontService, createConnectTransport({ baseUrl: location.origin, interceptors: [withToken] }));

const $ = <T extends HTMLElement>(selector: string) => document.querySelector<T>(selector)!;
const statusName = (s: OrderStatus) => `ORDER_STATUS_${OrderStatus[s]}`;
const showError = (err: unknown) => ($("#error").textContent = err ? ConnectError.from(err).rawMessage : "");

async function loadProducts() {
  const { products } = await storefront.listProducts({});
  $("#products tbody").replaceChildren(
    ...products.map((p) =>
      row(p.sku, h("td", {}, p.name, p.description ? h("div", { class: "muted" }, p.description) : null), money(p.price), String(p.available), h("td", {}, h("input", { type: "number", min: 0, value: 0, "data-sku": p.sku, "aria-label": `Quantity of ${p.name}` }))),
    ),
  );
}

/**
 * My orders is read on signing in, on placing, when the watch reports an outcome, and
 * every 5 s (an order no longer on screen, another placed since, still shows how it ended).
 * One read at a time: one asked for while another is under way follows it (so it
 * sees what changed since it was asked), and those asked for meanwhile share it, so a slow
 * gateway never has reads piling up (over HTTP/1.1 they would take the page's few
 * connections). A read that fails (rate limited, the gateway away) says so above the list,
 * which stays as last read, and is tried again after a growing wait, at most 30 s; the 5 s
 * round resumes with the first read that succeeds.
 */
const ORDERS_EVERY_MS = 5_000;
const RETRY_MS = [1_000, 2_000, 4_000, 8_000, 15_000, 30_000];
/** The wait before trying again after `failures` reads in a row failed: 1, 2, 4, 8, 15, then 30 s. */
const retryMs = (failures: number) => RETRY_MS[Math.min(failures, RETRY_MS.length - 1)]!;
const myOrders: { reading?: Promise<void>; again: boolean; failures: number; readAt?: number; timer?: ReturnType<typeof setTimeout> } = { again: false, failures: 0 };

function loadOrders(): Promise<void> {
  if (!token) return Promise.resolve();
  if (myOrders.reading) {
    myOrders.again = true;
    return myOrders.reading;
  }
  myOrders.reading = (async () => {
    do {
      myOrders.again = false;
      await readOrders();
      // After a failure the retry's timer reads again, not the requests that queued meanwhile.
    } while (myOrders.again && myOrders.failures === 0);
  })().finally(() => (myOrders.reading = undefined));
  return myOrders.reading;
}

async function readOrders() {
  clearTimeout(myOrders.timer);
  let orders: Order[];
  try {
    ({ orders } = await storefront.listMyOrders({ pageSize: 20 }));
  } catch (err) {
    const waitMs = retryMs(myOrders.failures++);
    const asOf = myOrders.readAt === undefined ? "" : ` The list shows them as of ${clock(myOrders.readAt)}.`;
    $("#orders-status").textContent = `My orders could not be refreshed: ${ConnectError.from(err).rawMessage}. Trying again in ${waitMs / 1_000} s.${asOf}`;
    myOrders.timer = setTimeout(() => void loadOrders(), waitMs);
    return;
  }
  myOrders.failures = 0;
  myOrders.readAt = Date.now();
  $("#orders-status").textContent = "";
  myOrders.timer = setTimeout(() => void loadOrders(), ORDERS_EVERY_MS);
  drawOrders(orders);
}

function drawOrders(orders: Order[]) {
  if (orders.length === 0) {
    $("#orders tbody").replaceChildren(h("tr", {}, h("td", { class: "empty", colspan: 5 }, "No orders yet.")));
    return;
  }
  $("#orders tbody").replaceChildren(
    ...orders.map((o) =>
      row(
        h("td", {}, h("code", {}, o.id.slice(0, 8))),
        money(o.total),
        h("td", { class: `status-${statusName(o.status)}` }, statusName(o.status)),
        o.cancelReason,
        h("td", {}, h("button", { type: "button", class: "link", "data-order-id": o.id, onclick: () => void follow(o).catch(showError) }, "show")),
      ),
    ),
  );
}

/**
 * The minimal public health line: each service up or down, no addresses, no breakers. Read
 * every 5 s, the next round once this one has answered; a read that fails says so.
 */
async function healthRounds() {
  try {
    await loadHealth();
  } catch (err) {
    $("#health").replaceChildren(h("span", {}, `The shop's services could not be checked just now: ${ConnectError.from(err).rawMessage}.`));
  }
  setTimeout(() => void healthRounds(), 5_000);
}

async function loadHealth() {
  const { services } = await storefront.getMeshStatus({});
  const up = services.filter((s) => s.status === "SERVING").length;
  $("#health").replaceChildren(
    h("span", {}, up === services.length ? "All services are up." : `${services.length - up} of ${services.length} services are down.`),
    ...services.map((s) => h("span", { class: s.status === "SERVING" ? "SERVING" : "NOT_SERVING", "data-service": s.name }, `${s.name}: ${s.status === "SERVING" ? "up" : "down"}`)),
  );
}

/**
 * The order on screen. A newer follow() supersedes it: its watch is aborted and its timers
 * stop, by comparing against `current`. It holds one watch, or one timer to reopen it, and
 * one timer for the timeline (the next live refresh or the retry of a failed read).
 */
let current:
  | {
      orderId: string;
      abort: AbortController;
      confirmationId: string;
      refreshes: number;
      asked: number;
      shown: number;
      timer?: ReturnType<typeof setTimeout>;
      timelineFailures: number;
      watchTimer?: ReturnType<typeof setTimeout>;
      watchFailures: number;
      actionRequired: boolean;
    }
  | undefined;

async function refreshTimeline(view: NonNullable<typeof current>) {
  const asked = ++view.asked;
  let steps: StepView[];
  try {
    steps = customerSteps((await storefront.getOrderTimeline({ orderId: view.orderId })).steps);
  } catch {
    // Tried again until a read succeeds or another order is followed; a newer read already
    // shown makes this failure moot.
    if (view !== current || asked < view.shown) return;
    const waitMs = retryMs(view.timelineFailures++);
    $("#timeline").replaceChildren(h("p", { class: "empty" }, `The timeline is not available right now. Trying again in ${waitMs / 1_000} s.`));
    clearTimeout(view.timer);
    view.timer = setTimeout(() => void refreshTimeline(view), waitMs);
    return;
  }
  // Reads overlap (a WatchOrder message during the one-second refresh): the newest one wins.
  if (view !== current || asked < view.shown) return;
  view.shown = asked;
  view.timelineFailures = 0;
  $("#timeline").replaceChildren(renderTimeline(steps, { mode: "customer", now: Date.now() }));
  const wait = openSignalWait(steps, PAYMENT_CONFIRMED);
  showConfirm(view, wait !== undefined || (view.actionRequired && !hasFinished(steps)), wait?.phase.due);
  clearTimeout(view.timer);
  if (hasOpenPhase(steps) && view.refreshes++ < MAX_LIVE_REFRESHES) view.timer = setTimeout(() => void refreshTimeline(view), 1_000);
}

const hasFinished = (steps: StepView[]) => steps.length > 0 && steps.every((s) => s.state === "succeeded" || s.state === "compensated" || s.state === "failed");

/**
 * The Confirm payment panel, shown while the charge waits for the customer: the timeline's
 * open "payment-confirmed" wait, or PaymentActionRequired until the timeline shows the wait.
 */
function showConfirm(view: NonNullable<typeof current>, waiting: boolean, due: number | undefined) {
  $("#confirm-payment").hidden = !waiting;
  $("#confirm-due").textContent = due !== undefined ? `It waits until ${clock(due)}; after that the order is cancelled.` : "";
  $<HTMLButtonElement>("#confirm-payment-button").dataset["orderId"] = view.orderId;
}

async function follow(order: Order) {
  current?.abort.abort();
  clearTimeout(current?.timer);
  clearTimeout(current?.watchTimer);
  const view = { orderId: order.id, abort: new AbortController(), confirmationId: crypto.randomUUID(), refreshes: 0, asked: 0, shown: 0, timelineFailures: 0, watchFailures: 0, actionRequired: false };
  current = view;
  $("#watched").textContent = order.id;
  $("#watch-status").textContent = "";
  $("#watch-lost").textContent = "";
  $("#progress").replaceChildren();
  $("#confirm-payment").hidden = true;
  $("#confirm-outcome").textContent = "";
  $<HTMLButtonElement>("#confirm-payment-button").disabled = false;
  $("#timeline").replaceChildren(h("p", { class: "empty" }, "Loading the timeline…"));
  await watch(view);
}

/** The watch opened again after `waitMs`, unless another order is followed meanwhile (follow clears the timer). */
const reopenLater = (view: NonNullable<typeof current>, waitMs: number) => (view.watchTimer = setTimeout(() => void watch(view).catch(showError), waitMs));

/** Refusals that asking again cannot change: the order is gone or not the caller's, or the token is. */
const FINAL_CODES: ReadonlySet<Code> = new Set([Code.NotFound, Code.PermissionDenied, Code.Unauthenticated]);

/**
 * Follows the order's WatchOrder stream until the order is terminal (the stream then ends
 * normally) or another order is followed (it is aborted). A stream that fails otherwise (the
 * gateway restarting, the connection cut, the rate limit) is reopened after retryMs' wait,
 * the page saying so until a message arrives again, and one the gateway ends while the order
 * is still pending (its longest watch) after the first wait; a new stream's first message is
 * the order as it is now, so nothing missed meanwhile stays missed.
 */
async function watch(view: NonNullable<typeof current>) {
  if (view !== current) return;
  let settled = false;
  try {
    for await (const update of storefront.watchOrder({ orderId: view.orderId }, { signal: view.abort.signal })) {
      view.watchFailures = 0;
      $("#watch-lost").textContent = "";
      const status = statusName(update.order!.status);
      $("#progress").append(h("li", { "data-event": update.eventType || "accepted" }, `${update.eventType || "accepted"} → ${status}`));
      $("#watch-status").textContent = status;
      $("#watch-status").className = `status-${status}`;
      if (update.eventType === ACTION_REQUIRED) view.actionRequired = true;
      const settledNow = update.order!.status !== OrderStatus.PENDING;
      settled = settledNow;
      if (settledNow) view.actionRequired = false;
      void refreshTimeline(view);
      // My orders shows the outcome as soon as it is known, not when the stream ends (the
      // saga's last step, committing the stock, still follows a confirmation).
      if (settledNow) void loadOrders();
    }
  } catch (err) {
    if (view.abort.signal.aborted || view !== current) return;
    const lost = ConnectError.from(err);
    if (FINAL_CODES.has(lost.code)) {
      $("#watch-lost").textContent = `Lost the order's updates: ${lost.rawMessage}. Not reconnecting.`;
      return;
    }
    const waitMs = retryMs(view.watchFailures++);
    $("#watch-lost").textContent = `Lost the order's updates: ${lost.rawMessage}. Reconnecting in ${waitMs / 1_000} s.`;
    reopenLater(view, waitMs);
    return;
  }
  if (view !== current) return;
  if (!settled) {
    // The gateway ends a watch after its longest (5 minutes) while the order still waits (a
    // 3-D Secure confirmation, say): a new one starts with the order as it is now.
    reopenLater(view, retryMs(0));
    return;
  }
  await Promise.all([refreshTimeline(view), loadOrders(), loadProducts()]);
}

$("#login").addEventListener("click", async () => {
  try {
    const customerId = $<HTMLInputElement>("#customer").value;
    token = (await storefront.issueDemoToken({ customerId })).token;
    $("#who").textContent = `signed in as ${customerId}`;
    showError(undefined);
    await loadOrders();
  } catch (err) {
    showError(err);
  }
});

$("#place").addEventListener("click", async () => {
  try {
    const items = [...document.querySelectorAll<HTMLInputElement>("#products input")]
      .filter((input) => Number(input.value) > 0)
      .map((input) => ({ sku: input.dataset["sku"]!, quantity: Number(input.value) }));
    const { order } = await storefront.placeOrder({ items, paymentToken: $<HTMLSelectElement>("#token").value, requestId: crypto.randomUUID() });
    showError(undefined);
    void loadOrders();
    await follow(order!);
  } catch (err) {
    showError(err);
  }
});

$("#confirm-payment-button").addEventListener("click", async () => {
  const view = current;
  if (!view) return;
  const button = $<HTMLButtonElement>("#confirm-payment-button");
  button.disabled = true;
  try {
    // One id per order on screen: a second click or a retry confirms the same thing once.
    await storefront.confirmPayment({ orderId: view.orderId, confirmationId: view.confirmationId });
    $("#confirm-outcome").textContent = "Payment confirmed; finishing your order…";
    view.actionRequired = false;
    await refreshTimeline(view);
  } catch (err) {
    button.disabled = false;
    showError(err);
  }
});

void healthRounds();
await loadProducts().catch(showError);
