/**
 * `npm run route -- list [--json]` shows the strangler fig's route table with what the
 * gateway replica answering has counted (calls per side, shadow comparisons, the newest
 * mismatch) and the catalog's change capture lag;
 * `npm run route -- set <method> <legacy|shadow|canary|new> [percent] [--reason TEXT]`
 * moves one method (ListProducts, or its full name shop.gateway.v1.StorefrontService/ListProducts;
 * UpdateProduct, the catalog writes' route, takes legacy or new only).
 * Rollback is the same command with the earlier mode.
 * `npm run route -- put-product <sku> --name TEXT [--description TEXT] --price 12.99 --currency USD`
 * writes one product through OperatorService.UpdateProduct, to the side the write route names.
 * `npm run route -- discard-refused <sku>` gives up the product's catalog writes the old shop
 * refused for good (list shows them; they hold writes on the new side) through
 * OperatorService.DiscardRefusedWrites, and says whether the catalog took the product again
 * from the old shop.
 *
 * It calls OperatorService on the gateway's operator listener: OPERATOR_URL, else the
 * address in the link `npm start` left in .data/operator-console.url, else the listener's
 * default port on loopback. Its token: OPERATOR_TOKEN, else one minted for a few minutes
 * from the local mesh's operator secret (.data/secrets/operator.auth, which `npm start`
 * creates), naming --operator (default: your user name) as who changed the route.
 *
 * Exit status: 0 done, 1 the gateway refused or failed (its status is printed), 2 bad usage
 * or no way to sign in.
 */
import { readFileSync } from "node:fs";
import { userInfo } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { toJson } from "@bufbuild/protobuf";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { ListRoutesResponseSchema, OperatorService, RouteMode, type Route, type RouteStatus } from "#gen/shop/gateway/v1/operator_service_pb.js";
import { SyncState, type GetSyncStatusResponse, type Product } from "#gen/shop/catalog/v1/catalog_service_pb.js";
import { deployable } from "#mesh";
import type { Env } from "#platform/process/config.js";
import { isSafePrincipalId } from "#platform/trust/principal-id.js";
import { mintLocalOperatorToken } from "#gateway/src/operator/operator-auth.js";
import { decimalOf, minorUnitsOf } from "#platform/domain/decimal-price.js";
import { dataDir, secretsDir } from "../mesh/local-infra.js";

const USAGE = `usage: npm run route -- <command> [options]
  list [--json]
  set <method> <legacy|shadow|canary|new> [percent] [--reason TEXT] [--expect-revision N]
      <method>: ListProducts, or the full name (shop.gateway.v1.StorefrontService/ListProducts)
      canary takes a percent from 1 to 99 of callers sent to the new side (sticky per customer)
      UpdateProduct (the catalog writes) takes legacy or new only
  put-product <sku> --name TEXT [--description TEXT] --price 12.99 --currency USD
      writes a product to the side UpdateProduct's route names
  discard-refused <sku>
      gives up the product's catalog writes the old shop refused for good (list shows them);
      the catalog then takes the product again as the old shop holds it
options: --operator NAME (default: your user name; with a minted local token)
the listener: OPERATOR_URL, else .data/operator-console.url's address; the token: OPERATOR_TOKEN, else minted from .data/secrets/operator.auth`;

/** How long a minted local token lives: one command's worth. */
const MINTED_TOKEN_SECONDS = 5 * 60;

/** Where the CLI writes; a test passes its own. */
export interface CliOutput {
  out(line: string): void;
  err(line: string): void;
}

class UsageError extends Error {}

const modeByName: Record<string, RouteMode> = { legacy: RouteMode.LEGACY, shadow: RouteMode.SHADOW, canary: RouteMode.CANARY, new: RouteMode.NEW };
const modeName = (mode: RouteMode) => RouteMode[mode]?.toLowerCase() ?? String(mode);
const describeMode = (route: Route | undefined) => (route?.mode === RouteMode.CANARY ? `canary ${route.canaryPercent}%` : modeName(route?.mode ?? RouteMode.UNSPECIFIED));

