/**
 * The customer's console: plain DOM and the generated StorefrontService client over
 * connect-web. It signs in with a demo token, places orders, and follows one order live:
 * every WatchOrder message re-reads the order's timeline (GetOrderTimeline: step names,
 * states and times, nothing an operator alone should see), and while a phase is open it is
 * re-read every second, so a wait visibly grows. A 3-D Secure payment shows its waiting step
 * with a Confirm payment button (ConfirmPayment). Errors, traces, breakers, charts and
 * actions are on the operator console, not here; the health line below is GetMeshStatus's,
 * which anyone may call, reduced to up or down.
 */
import { ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
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
 * Reads of My orders overlap (on placing, when the outcome is reported, every 5 s) and may
 * answer out of order: an answer draws unless one asked for later has drawn already. (Only
 * the newest asked for drawing would starve the list whenever reads take longer than the
 * 5 s between them.)
 */
let ordersAsked = 0;
let ordersDrawn = 0;

async function loadOrders() {
  if (!token) return;
  const read = ++ordersAsked;
  const { orders } = await storefront.listMyOrders({ pageSize: 20 });
  if (read < ordersDrawn) return;
  ordersDrawn = read;
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

/** The minimal public health line: each service up or down, no addresses, no breakers. */
async function loadHealth() {
  const { services } = await storefront.getMeshStatus({});
  const up = services.filter((s) => s.status === "SERVING").length;
  $("#health").replaceChildren(
    h("span", {}, up === services.length ? "All services are up." : `${services.length - up} of ${services.length} services are down.`),
    ...services.map((s) => h("span", { class: s.status === "SERVING" ? "SERVING" : "NOT_SERVING", "data-service": s.name }, `${s.name}: ${s.status === "SERVING" ? "up" : "down"}`)),
  );
}

/**
 * The order on screen. A newer follow() supersedes it: its watch is aborted and its timer
 * stops, by comparing against `current`.
 */
let current:
  | { orderId: string; abort: AbortController; confirmationId: string; refreshes: number; asked: number; shown: number; timer?: ReturnType<typeof setTimeout>; actionRequired: boolean }
  | undefined;

async function refreshTimeline(view: NonNullable<typeof current>) {
  const asked = ++view.asked;
  let steps: StepView[];
  try {
    steps = customerSteps((await storefront.getOrderTimeline({ orderId: view.orderId })).steps);
  } catch {
    if (view === current) $("#timeline").replaceChildren(h("p", { class: "empty" }, "The timeline is not available right now."));
    return;
  }
  // Reads overlap (a WatchOrder message during the one-second refresh): the newest one wins.
  if (view !== current || asked < view.shown) return;
  view.shown = asked;
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
  const view = { orderId: order.id, abort: new AbortController(), confirmationId: crypto.randomUUID(), refreshes: 0, asked: 0, shown: 0, actionRequired: false };
  current = view;
  $("#watched").textContent = order.id;
  $("#watch-status").textContent = "";
  $("#progress").replaceChildren();
  $("#confirm-payment").hidden = true;
  $("#confirm-outcome").textContent = "";
  $<HTMLButtonElement>("#confirm-payment-button").disabled = false;
  $("#timeline").replaceChildren(h("p", { class: "empty" }, "Loading the timeline…"));
  try {
    for await (const update of storefront.watchOrder({ orderId: order.id }, { signal: view.abort.signal })) {
      const status = statusName(update.order!.status);
      $("#progress").append(h("li", { "data-event": update.eventType || "accepted" }, `${update.eventType || "accepted"} → ${status}`));
      $("#watch-status").textContent = status;
      $("#watch-status").className = `status-${status}`;
      if (update.eventType === ACTION_REQUIRED) view.actionRequired = true;
      const settledNow = update.order!.status !== OrderStatus.PENDING;
      if (settledNow) view.actionRequired = false;
      void refreshTimeline(view);
      // My orders shows the outcome as soon as it is known, not when the stream ends (the
      // saga's last step, committing the stock, still follows a confirmation).
      if (settledNow) void loadOrders().catch(showError);
    }
  } catch (err) {
    if (view.abort.signal.aborted) return;
    throw err;
  }
  if (view !== current) return;
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
    void loadOrders().catch(showError);
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

await Promise.all([loadProducts(), loadHealth()]).catch(showError);
// My orders too: an order no longer on screen (another was placed since) still finishes.
setInterval(() => void Promise.all([loadHealth(), loadOrders()]).catch(() => {}), 5_000);
