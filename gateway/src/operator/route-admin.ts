import { Code, ConnectError, type Client } from "@connectrpc/connect";
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  RouteMode,
  RouteSchema,
  RouteStatusSchema,
  ShadowStatsSchema,
  type ListRoutesResponse,
  type Route,
  type SetRouteRequest,
} from "#gen/shop/gateway/v1/operator_service_pb.js";
import type { CatalogService, GetSyncStatusResponse } from "#gen/shop/catalog/v1/catalog_service_pb.js";
import type { Logger } from "#platform";
import type { RouteEntry, RouteMode as TableMode, RouteTable } from "#platform/strangler/route-table.js";
import type { ShadowCaller } from "#platform/strangler/shadow-caller.js";

export interface RouteAdminDeps {
  /** Read for ListRoutes; written by SetRoute, which needs a table opened with a NATS user that may put (the console's). */
  table: RouteTable;
  /** Whether `table` may be written: without the console's NATS user SetRoute is FAILED_PRECONDITION. */
  writable: boolean;
  /** This replica's calls per side and shadow comparisons, per method. */
  strangler: Pick<ShadowCaller, "stats">;
  /** For the change capture's status: called with the console's certificate, which the catalog admits. */
  catalog: Client<typeof CatalogService>;
  /** Checked before a valid move is written; refuses it by throwing (the catalog writes' guard on moving them back). */
  checkMove: (method: string, mode: TableMode, signal: AbortSignal) => Promise<void>;
  logger: Logger;
}

const MAX_REASON = 1_000;
/** ListRoutes waits this long for the catalog's sync status, then answers without it. */
const SYNC_STATUS_TIMEOUT_MS = 2_000;

const toTableMode: Partial<Record<RouteMode, TableMode>> = { [RouteMode.LEGACY]: "legacy", [RouteMode.SHADOW]: "shadow", [RouteMode.CANARY]: "canary", [RouteMode.NEW]: "new" };
const fromTableMode: Record<TableMode, RouteMode> = { legacy: RouteMode.LEGACY, shadow: RouteMode.SHADOW, canary: RouteMode.CANARY, new: RouteMode.NEW };

/** The table's entry as the contract's Route. */
function routeMessage(entry: RouteEntry): Route {
  return create(RouteSchema, {
    method: entry.method,
    mode: fromTableMode[entry.mode],
    canaryPercent: entry.canaryPercent,
    changedBy: entry.changedBy,
    ...(entry.changeTime ? { changeTime: timestampFromDate(new Date(entry.changeTime)) } : {}),
    reason: entry.reason,
    revision: BigInt(entry.revision),
  });
}

/**
 * SetRoute's request checked field by field, as the contract says, before anything is written:
 * a routable method, a mode, canary_percent 1 to 99 with CANARY alone, a short reason.
 */
function validSetRoute(req: SetRouteRequest, table: RouteTable) {
  const methods = table.list().map((entry) => entry.method);
  const invalid = (field: string, problem: string) => new ConnectError(`${field}: ${problem}`, Code.InvalidArgument);
  if (req.method === "") throw invalid("method", "is required");
  if (!methods.includes(req.method)) throw invalid("method", `${JSON.stringify(req.method.slice(0, 200))} is not routed; the routable methods are ${methods.join(", ")}`);
  if (req.mode === RouteMode.UNSPECIFIED) throw invalid("mode", "is required (legacy, shadow, canary or new)");
  const mode = toTableMode[req.mode];
  if (!mode) throw invalid("mode", `unknown route mode ${req.mode}`);
  const takes = table.modes(req.method);
  if (!takes.includes(mode)) throw invalid("mode", `${req.method} takes only ${takes.map((m) => `ROUTE_MODE_${m.toUpperCase()}`).join(" or ")}, not ROUTE_MODE_${mode.toUpperCase()}`);
  if (mode === "canary" && (req.canaryPercent < 1 || req.canaryPercent > 99)) throw invalid("canary_percent", `must be 1 to 99 with ROUTE_MODE_CANARY, got ${req.canaryPercent} (legacy is 0, new is 100)`);
  if (mode !== "canary" && req.canaryPercent !== 0) throw invalid("canary_percent", `must be 0 unless the mode is ROUTE_MODE_CANARY, got ${req.canaryPercent}`);
  if (req.reason.length > MAX_REASON) throw invalid("reason", `must be at most ${MAX_REASON} characters, got ${req.reason.length}`);
  if (req.expectedRevision > BigInt(Number.MAX_SAFE_INTEGER)) throw invalid("expected_revision", "is not a revision the table can hold");
  return { method: req.method, mode, canaryPercent: req.canaryPercent, reason: req.reason, expectedRevision: Number(req.expectedRevision) };
}

/**
 * ListRoutes and SetRoute: the strangler fig's route table as the operator sees and moves it.
 * Writes go through the route table (NATS KV), which every gateway and order replica watches;
 * the counts beside each route are this replica's own.
 */
export function createRouteAdmin(deps: RouteAdminDeps) {
  async function syncStatus(signal: AbortSignal): Promise<GetSyncStatusResponse | undefined> {
    try {
      return await deps.catalog.getSyncStatus({}, { signal, timeoutMs: SYNC_STATUS_TIMEOUT_MS });
    } catch (err) {
      // The routes are worth showing without it: the contract leaves catalog_sync absent.
      deps.logger.warn({ err }, "the catalog's sync status did not come; ListRoutes answers without it");
      return undefined;
    }
  }

  return {
    async list(signal: AbortSignal): Promise<Omit<ListRoutesResponse, "$typeName">> {
      const catalogSync = await syncStatus(signal);
      const routes = deps.table.list().map((entry) => {
        const { example, ...counts } = deps.strangler.stats(entry.method);
        return create(RouteStatusSchema, {
          route: routeMessage(entry),
          legacyCalls: BigInt(counts.legacyCalls),
          newCalls: BigInt(counts.newCalls),
          shadow: create(ShadowStatsSchema, {
            compared: BigInt(counts.compared),
            mismatched: BigInt(counts.mismatched),
            converged: BigInt(counts.converged),
            failed: BigInt(counts.failed),
            skipped: BigInt(counts.skipped),
            ...(example ? { example: { time: timestampFromDate(example.time), differences: example.differences.map((d) => ({ ...d })), more: example.more } } : {}),
          }),
        });
      });
      return { routes, ...(catalogSync ? { catalogSync } : {}) };
    },

    /** `operator` is the signed-in operator, whom the entry names as who changed it. */
    async set(req: SetRouteRequest, operator: string, signal: AbortSignal): Promise<Route> {
      const change = validSetRoute(req, deps.table);
      if (!deps.writable) throw new ConnectError("changing routes needs the console's NATS user: CONSOLE_NATS_URL is not set", Code.FailedPrecondition);
      await deps.checkMove(change.method, change.mode, signal);
      // A conflict is the table's RouteConflictError (FAILED_PRECONDITION naming the current revision).
      const entry = await deps.table.set(change.method, { mode: change.mode, canaryPercent: change.canaryPercent, changedBy: `${operator} (operator)`, reason: change.reason }, change.expectedRevision);
      deps.logger.info({ audit: "route-change", operator, method: entry.method, mode: entry.mode, canaryPercent: entry.canaryPercent, revision: entry.revision, reason: entry.reason }, "route changed by an operator");
      return routeMessage(entry);
    },
  };
}

export type RouteAdmin = ReturnType<typeof createRouteAdmin>;
