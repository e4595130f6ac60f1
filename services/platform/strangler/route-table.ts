import { Kvm, type KV } from "@nats-io/kv";
import { JetStreamApiCodes, JetStreamApiError } from "@nats-io/jetstream";
import { DomainError, InvalidArgumentError } from "../domain/errors.js";
import type { Logger } from "../process/logger.js";
import type { BusConnection } from "../messaging/connection.js";

/** The KV bucket that holds the strangler fig's routes, one key per public method. */
export const ROUTES_BUCKET = "meshwork_routes";

export const ROUTE_MODES = ["legacy", "shadow", "canary", "new"] as const;
export type RouteMode = (typeof ROUTE_MODES)[number];

/**
 * A routed method as its callers declare it: its default mode, and, where not every mode
 * makes sense, the modes it takes. A write goes to one side alone, so a write's route takes
 * `legacy` and `new` only: shadowing or splitting it would write twice or to both sides.
 */
export type RouteDeclaration = RouteMode | { readonly mode: RouteMode; readonly modes: readonly RouteMode[] };

/** What an operator sets: the mode, and why. */
export interface RouteChange {
  mode: RouteMode;
  /** 1 to 99 with `canary`; 0 (or absent) otherwise. */
  canaryPercent?: number;
  changedBy: string;
  reason: string;
}

/** A method's route as the table holds it. */
export interface RouteEntry {
  /** The public method's full name, e.g. shop.gateway.v1.StorefrontService/ListProducts. */
  method: string;
  mode: RouteMode;
  canaryPercent: number;
  /** Empty for the built-in default. */
  changedBy: string;
  /** ISO 8601; empty for the built-in default. */
  changeTime: string;
  reason: string;
  /** The KV revision of the entry; 0 for the built-in default (no entry yet). */
  revision: number;
}

/** How far a follower is, asked by caughtUp. */
export type CatchUp = "current" | "behind" | "unknown";

export interface RouteTable {
  /** The method's route: the newest good entry seen, else its default. Never waits for NATS. */
  route(method: string): RouteEntry;
  /**
   * Writes the method's route. With `expectedRevision` (> 0) only if the entry is still at
   * that revision (compare-and-set), else RouteConflictError; 0 or absent writes whatever
   * it is now.
   */
  set(method: string, change: RouteChange, expectedRevision?: number): Promise<RouteEntry>;
  /** Every routable method's route, in the order the routes were given. */
  list(): RouteEntry[];
  /** The modes the method's route takes (all four unless its declaration lists fewer). */
  modes(method: string): readonly RouteMode[];
  /**
   * Waits until this table has seen every change the bucket holds now (its last revision),
   * at most `timeoutMs`: for a reader that acts on a route as a fence and must not act on one
   * the bucket has moved past. `current`: route() answers as the bucket did when asked;
   * `behind`: the bucket has changes the watch has not delivered yet; `unknown`: NATS did not
   * answer (no one can move a route meanwhile), so route() answers the last known route.
   */
  caughtUp(timeoutMs?: number): Promise<CatchUp>;
  close(): void;
}

/** A method the table does not route. */
export class UnknownRouteError extends DomainError {
  override readonly name = "UnknownRouteError";
  readonly kind = "not_found";
  override readonly field = "method";
  constructor(method: string) {
    super(`method: ${JSON.stringify(method.slice(0, 200))} has no route; routable methods are the gateway's public ones`);
  }
}

/** The entry changed since the revision the change was based on. */
export class RouteConflictError extends DomainError {
  override readonly name = "RouteConflictError";
  readonly kind = "failed_precondition";
  override readonly field = "expected_revision";
  constructor(method: string, expected: number, current: number) {
    super(`expected_revision: the route of ${method} is at revision ${current}, not ${expected}; read it again and retry`);
  }
}

