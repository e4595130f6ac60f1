import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { contractClient } from "#tests/support/mesh-clients.js";
import postgres from "postgres";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "#gen/grpc/health/v1/health_pb.js";
import { InventoryService } from "#gen/shop/inventory/v1/inventory_service_pb.js";
import { StorefrontService } from "#gen/shop/gateway/v1/storefront_service_pb.js";
import { runLoad, type LoadOptions, type LoadReport } from "../load/load-runner.js";
import { startScratchMesh } from "../mesh/scratch-mesh.js";
import { healthProbeOf, isLegacy } from "../mesh/supervisor.js";
import { meshServiceNames, urlVariable } from "#mesh";
import { seededStock, settleInvariants } from "#tests/support/invariant-violations.js";
import type { ChaosScenario } from "./chaos-scenarios.js";
import { startTcpFaultProxy } from "./tcp-fault-proxy.js";

/** The load a scenario runs under, and when in it the fault strikes. */
export interface LoadShape {
  durationMs: number;
  ratePerSecond: number;
  faultAfterMs: number;
  mix: LoadOptions["mix"];
}

export interface ScenarioResult {
  scenario: string;
  /** Orders the gateway accepted during the load. */
  accepted: number;
  /** Of those, how many were confirmed or cancelled when checked. */
  terminal: number;
  /** Failed PlaceOrder, WatchOrder and ConfirmPayment calls during the load, by code. */
  errors: Record<string, number>;
  /**
   * From the fault's end until every service was ready, the gateway reached order again and
   * every order placed before the end was terminal; undefined if not within the bound.
   */
  recoveredMs: number | undefined;
  violations: string[];
  /** Orders mid-saga when the fault struck. */
  inFlightAtFault: number;
  durationMs: number;
  load?: Omit<LoadReport, "acceptedOrderIds" | "unconfirmedOrderIds">;
  paymentProxy: { accepted: number; cut: number };
}

/** How long the mesh may take to come to rest after a fault; stated in the report. */
export interface RecoveryBounds {
  /** Every order terminal (and the mesh serving again) this long after the fault ends. */
  terminalAfterFaultMs: number;
  /** Then stock and events settled within this; a delivery lost with nats-server waits out the 30 s ack wait. */
  settleAfterTerminalMs: number;
}

/** Below this many units a plentiful SKU is topped up to RESTOCK_TO before a scenario. */
const RESTOCK_BELOW = 300;
const RESTOCK_TO = 500;

