/**
 * The operator console's Routes view: the strangler fig's route table as ListRoutes reports
 * it, each route's mode with the buttons that move it, this gateway replica's calls per side
 * and shadow comparisons, the newest mismatch as a table of field differences, and the
 * catalog's change capture lag, with the writes the old shop refused for good and the buttons
 * that give them up. A plain function from data to elements; the page does the calls (and
 * asks first).
 */
import { RouteMode, type ListRoutesResponse, type Route, type RouteStatus } from "#gen/shop/gateway/v1/operator_service_pb.js";
import { SyncState, type GetSyncStatusResponse, type RefusedWrite } from "#gen/shop/catalog/v1/catalog_service_pb.js";
import { clock, duration, enumName, h, ms, row, table } from "./dom.js";

/** What a button asks for: the route's new mode (with its percent for a canary), based on the revision shown. */
export interface RouteMove {
  route: Route;
  mode: RouteMode;
  canaryPercent: number;
}

const allModes: readonly RouteMode[] = [RouteMode.LEGACY, RouteMode.SHADOW, RouteMode.CANARY, RouteMode.NEW];

/**
 * The routes that take fewer modes than all four, as the route table declares them
 * (services/shop/catalog-router.ts; the page does not load the server's modules): the
 * catalog write route goes to one side alone, so it shows only Legacy and New.
 */
const restrictedRouteModes: Readonly<Record<string, readonly RouteMode[]>> = {
  "shop.gateway.v1.OperatorService/UpdateProduct": [RouteMode.LEGACY, RouteMode.NEW],
};

/** The modes a route's buttons offer. */
export const routeModesOf = (method: string) => restrictedRouteModes[method] ?? allModes;

/** "legacy", "shadow", "canary 50%", "new". */
export const routeModeText = (mode: RouteMode, canaryPercent: number) => (mode === RouteMode.CANARY ? `canary ${canaryPercent}%` : enumName(RouteMode, mode));

/** "StorefrontService/ListProducts": the package adds nothing here. */
const shortMethod = (method: string) => method.replace(/^([a-z0-9_]+\.)+(?=[A-Z])/, "");

function modeButtons(route: Route, onMove: (move: RouteMove) => void): HTMLTableCellElement {
  const percent = h("input", {
    type: "number",
    min: 1,
    max: 99,
    value: route.mode === RouteMode.CANARY ? route.canaryPercent : 50,
    "aria-label": `canary percent for ${route.method}`,
    "data-canary-percent": "",
  });
  const button = (mode: RouteMode) => {
    const current = mode === route.mode && (mode !== RouteMode.CANARY || Number(percent.value) === route.canaryPercent);
    return h(
      "button",
      {
        type: "button",
        class: mode === RouteMode.LEGACY ? "secondary" : undefined,
        "data-mode": enumName(RouteMode, mode),
        "aria-pressed": String(current),
        onclick: () => onMove({ route, mode, canaryPercent: mode === RouteMode.CANARY ? Math.round(Number(percent.value)) : 0 }),
      },
      enumName(RouteMode, mode),
    );
  };
  return h("td", { class: "actions" }, ...routeModesOf(route.method).flatMap((mode) => (mode === RouteMode.CANARY ? [button(mode), percent, "%"] : [button(mode)])));
}

function mismatchExample(status: RouteStatus): HTMLElement | null {
  const example = status.shadow?.example;
  if (!example) return null;
  const rows = example.differences.map((d) => row(h("td", {}, h("code", {}, d.path)), h("td", {}, h("code", {}, d.legacy)), h("td", {}, h("code", {}, d.new))));
  return h(
    "div",
    { class: "mismatch", "data-method": status.route?.method },
    h("h3", {}, `Newest mismatch of ${shortMethod(status.route?.method ?? "")}`, h("span", { class: "muted" }, example.time ? ` at ${clock(ms(example.time)!)}` : "")),
    table(["Field", "Old shop", "New service"], rows, "No field listed.", { class: "mismatch-table" }),
    example.more > 0 ? h("p", { class: "muted" }, `and ${example.more} more differences`) : null,
  );
}

/**
 * The writes the old shop refused for good, oldest first (the catalog lists 20 at most), each
 * with its Discard button: they count in sync_back_pending, so writes stay on the new side
 * until they are given up. The old shop's answer is text, never markup.
 */
