/**
 * The browser console: plain DOM and the generated StorefrontService client over
 * connect-web. It signs in with a demo token, places orders, follows one order's saga live
 * (WatchOrder), lists the customer's orders, and shows the mesh's health and breakers.
 */
import { ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { OrderStatus, type Order } from "#gen/shop/order/v1/order_service_pb.js";
import { StorefrontService } from "#gen/shop/gateway/v1/storefront_service_pb.js";

let token = "";
const withToken: Interceptor = (next) => (req) => {
  if (token) req.header.set("authorization", `Bearer ${token}`);
  return next(req);
};
const storefront = createClient(StorefrontService, createConnectTransport({ baseUrl: location.origin, interceptors: [withToken] }));

const $ = <T extends HTMLElement>(selector: string) => document.querySelector<T>(selector)!;
const money = (m?: { currencyCode: string; minorUnits: bigint }) => (m ? `${(Number(m.minorUnits) / 100).toFixed(2)} ${m.currencyCode}` : "");
const statusName = (s: OrderStatus) => `ORDER_STATUS_${OrderStatus[s]}`;
const cell = (text: string, className = "") => {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  return td;
};
const row = (...cells: HTMLElement[]) => {
  const tr = document.createElement("tr");
  tr.append(...cells);
  return tr;
};
const showError = (err: unknown) => ($("#error").textContent = err ? ConnectError.from(err).rawMessage : "");

async function loadProducts() {
  const { products } = await storefront.listProducts({});
  $("#products tbody").replaceChildren(
    ...products.map((p) => {
      const qty = document.createElement("input");
      qty.type = "number";
      qty.min = "0";
      qty.value = "0";
      qty.dataset["sku"] = p.sku;
      const td = document.createElement("td");
      td.append(qty);
      return row(cell(p.sku), cell(p.name), cell(money(p.price)), cell(String(p.available)), td);
    }),
  );
}

async function loadOrders() {
  if (!token) return;
  const { orders } = await storefront.listMyOrders({ pageSize: 20 });
  $("#orders tbody").replaceChildren(...orders.map((o) => row(cell(o.id.slice(0, 8)), cell(money(o.total)), cell(statusName(o.status), `status-${statusName(o.status)}`), cell(o.cancelReason))));
}

async function loadMesh() {
  const status = await storefront.getMeshStatus({});
  $("#services tbody").replaceChildren(...status.services.map((s) => row(cell(s.name), cell(s.status, s.status))));
  $("#breakers tbody").replaceChildren(...status.breakers.map((b) => row(cell(b.dependency), cell(b.state, b.state), cell(String(b.calls)), cell(String(b.failures)), cell(String(b.rejected)))));
}

async function watch(order: Order) {
  $("#watched").textContent = order.id;
  $("#progress").replaceChildren();
  for await (const update of storefront.watchOrder({ orderId: order.id })) {
    const status = statusName(update.order!.status);
    const item = document.createElement("li");
    item.textContent = `${update.eventType || "accepted"} → ${status}`;
    $("#progress").append(item);
    $("#watch-status").textContent = status;
    $("#watch-status").className = `status-${status}`;
  }
  await Promise.all([loadOrders(), loadProducts()]);
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
    await watch(order!);
  } catch (err) {
    showError(err);
  }
});

await Promise.all([loadProducts(), loadMesh()]).catch(showError);
setInterval(() => void loadMesh().catch(() => {}), 2_000);