/** The load report without its long lists of ids, for the results file. */
const withoutIds = ({ acceptedOrderIds: _ids, unconfirmedOrderIds: _unconfirmed, ...report }: LoadReport) => report;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * A disposable mesh wired for chaos: its own Postgres and NATS (scratch mesh), payment
 * reached only through a TCP fault proxy (order and the gateway use PAYMENT_URL, and payment
 * advertises the proxy's address for discovery), and a database connection to read the
 * invariants. Scenarios run back to back on it, each starting from a mesh at rest, so a
 * run pays for one start-up.
 */
export async function startChaosRig(options: { env?: Record<string, string>; log?: (line: string) => void } = {}) {
  const paymentProxy = await startTcpFaultProxy();
  // TLS runs through the proxy end to end: order still verifies it reached payment.
  const paymentUrl = `https://127.0.0.1:${new URL(paymentProxy.url).port}`;
  const mesh = await startScratchMesh({
    env: { [urlVariable("payment")]: paymentUrl, ...options.env },
    serviceEnv: { payment: { ADVERTISE_URL: paymentUrl } },
    ...(options.log ? { log: options.log } : {}),
  }).catch(async (err: unknown) => {
    await paymentProxy.close();
    throw err;
  });
  paymentProxy.setTarget(Number(new URL(mesh.url("payment")).port));
  const sql = postgres(mesh.databaseUrl, { max: 2, onnotice: () => {} });
  const sessions: Http2SessionManager[] = [];
  const plaintext = (baseUrl: string) => {
    const sessionManager = new Http2SessionManager(baseUrl);
    sessions.push(sessionManager);
    return createConnectTransport({ baseUrl, httpVersion: "2", sessionManager, defaultTimeoutMs: 2_000 });
  };
  // Health on each ops port, as a probe asks it; stock as the operator, who restocks.
  const health = meshServiceNames.filter((name) => !isLegacy(name)).map((name) => ({ name, client: createClient(Health, plaintext(mesh.opsUrl(name))) }));
  // The old shop answers GET /healthz (which follows its database) instead of grpc.health.v1.
  const legacyHealth = meshServiceNames.filter(isLegacy).map((name) => ({ name, probe: healthProbeOf(name, mesh.opsUrl(name)) }));
  const inventory = contractClient(InventoryService, mesh.url("inventory"), mesh.pki, { peer: "inventory", protocol: "connect" });
  const storefront = createClient(StorefrontService, plaintext(mesh.url("gateway")));
  const ledger = seededStock();

  async function stop(): Promise<void> {
    for (const session of sessions) session.abort();
    await sql.end({ timeout: 5 });
    await mesh.stop();
    await paymentProxy.close();
  }
  const probeHeaders = await storefront.issueDemoToken({ customerId: "chaos-probe" }).then(
    ({ token }) => ({ authorization: `Bearer ${token}` }),
    async (err: unknown) => {
      await stop();
      throw err;
    },
  );

  /**
   * What is not ready yet: each service's readiness (it follows Postgres and NATS; the
   * gateway has liveness only), and the customer's path through the gateway to order, which
   * a circuit breaker may still hold open after order itself is back.
   */
  const notReady = async (): Promise<string[]> => {
    const statuses = await Promise.all([
      ...health.map(({ name, client }) =>
        client.check({ service: name === "gateway" ? "" : "readiness" }).then(
          (r) => (r.status === ServingStatus.SERVING ? undefined : name),
          () => name,
        ),
      ),
      ...legacyHealth.map(({ name, probe }) =>
        probe.check().then(
          (status) => (status === "SERVING" ? undefined : name),
          () => name,
        ),
      ),
      storefront.listMyOrders({}, { headers: probeHeaders }).then(
        () => undefined,
        (err: unknown) => `gateway → order (${Code[ConnectError.from(err).code]})`,
      ),
    ]);
    return statuses.filter((name): name is string => name !== undefined);
  };

  /** Polls until the mesh serves again and no order placed before `since` is pending. */
  async function recovery(since: Date, boundMs: number): Promise<{ recoveredMs: number | undefined; notReady: string[] }> {
    let missing: string[] = [];
    while (Date.now() - since.getTime() < boundMs) {
      missing = await notReady();
      if (missing.length === 0) {
        const [row] = await sql`select count(*)::int as n from orders.orders where status = 'pending' and created_at <= ${since}`.catch(() => [undefined]);
        if (row?.["n"] === 0) return { recoveredMs: Date.now() - since.getTime(), notReady: [] };
      }
      await sleep(250);
    }
    return { recoveredMs: undefined, notReady: missing };
  }

  /**
   * Waits, briefly, for at least one order to be mid-saga and returns how many are: a fault
   * that lands between orders tests much less than one that interrupts them.
   */
  async function sagasInFlight(): Promise<number> {
    const deadline = Date.now() + 2_000;
    for (;;) {
      const [row] = await sql`select count(*)::int as n from orders.orders where status = 'pending'`;
      const n = (row?.["n"] as number | undefined) ?? 0;
      if (n > 0 || Date.now() >= deadline) return n;
      await sleep(20);
    }
  }

  /** Each service's current process; a new pid means the supervisor restarted it. */
  const processIds = () => Object.fromEntries(meshServiceNames.map((name) => [name, mesh.pid(name)]));

  /** Tops up plentiful SKUs through AdjustStock, recording each delta in the ledger. */
  async function restock(): Promise<void> {
    for (const product of (await inventory.listProducts({})).products) {
      const seeded = seededStock()[product.sku] ?? 0;
      if (seeded < 100 || product.available >= RESTOCK_BELOW) continue; // the scarce lamp stays scarce
      const delta = RESTOCK_TO - product.available;
      await inventory.adjustStock({ sku: product.sku, delta, reason: "chaos run restock" });
      ledger[product.sku] = (ledger[product.sku] ?? 0) + delta;
    }
  }

  return {
    /**
     * Runs load, injects the fault partway through, then checks, within the stated bounds,
     * that the mesh recovered and every invariant holds. A failing load generator is
     * reported as a violation, not thrown, so the remaining scenarios still run.
     */
    async runScenario(scenario: ChaosScenario, { load, bounds }: { load: LoadShape; bounds: RecoveryBounds }): Promise<ScenarioResult> {
      const started = Date.now();
      const shape = { ...load, ...scenario.load };
      await restock();
      const proxyBefore = paymentProxy.stats();
      let loadFailure: string | undefined;
      const loadDone = runLoad({ gatewayUrl: mesh.url("gateway"), durationMs: shape.durationMs, ratePerSecond: shape.ratePerSecond, mix: shape.mix }).catch((err: unknown) => {
        loadFailure = `load generator failed: ${(err as Error).message}`;
        return undefined;
      });
      await sleep(shape.faultAfterMs);
      const inFlightAtFault = await sagasInFlight();
      const pidsAtFault = processIds();
      const foundByFault = (await scenario.inject({ mesh, paymentProxy, sql })) ?? [];
      const clearedAt = new Date();
      const recovered = recovery(clearedAt, bounds.terminalAfterFaultMs);
      const report = await loadDone;
      const { recoveredMs, notReady: stillDown } = await recovered;
      const acceptedOrderIds = report?.acceptedOrderIds ?? [];
      const died = meshServiceNames.filter((name) => name !== scenario.kills && processIds()[name] !== pidsAtFault[name]);
      const violations = [
        ...(loadFailure ? [loadFailure] : []),
        ...foundByFault,
        ...(died.length ? [`service processes died and were restarted by the supervisor: ${died.join(", ")}`] : []),
        ...(stillDown.length ? [`not serving ${bounds.terminalAfterFaultMs / 1000} s after the fault ended: ${stillDown.join(", ")}`] : []),
        ...(await settleInvariants(sql, {
          terminalWithinMs: Math.max(0, clearedAt.getTime() + bounds.terminalAfterFaultMs - Date.now()),
          settleWithinMs: bounds.settleAfterTerminalMs,
          ledger,
          acceptedOrderIds,
          unconfirmedOrderIds: report?.unconfirmedOrderIds ?? [],
        })),
      ];
      const [terminal] = await sql`select count(*)::int as n from orders.orders where id = any(${acceptedOrderIds}::uuid[]) and status <> 'pending'`;
      const proxyAfter = paymentProxy.stats();
      return {
        scenario: scenario.name,
        accepted: acceptedOrderIds.length,
        terminal: terminal?.["n"] ?? 0,
        // PlaceOrder's refusals, which the load report keeps apart from errors, show here as they always did.
        errors: { ...report?.errors, ...(report?.rejected ? { ResourceExhausted: report.rejected } : {}) },
        recoveredMs,
        violations,
        inFlightAtFault,
        durationMs: Date.now() - started,
        ...(report ? { load: withoutIds(report) } : {}),
        paymentProxy: { accepted: proxyAfter.accepted - proxyBefore.accepted, cut: proxyAfter.cut - proxyBefore.cut },
      };
    },

    stop,
  };
}

export type ChaosRig = Awaited<ReturnType<typeof startChaosRig>>;