function refusedWrites(sync: GetSyncStatusResponse, onDiscard: (refused: RefusedWrite) => void): HTMLElement | null {
  if (sync.refusedWrites.length === 0) return null;
  // A discard gives up all of a product's refused writes: one button per product, on its oldest.
  const offered = new Set<string>();
  const rows = sync.refusedWrites.map((refused) => {
    const first = !offered.has(refused.sku);
    offered.add(refused.sku);
    const discard = first ? h("button", { type: "button", class: "secondary", "data-discard": refused.sku, onclick: () => onDiscard(refused) }, "Discard") : h("span", { class: "muted" }, "with the above");
    const tr = row(h("td", {}, h("code", {}, refused.sku)), refused.refusal, refused.writtenTime ? clock(ms(refused.writtenTime)!) : "-", h("td", { class: "actions" }, discard));
    tr.dataset["sku"] = refused.sku;
    return tr;
  });
  const unlisted = sync.syncBackRefused - BigInt(sync.refusedWrites.length);
  return h(
    "div",
    { id: "refused-writes" },
    h("h3", {}, "Catalog writes the old shop refused"),
    h("p", { class: "muted" }, "They hold catalog writes on the new side. Discarding gives up a product's refused writes, and the catalog takes the product again as the old shop holds it."),
    table(["SKU", "Old shop's answer", "Written", "Give up"], rows, "", { class: "refused-table" }),
    unlisted > 0n ? h("p", { class: "muted" }, `and ${unlisted} more (the oldest 20 are listed)`) : null,
  );
}

function syncStatus(sync: GetSyncStatusResponse | undefined, onDiscard: (refused: RefusedWrite) => void): HTMLElement {
  if (!sync) return h("p", { class: "error", id: "catalog-sync" }, "The catalog did not answer: its change capture status is unknown.");
  const state = enumName(SyncState, sync.state);
  return h(
    "div",
    { id: "catalog-sync", "data-state": state },
    h("h3", {}, "Catalog change capture from the old shop"),
    table(
      ["State", "Lag (bytes)", "Lag (time)", "Applied LSN", "Source LSN", "Last applied", "Products", "Sync back pending", "Of which refused", "Slot"],
      [
        row(
          h("td", { class: sync.state === SyncState.STREAMING ? "ok" : "error" }, state),
          String(sync.lagBytes),
          duration(Number(sync.lagMs)),
          h("td", {}, h("code", {}, sync.appliedLsn || "-")),
          h("td", {}, h("code", {}, sync.sourceLsn || "-")),
          sync.appliedTime ? clock(ms(sync.appliedTime)!) : "-",
          String(sync.products),
          // Writes taken by the catalog not yet in the old shop: catalog writes move back to legacy only at 0.
          h("td", { class: sync.syncBackPending > 0n ? "error" : undefined, "data-sync-back-pending": String(sync.syncBackPending) }, String(sync.syncBackPending)),
          // Never written back unless given up (or a later write of the product is seen back).
          h("td", { class: sync.syncBackRefused > 0n ? "error" : undefined, "data-sync-back-refused": String(sync.syncBackRefused) }, String(sync.syncBackRefused)),
          sync.slot,
        ),
      ],
      "",
    ),
    refusedWrites(sync, onDiscard),
  );
}

/** The view's elements for one ListRoutes answer; `onMove` gets a mode button's ask, `onDiscard` a Discard button's. */
export function renderRoutes(listed: ListRoutesResponse, onMove: (move: RouteMove) => void, onDiscard: (refused: RefusedWrite) => void): HTMLElement[] {
  const rows = listed.routes.map((status) => {
    const route = status.route!;
    const shadow = status.shadow;
    const tr = row(
      h("td", {}, h("code", { title: route.method }, shortMethod(route.method))),
      h("td", { class: "route-mode" }, h("strong", {}, routeModeText(route.mode, route.canaryPercent))),
      String(status.legacyCalls),
      String(status.newCalls),
      shadow ? `${shadow.compared} / ${shadow.mismatched} / ${shadow.converged} / ${shadow.failed} / ${shadow.skipped}` : "-",
      h("td", {}, route.changedBy || "built-in default", route.changeTime ? ` at ${clock(ms(route.changeTime)!)}` : "", route.reason ? h("div", { class: "muted" }, route.reason) : null),
      `r${route.revision}`,
      modeButtons(route, onMove),
    );
    tr.dataset["method"] = route.method;
    return tr;
  });
  return [
    table(["Method", "Mode", "Old shop calls", "New calls", "Shadow compared / mismatched / converged / failed / skipped", "Changed by", "Revision", "Move to"], rows, "No routed methods.", { id: "route-table" }),
    ...listed.routes.map(mismatchExample).filter((element) => element !== null),
    syncStatus(listed.catalogSync, onDiscard),
  ];
}