/** NATS did not take the change in time: nothing was written, or the write is unknown. */
export class RouteTableUnavailableError extends DomainError {
  override readonly name = "RouteTableUnavailableError";
  readonly kind = "unavailable";
  constructor(method: string, cause: unknown) {
    super(`the route table (NATS KV ${ROUTES_BUCKET}) did not take the route of ${method}: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
  }
}

const CATCH_UP_TIMEOUT_MS = 1_000;
const CATCH_UP_POLL_MS = 10;
const MAX_CHANGED_BY = 200;
const MAX_REASON = 1_000;
const WRITE_TIMEOUT_MS = 5_000;

/**
 * The change checked as the contract says, `field` named as in SetRouteRequest: a mode the
 * route takes (`modes`, all four by default), canary_percent 1 to 99 with canary and 0
 * otherwise, a reason of at most 1000 characters.
 */
export function validateRouteChange(change: RouteChange, modes: readonly RouteMode[] = ROUTE_MODES): Required<RouteChange> {
  if (!(ROUTE_MODES as readonly string[]).includes(change.mode)) throw new InvalidArgumentError("mode", `must be one of ${ROUTE_MODES.join(", ")}`);
  if (!modes.includes(change.mode)) throw new InvalidArgumentError("mode", `this route takes only ${modes.join(" or ")}, not ${change.mode}`);
  const percent = change.canaryPercent ?? 0;
  if (!Number.isInteger(percent)) throw new InvalidArgumentError("canary_percent", "must be a whole number");
  if (change.mode === "canary" && (percent < 1 || percent > 99)) throw new InvalidArgumentError("canary_percent", "must be 1 to 99 with canary (0 is legacy, 100 is new)");
  if (change.mode !== "canary" && percent !== 0) throw new InvalidArgumentError("canary_percent", `must be 0 unless the mode is canary (it is ${change.mode})`);
  if (typeof change.changedBy !== "string" || change.changedBy.length > MAX_CHANGED_BY) throw new InvalidArgumentError("changed_by", `must be text of at most ${MAX_CHANGED_BY} characters`);
  if (typeof change.reason !== "string" || change.reason.length > MAX_REASON) throw new InvalidArgumentError("reason", `must be text of at most ${MAX_REASON} characters`);
  return { mode: change.mode, canaryPercent: percent, changedBy: change.changedBy, reason: change.reason };
}

/** A KV key holds no "/": the method's full name with its "/" as ".", a valid key. */
export const routeKeyOf = (method: string) => method.replace("/", ".");

/** The stored entry, or why it is not believed (it is then ignored, and the last good one stays). */
function parseStoredRoute(method: string, modes: readonly RouteMode[], value: string, revision: number): RouteEntry | { rejected: string } {
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch {
    return { rejected: "not JSON" };
  }
  if (typeof parsed !== "object" || parsed === null) return { rejected: "not a JSON object" };
  const stored = parsed as Record<string, unknown>;
  if (typeof stored.changeTime !== "string" || Number.isNaN(Date.parse(stored.changeTime))) return { rejected: "changeTime is not an ISO time" };
  try {
    const change = validateRouteChange({ mode: stored.mode as RouteMode, canaryPercent: stored.canaryPercent as number, changedBy: stored.changedBy as string, reason: stored.reason as string }, modes);
    return { method, ...change, changeTime: stored.changeTime, revision };
  } catch (err) {
    return { rejected: err instanceof Error ? err.message : String(err) };
  }
}

const isWrongRevision = (err: unknown) =>
  err instanceof JetStreamApiError && (err.code === JetStreamApiCodes.StreamWrongLastSequence || err.code === JetStreamApiCodes.StreamWrongLastSequenceUnknown);

/**
 * The route table: a route per public method, in the NATS KV bucket `meshwork_routes`
 * (history 5, so the last changes can be read back), followed with kv.watch by every replica.
 * Calls read the table in memory: the newest good entry seen, else the method's default, so
 * NATS being away never fails or delays a call, it only delays a change. An entry that does
 * not validate is logged and ignored, and the last good one stays; a deleted entry returns
 * the method to its default.
 */
export function openRouteTable(options: { bus: BusConnection; routes: Readonly<Record<string, RouteDeclaration>>; logger: Logger }): RouteTable {
  const { bus, logger } = options;
  const declared = new Map(Object.entries(options.routes).map(([method, declaration]) => [method, typeof declaration === "string" ? { mode: declaration, modes: ROUTE_MODES } : declaration]));
  for (const [method, { mode, modes }] of declared) {
    if (modes.length === 0 || !modes.every((m) => ROUTE_MODES.includes(m))) throw new Error(`the route of ${method} must take one or more of ${ROUTE_MODES.join(", ")}`);
    if (!modes.includes(mode)) throw new Error(`the route of ${method} defaults to ${mode}, which it does not take (${modes.join(", ")})`);
  }
  const defaults = new Map([...declared].map(([method, { mode }]) => [method, { method, mode, canaryPercent: 0, changedBy: "", changeTime: "", reason: "", revision: 0 } satisfies RouteEntry]));
  const methodOfKey = new Map([...defaults.keys()].map((method) => [routeKeyOf(method), method]));
  const known = new Map<string, RouteEntry>();
  let loaded = false;
  /** The newest bucket revision the watch delivered, of any key: how far this table has caught up. */
  let seenRevision = 0;
  let warnedUnloaded = false;
  let stopped = false;
  let stopWatch: (() => void) | undefined;
  let bucket: Promise<KV> | undefined;
  const open = () => (bucket ??= bus.ready.then(({ js }) => new Kvm(js).create(ROUTES_BUCKET, { history: 5 })).catch((err: unknown) => {
    bucket = undefined;
    throw err;
  }));

  /** Keeps the newer of what is known and what arrived: a write's own answer and the watch may come in either order. */
  const remember = (entry: RouteEntry) => {
    if ((known.get(entry.method)?.revision ?? 0) < entry.revision) known.set(entry.method, entry);
  };
  const receive = (key: string, operation: string, value: () => string, revision: number) => {
    seenRevision = Math.max(seenRevision, revision);
    const method = methodOfKey.get(key);
    if (!method) return; // a route this process does not serve
    if (operation !== "PUT") {
      known.delete(method);
      return;
    }
    const entry = parseStoredRoute(method, declared.get(method)!.modes, value(), revision);
    if ("rejected" in entry) logger.warn({ method, revision, reason: entry.rejected }, "ignoring a route table entry; the last good route stays");
    else remember(entry);
  };
  const follow = async () => {
    while (!stopped) {
      try {
        const kv = await open();
        const watch = await kv.watch();
        stopWatch = () => watch.stop();
        if (stopped) watch.stop();
        if ((await kv.status()).values === 0) loaded = true;
        for await (const entry of watch) {
          receive(entry.key, entry.operation, () => entry.string(), entry.revision);
          if (entry.delta === 0) loaded = true;
        }
      } catch (err) {
        if (!stopped) logger.warn({ err }, "route table watch interrupted; serving the last known routes and resuming");
      }
      if (!stopped) await new Promise((resolve) => setTimeout(resolve, 1_000).unref());
    }
  };
  void follow();

  const defaultOf = (method: string) => {
    const entry = defaults.get(method);
    if (!entry) throw new UnknownRouteError(method);
    return entry;
  };
  const modesOf = (method: string) => {
    defaultOf(method);
    return declared.get(method)!.modes;
  };
  const route = (method: string): RouteEntry => {
    const fallback = defaultOf(method);
    if (!loaded && !warnedUnloaded) {
      warnedUnloaded = true;
      logger.warn({ bucket: ROUTES_BUCKET }, "route table not loaded from NATS yet; serving the default routes");
    }
    return known.get(method) ?? fallback;
  };

  return {
    route,
    async set(method, change, expectedRevision = 0) {
      defaultOf(method);
      const valid = validateRouteChange(change, modesOf(method));
      const stored = { ...valid, changeTime: new Date().toISOString() };
      const key = routeKeyOf(method);
      const value = JSON.stringify(stored);
      let revision: number;
      try {
        const write = open().then((kv) => (expectedRevision > 0 ? kv.update(key, value, expectedRevision, WRITE_TIMEOUT_MS) : kv.put(key, value, { timeout: WRITE_TIMEOUT_MS })));
        let timer: NodeJS.Timeout | undefined;
        const timedOut = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`no answer within ${WRITE_TIMEOUT_MS} ms`)), WRITE_TIMEOUT_MS)));
        revision = await Promise.race([write, timedOut]).finally(() => clearTimeout(timer));
      } catch (err) {
        if (isWrongRevision(err)) throw new RouteConflictError(method, expectedRevision, route(method).revision);
        throw new RouteTableUnavailableError(method, err);
      }
      const entry: RouteEntry = { method, ...stored, revision };
      remember(entry);
      logger.info({ method, mode: entry.mode, canaryPercent: entry.canaryPercent, changedBy: entry.changedBy, revision }, "route changed");
      return entry;
    },
    list: () => [...defaults.keys()].map((method) => known.get(method) ?? defaultOf(method)),
    modes: modesOf,
    async caughtUp(timeoutMs = CATCH_UP_TIMEOUT_MS) {
      const deadline = Date.now() + timeoutMs;
      let timer: NodeJS.Timeout | undefined;
      const timedOut = new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), timeoutMs)));
      try {
        // The stream's last sequence is the bucket's newest revision (STREAM.INFO, which every follower may ask).
        const status = await Promise.race([open().then((kv) => kv.status()), timedOut]);
        if (!status) return "unknown";
        const { last_seq: latest, messages } = status.streamInfo.state;
        // An emptied bucket (purged) holds nothing the watch could still deliver.
        if (messages === 0) return "current";
        while (seenRevision < latest && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, CATCH_UP_POLL_MS));
        return seenRevision >= latest ? "current" : "behind";
      } catch (err) {
        logger.warn({ err, bucket: ROUTES_BUCKET }, "could not ask the route table's revision; acting on the last known routes");
        return "unknown";
      } finally {
        clearTimeout(timer);
      }
    },
    close() {
      stopped = true;
      stopWatch?.();
    },
  };
}
