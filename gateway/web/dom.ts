/**
 * The consoles' DOM helpers: one element builder and the formats both pages show, so each
 * view is a plain function from data to elements (easy to read, easy to assert on).
 */
import { timestampMs, type Timestamp } from "@bufbuild/protobuf/wkt";

type Child = Node | string | null | undefined | false;
/** Attributes by name; `on<event>` keys take listeners; undefined and false leave one out. */
type Attrs = Record<string, string | number | boolean | undefined | ((event: Event) => void)>;

/** `h("td", { class: "ok", title: "…" }, "text", child)`: an element with attributes and children. */
export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Attrs = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (typeof value === "function") element.addEventListener(name.slice(2), value);
    else if (value === true) element.setAttribute(name, "");
    else if (value !== undefined && value !== false) element.setAttribute(name, String(value));
  }
  element.append(...children.filter((child): child is Node | string => child !== null && child !== undefined && child !== false));
  return element;
}

/** A table with a caption-less header row, or `empty` in one full-width cell when there are no rows. */
export function table(headers: string[], rows: HTMLTableRowElement[], empty: string, attrs: Attrs = {}): HTMLTableElement {
  const body = rows.length > 0 ? rows : [h("tr", {}, h("td", { class: "empty", colspan: headers.length }, empty))];
  return h("table", attrs, h("thead", {}, h("tr", {}, ...headers.map((name) => h("th", { scope: "col" }, name)))), h("tbody", {}, ...body));
}

export const row = (...cells: (HTMLTableCellElement | string)[]) => h("tr", {}, ...cells.map((c) => (typeof c === "string" ? h("td", {}, c) : c)));

/** Milliseconds since the epoch, or undefined for an unset timestamp. */
export const ms = (t: Timestamp | undefined) => (t ? timestampMs(t) : undefined);

/** "850 ms", "3.2 s", "4 min 5 s": the unit a reader takes in at a glance. */
export function duration(milliseconds: number): string {
  if (milliseconds < 1_000) return `${Math.max(0, Math.round(milliseconds))} ms`;
  if (milliseconds < 60_000) return `${(milliseconds / 1_000).toFixed(milliseconds < 10_000 ? 1 : 0)} s`;
  const minutes = Math.floor(milliseconds / 60_000);
  return `${minutes} min ${Math.round((milliseconds % 60_000) / 1_000)} s`;
}

/** Local wall-clock time with seconds, e.g. "14:03:07". */
export const clock = (epochMs: number) => new Date(epochMs).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });

export const money = (m?: { currencyCode: string; minorUnits: bigint }) => (m ? `${(Number(m.minorUnits) / 100).toFixed(2)} ${m.currencyCode}` : "");

/** Enum value name without its prefix, lower case: SagaState.PARKED → "parked". */
export const enumName = (names: Record<number, string>, value: number) => (names[value] ?? String(value)).toLowerCase().replaceAll("_", " ");

/** Adds a stylesheet (given as text) to the page once. */
export function addStyle(css: string): void {
  document.head.append(h("style", {}, css));
}