function parse(args: string[]) {
  try {
    return parseArgs({
      args,
      allowPositionals: true,
      options: {
        reason: { type: "string" },
        operator: { type: "string" },
        json: { type: "boolean" },
        "expect-revision": { type: "string" },
        name: { type: "string" },
        description: { type: "string" },
        price: { type: "string" },
        currency: { type: "string" },
      },
    });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

/** The listener's address: the variable, else the link `npm start` wrote, else the default port. */
function operatorUrl(env: Env): string {
  if (env["OPERATOR_URL"]) return env["OPERATOR_URL"];
  try {
    return new URL(readFileSync(join(dataDir, "operator-console.url"), "utf8").trim()).origin;
  } catch {
    return `http://127.0.0.1:${deployable("gateway").operatorPort!.default}`;
  }
}

/** OPERATOR_TOKEN, or one minted with the local mesh's operator secret as the gateway checks it (the same variables as npm start). */
async function operatorToken(env: Env, operator: string | undefined): Promise<string> {
  if (env["OPERATOR_TOKEN"]) return env["OPERATOR_TOKEN"];
  let secret: string;
  try {
    // Read, never created: a secret made up here would match no gateway.
    secret = readFileSync(join(secretsDir, "operator.auth"), "utf8").trim();
  } catch {
    throw new UsageError("no operator token: set OPERATOR_TOKEN, or start the local mesh (npm start), whose operator secret is .data/secrets/operator.auth");
  }
  const user = userInfo().username;
  const name = operator ?? (isSafePrincipalId(user) ? user : "local-operator");
  if (!isSafePrincipalId(name)) throw new UsageError(`--operator "${name}" is not a safe name (letters, digits, '.', '_', '@', '-')`);
  const roles = { claim: env["OPERATOR_ROLES_CLAIM"] || "roles", role: env["OPERATOR_ROLE"] || "operator" };
  return mintLocalOperatorToken(secret, name, MINTED_TOKEN_SECONDS, roles);
}

/**
 * The full method name for what was typed: a full name as it is, or the one routable method
 * whose name ends in it ("ListProducts", "StorefrontService/ListProducts").
 */
function resolveMethod(typed: string, routes: readonly RouteStatus[]): string {
  const methods = routes.map((status) => status.route?.method ?? "");
  if (methods.includes(typed)) return typed;
  const matches = methods.filter((method) => method.endsWith(`/${typed}`) || method.endsWith(`.${typed}`));
  if (matches.length === 1) return matches[0]!;
  if (matches.length > 1) throw new UsageError(`"${typed}" names more than one route: ${matches.join(", ")}`);
  throw new UsageError(`no route "${typed}"; the routable methods are: ${methods.join(", ") || "(none)"}`);
}

function routeTable(routes: readonly RouteStatus[]): string[] {
  const rows = routes.map((status) => {
    const shadow = status.shadow;
    return [
      status.route?.method ?? "",
      describeMode(status.route),
      String(status.legacyCalls),
      String(status.newCalls),
      shadow ? `${shadow.compared}/${shadow.mismatched}/${shadow.failed}/${shadow.skipped}` : "-",
      status.route?.changedBy || "(default)",
      status.route?.changeTime ? timestampDate(status.route.changeTime).toISOString() : "-",
      String(status.route?.revision ?? 0n),
      status.route?.reason || "",
    ];
  });
  const header = ["METHOD", "MODE", "LEGACY CALLS", "NEW CALLS", "SHADOW cmp/mis/fail/skip", "CHANGED BY", "CHANGED", "REVISION", "REASON"];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  return [header, ...rows].map((cells) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join("  ").trimEnd());
}

function mismatchExamples(routes: readonly RouteStatus[]): string[] {
  return routes.flatMap((status) => {
    const example = status.shadow?.example;
    if (!example) return [];
    const when = example.time ? timestampDate(example.time).toISOString() : "";
    return [
      `newest mismatch of ${status.route?.method} (${when}):`,
      ...example.differences.map((d) => `  ${d.path}: legacy ${d.legacy}  new ${d.new}`),
      ...(example.more > 0 ? [`  … and ${example.more} more`] : []),
    ];
  });
}

/**
 * The sync back's refused writes, oldest first, one a line; the old shop's answer quoted, as
 * JSON escapes it (it is the old shop's text, printed to a terminal).
 */
function refusedWrites(sync: GetSyncStatusResponse): string[] {
  const unlisted = sync.syncBackRefused - BigInt(sync.refusedWrites.length);
  return [
    ...(sync.refusedWrites.length > 0 ? ["refused by the old shop (npm run route -- discard-refused <sku> gives them up):"] : []),
    ...sync.refusedWrites.map((refused) => `  ${refused.sku}${refused.writtenTime ? ` (written ${timestampDate(refused.writtenTime).toISOString()})` : ""}: ${JSON.stringify(refused.refusal)}`),
    ...(unlisted > 0n ? [`  … and ${unlisted} more`] : []),
  ];
}

const describeProduct = (product: Product) => `${JSON.stringify(product.name)} at ${product.price ? `${decimalOf(product.price.minorUnits)} ${product.price.currencyCode}` : "no price"}`;

/**
 * put-product: the price typed as a decimal ("12.99"), turned into minor units digit by digit
 * as the old shop's adapter reads its prices; the gateway checks the rest and names the field.
 */
async function putProduct(client: Client<typeof OperatorService>, args: string[], values: { name?: string | undefined; description?: string | undefined; price?: string | undefined; currency?: string | undefined }, io: CliOutput): Promise<number> {
  const [sku, ...extra] = args;
  if (!sku) throw new UsageError("put-product takes <sku>");
  if (extra.length > 0) throw new UsageError(`unexpected arguments: ${extra.join(" ")}`);
  if (values.name === undefined || values.price === undefined || values.currency === undefined) throw new UsageError("put-product needs --name, --price and --currency");
  const minor = minorUnitsOf(values.price);
  if (minor === undefined) throw new UsageError(`--price "${values.price}" is not a decimal with at most 2 places, e.g. 12.99`);
  const { product, side } = await client.updateProduct(
    { sku, name: values.name, description: values.description ?? "", price: { currencyCode: values.currency, minorUnits: BigInt(minor) } },
    { timeoutMs: 10_000 },
  );
  io.out(`${product?.sku}: ${product ? describeProduct(product) : "no product"}, written to the ${side === "new" ? "catalog (new)" : "old shop (legacy)"}`);
  return 0;
}

/** discard-refused: what was given up, and what the catalog holds of the product now. */
async function discardRefused(client: Client<typeof OperatorService>, args: string[], io: CliOutput): Promise<number> {
  const [sku, ...extra] = args;
  if (!sku) throw new UsageError("discard-refused takes <sku>");
  if (extra.length > 0) throw new UsageError(`unexpected arguments: ${extra.join(" ")}`);
  const { discarded, resynced, product } = await client.discardRefusedWrites({ sku }, { timeoutMs: 10_000 });
  const held = product ? `the catalog holds ${describeProduct(product)}` : "the catalog holds no such product";
  const how = resynced ? `taken again from the old shop: ${held}` : `not taken again from the old shop (a later write of it is on its way there): ${held} until it arrives`;
  io.out(`${sku}: discarded ${discarded} refused write${discarded === 1 ? "" : "s"}; ${how}`);
  return 0;
}

/** Runs one command; returns the exit status. */
export async function routeCli(args: string[], env: Env, io: CliOutput): Promise<number> {
  try {
    const { positionals, values } = parse(args);
    const command = positionals[0];
    if (command !== "list" && command !== "set" && command !== "put-product" && command !== "discard-refused") throw new UsageError(command ? `unknown command "${command}"` : "no command");
    if (command === "list" && positionals.length !== 1) throw new UsageError("list takes no arguments");
    const token = await operatorToken(env, values.operator);
    const withToken: Interceptor = (next) => (req) => {
      req.header.set("authorization", `Bearer ${token}`);
      return next(req);
    };
    const client = createClient(OperatorService, createConnectTransport({ baseUrl: operatorUrl(env), httpVersion: "1.1", interceptors: [withToken] }));
    if (command === "put-product") return await putProduct(client, positionals.slice(1), values, io);
    if (command === "discard-refused") return await discardRefused(client, positionals.slice(1), io);
    const listed = await client.listRoutes({}, { timeoutMs: 10_000 });
    if (command === "list") {
      if (values.json) {
        io.out(JSON.stringify(toJson(ListRoutesResponseSchema, listed), null, 2));
        return 0;
      }
      for (const line of listed.routes.length > 0 ? routeTable(listed.routes) : ["no routable methods"]) io.out(line);
      for (const line of mismatchExamples(listed.routes)) io.out(line);
      const sync = listed.catalogSync;
      io.out(
        sync
          ? `catalog change capture: ${SyncState[sync.state]?.toLowerCase() ?? sync.state}, lag ${sync.lagBytes} bytes / ${sync.lagMs} ms, applied ${sync.appliedLsn || "-"} of ${sync.sourceLsn || "-"}, ${sync.products} products (slot ${sync.slot}); sync back pending ${sync.syncBackPending}${sync.syncBackRefused > 0n ? ` (${sync.syncBackRefused} refused)` : ""}`
          : "catalog change capture: the catalog did not answer",
      );
      for (const line of sync ? refusedWrites(sync) : []) io.out(line);
      return 0;
    }
    const [, typedMethod, typedMode, typedPercent, ...extra] = positionals;
    if (!typedMethod || !typedMode) throw new UsageError("set takes <method> <mode> [percent]");
    if (extra.length > 0) throw new UsageError(`unexpected arguments: ${extra.join(" ")}`);
    const mode = modeByName[typedMode];
    if (mode === undefined) throw new UsageError(`mode must be one of ${Object.keys(modeByName).join(", ")}`);
    const percent = typedPercent === undefined ? 0 : Number(typedPercent.replace(/%$/, ""));
    if (mode === RouteMode.CANARY && (!Number.isInteger(percent) || percent < 1 || percent > 99)) throw new UsageError("canary takes a percent from 1 to 99");
    if (mode !== RouteMode.CANARY && typedPercent !== undefined) throw new UsageError(`${typedMode} takes no percent`);
    const expected = values["expect-revision"];
    if (expected !== undefined && !/^\d{1,15}$/.test(expected)) throw new UsageError("--expect-revision must be a revision number (from list)");
    const method = resolveMethod(typedMethod, listed.routes);
    const { route } = await client.setRoute(
      { method, mode, canaryPercent: percent, reason: values.reason ?? "", expectedRevision: expected === undefined ? 0n : BigInt(expected) },
      { timeoutMs: 10_000 },
    );
    io.out(`${method}: ${describeMode(route)} (revision ${route?.revision ?? "?"}, by ${route?.changedBy ?? "?"})`);
    return 0;
  } catch (err) {
    if (err instanceof UsageError) {
      io.err(`route: ${err.message}\n${USAGE}`);
      return 2;
    }
    const status = ConnectError.from(err);
    io.err(`route: ${Code[status.code]}: ${status.rawMessage}`);
    return 1;
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  process.exitCode = await routeCli(process.argv.slice(2), process.env, { out: (line) => console.log(line), err: (line) => console.error(line) });
}
