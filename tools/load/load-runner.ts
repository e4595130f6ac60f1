import { randomUUID } from "node:crypto";
import { Code, ConnectError, createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { StorefrontService } from "#gen/shop/gateway/v1/storefront_service_pb.js";
import { OrderStatus } from "#gen/shop/order/v1/order_service_pb.js";
import { PaymentStatus } from "#gen/shop/payment/v1/payment_service_pb.js";
import { PaymentActionRequiredSchema } from "#gen/shop/payment/v1/payment_events_pb.js";

/** An open loop's rate for a while: arrivals paced at `ratePerSecond`, however many are in flight. */
export interface LoadPhase {
  durationMs: number;
  ratePerSecond: number;
}

export interface LoadOptions {
  gatewayUrl: string;
  durationMs: number;
  /** An open loop at this rate; without it (and without phases), a closed loop of `concurrency`. */
  ratePerSecond?: number;
  concurrency?: number;
  /** An open loop through these rates one after another, instead of durationMs at ratePerSecond. */
  phases?: LoadPhase[];
  /** Report each accepted order's start, accept and terminal times (`orders`), for a run read phase by phase. */
  timeline?: boolean;
  /**
   * Weights of each kind of order. `threeDs`: tok_3ds, which waits for the customer's
   * confirmation; half are confirmed (ConfirmPayment) and half left to time out, so a mesh
   * under load should run with a THREE_DS_TIMEOUT_MS of seconds, not the 10-minute default.
   */
  mix: { good: number; declined: number; outOfStock: number; threeDs?: number };
  onProgress?: (line: string) => void;
  /**
   * Called once the last order is terminal, before the invariant check reads every order
   * back: a bench that charges the mesh's work to the orders stops its meters here.
   */
  onLoadEnd?: () => void | Promise<void>;
}

type Kind = "good" | "declined" | "outOfStock" | "threeDsConfirmed" | "threeDsAbandoned";

const paymentTokens: Record<Kind, string> = {
  good: "tok_visa",
  declined: "tok_decline",
  outOfStock: "tok_visa",
  threeDsConfirmed: "tok_3ds",
  threeDsAbandoned: "tok_3ds",
};

interface Placed {
  id: string;
  customer: number;
  kind: Kind;
  /** When PlaceOrder was sent, from the start of the run. */
  startedMs: number;
  acceptMs: number;
  terminalMs?: number;
  status?: OrderStatus;
  /** A tok_3ds order's customer sent ConfirmPayment (whether or not its answer came back). */
  confirmationSent?: boolean;
}

export interface LoadReport {
  startedAt: string;
  options: Omit<LoadOptions, "onProgress">;
  placed: number;
  /**
   * PlaceOrder calls answered RESOURCE_EXHAUSTED: the mesh shedding load (or the gateway's
   * rate limit), an order never accepted, so not among `errors`. In a closed loop the client
   * then waits REJECTED_PAUSE_MS before its next order, as a well-behaved client backs off.
   */
  rejected: number;
  /** CPU this process (the load generator) used during the run, in ms. */
  generatorCpuMs: number;
  /** With `timeline`: each accepted order's times in ms, from the start of the run to its PlaceOrder, then from there. */
  orders?: { startedMs: number; acceptMs: number; terminalMs?: number }[];
  /** Every order id the gateway accepted, so a chaos run can check that none was lost. */
  acceptedOrderIds: string[];
  /** The tok_3ds orders never confirmed: each must end cancelled, with nothing captured. */
  unconfirmedOrderIds: string[];
  ordersPerSecond: number;
  acceptMs: Percentiles;
  terminalMs: Percentiles;
  outcomes: Record<string, number>;
  errors: Record<string, number>;
  invariants: {
    ok: boolean;
    nonTerminal: number;
    chargedButNotConfirmed: number;
    confirmedNotCharged: number;
    /** tok_3ds orders confirmed though the customer never confirmed the payment. */
    confirmedWithoutCustomer: number;
    stockDrift: Record<string, number>;
  };
}

interface Percentiles {
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

function percentiles(values: number[]): Percentiles {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (p: number) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]! : 0);
  return { p50: at(0.5), p90: at(0.9), p99: at(0.99), max: sorted.at(-1) ?? 0 };
}

/**
 * The load itself, separate from the CLI so a test can run it. The customer is a fresh id
 * per run, so the invariant check reads exactly this run's orders.
 */
export async function runLoad(options: LoadOptions): Promise<LoadReport> {
  const anonymous = createClient(StorefrontService, createConnectTransport({ baseUrl: options.gatewayUrl, httpVersion: "2" }));
  // Many customers, as real traffic has: each has a rate-limit bucket of its own.
  const run = randomUUID().slice(0, 8);
  const customers = await Promise.all(
    Array.from({ length: 32 }, async (_, i) => {
      const { token } = await anonymous.issueDemoToken({ customerId: `load-${run}-${i}` });
      const auth: Interceptor = (next) => (req) => {
        req.header.set("authorization", `Bearer ${token}`);
        return next(req);
      };
      return createClient(StorefrontService, createConnectTransport({ baseUrl: options.gatewayUrl, httpVersion: "2", interceptors: [auth] }));
    }),
  );
  let nextCustomer = 0;
  const products = (await anonymous.listProducts({})).products;
  const plentiful = products.filter((p) => p.available > 100).map((p) => p.sku);
  if (plentiful.length === 0) throw new Error("no product has more than 100 units left; restock with AdjustStock or reset .data/");
  const scarce = products.reduce((a, b) => (a.available <= b.available ? a : b));
  const before = new Map(products.map((p) => [p.sku, p.available]));

  const weights: [Kind, number][] = [
    ["good", options.mix.good],
    ["declined", options.mix.declined],
    ["outOfStock", options.mix.outOfStock],
    ["threeDsConfirmed", (options.mix.threeDs ?? 0) / 2],
    ["threeDsAbandoned", (options.mix.threeDs ?? 0) / 2],
  ];
  const total = weights.reduce((sum, [, w]) => sum + w, 0);
  const pickKind = (): Kind => {
    let r = Math.random() * total;
    for (const [kind, w] of weights) if ((r -= w) < 0) return kind;
    return "good";
  };

  const placed: Placed[] = [];
  const errors: Record<string, number> = {};
  let rejected = 0;
  const cpuAtStart = process.cpuUsage();
  const started = performance.now();
  const phases = options.phases ?? (options.ratePerSecond ? [{ durationMs: options.durationMs, ratePerSecond: options.ratePerSecond }] : undefined);
  const deadline = started + (phases ? phases.reduce((sum, phase) => sum + phase.durationMs, 0) : options.durationMs);

  async function placeOne(): Promise<void> {
    const kind = pickKind();
    const items =
      kind === "outOfStock"
        ? [{ sku: scarce.sku, quantity: Math.min(scarce.available + 1, 10_000) }]
        : [{ sku: plentiful[Math.floor(Math.random() * plentiful.length)]!, quantity: 1 }];
    const customer = nextCustomer++ % customers.length;
    const storefront = customers[customer]!;
    const t0 = performance.now();
    let accepted = false;
    try {
      const { order } = await storefront.placeOrder({ items, paymentToken: paymentTokens[kind], requestId: randomUUID() }, { timeoutMs: 10_000 });
      accepted = true;
      const record: Placed = { id: order!.id, customer, kind, startedMs: t0 - started, acceptMs: performance.now() - t0 };
      placed.push(record);
      const confirmation = kind === "threeDsConfirmed" ? confirmWhenAsked(storefront, record, errors) : undefined;
      try {
        await watchUntilTerminal(storefront, record, () => (record.terminalMs = performance.now() - t0), confirmation?.ask);
      } finally {
        await confirmation?.settle();
      }
    } catch (err) {
      const code = ConnectError.from(err).code;
      if (!accepted && code === Code.ResourceExhausted) {
        rejected++;
        if (!phases) await new Promise((resolve) => setTimeout(resolve, REJECTED_PAUSE_MS));
        return;
      }
      const name = Code[code] ?? "Unknown";
      errors[name] = (errors[name] ?? 0) + 1;
    }
  }

  const inFlight = new Set<Promise<void>>();
  const progress = setInterval(() => {
    const elapsed = (performance.now() - started) / 1000;
    const done = placed.filter((p) => p.terminalMs !== undefined).length;
    options.onProgress?.(`${elapsed.toFixed(0)} s  placed ${placed.length}  terminal ${done}  in flight ${inFlight.size}  rejected ${rejected}  errors ${Object.values(errors).reduce((a, b) => a + b, 0)}  ${(placed.length / Math.max(elapsed, 0.001)).toFixed(1)} orders/s`);
  }, 500);
  const launch = () => {
    const task = placeOne().finally(() => inFlight.delete(task));
    inFlight.add(task);
  };
  if (phases) {
    let phaseStart = started;
    for (const phase of phases) {
      const interval = 1000 / phase.ratePerSecond;
      const phaseEnd = phaseStart + phase.durationMs;
      for (let next = phaseStart; next < phaseEnd && inFlight.size < 2_000; next += interval) {
        await new Promise((r) => setTimeout(r, Math.max(0, next - performance.now())));
        launch();
      }
      phaseStart = phaseEnd;
    }
  } else {
    const concurrency = options.concurrency ?? 8;
    while (performance.now() < deadline) {
      while (inFlight.size < concurrency) launch();
      await Promise.race(inFlight);
    }
  }
  await Promise.allSettled([...inFlight]);
  clearInterval(progress);
  await options.onLoadEnd?.();
  const elapsedS = (performance.now() - started) / 1000;
  const cpu = process.cpuUsage(cpuAtStart);

  // Invariants, read through the public API.
  let nonTerminal = 0;
  let chargedButNotConfirmed = 0;
  let confirmedNotCharged = 0;
  let confirmedWithoutCustomer = 0;
  const sold = new Map<string, number>();
  for (const p of placed) {
    const details = await patiently(() => customers[p.customer]!.getOrderDetails({ orderId: p.id }));
    const status = details.order!.status;
    const captured = details.payment?.payments.filter((pay) => pay.status === PaymentStatus.CAPTURED).length ?? 0;
    if (status === OrderStatus.PENDING) nonTerminal++;
    if (status === OrderStatus.CONFIRMED && captured !== 1) confirmedNotCharged++;
    if (status !== OrderStatus.CONFIRMED && captured > 0) chargedButNotConfirmed++;
    if (status === OrderStatus.CONFIRMED && p.kind.startsWith("threeDs") && !p.confirmationSent) confirmedWithoutCustomer++;
    if (status === OrderStatus.CONFIRMED) for (const line of details.order!.items) sold.set(line.sku, (sold.get(line.sku) ?? 0) + line.quantity);
  }
  const after = new Map((await patiently(() => anonymous.listProducts({}))).products.map((p) => [p.sku, p.available]));
  const stockDrift: Record<string, number> = {};
  for (const [sku, was] of before) {
    const drift = was - (after.get(sku) ?? 0) - (sold.get(sku) ?? 0);
    if (drift !== 0) stockDrift[sku] = drift; // other traffic during the run shows up here too
  }

  const outcomes: Record<string, number> = {};
  for (const p of placed) {
    const key = `${p.kind}:${p.status === undefined ? "unknown" : OrderStatus[p.status]}`;
    outcomes[key] = (outcomes[key] ?? 0) + 1;
  }
  const { onProgress: _onProgress, onLoadEnd: _onLoadEnd, ...reported } = options;
  return {
    startedAt: new Date(Date.now() - elapsedS * 1000).toISOString(),
    options: reported,
    placed: placed.length,
    rejected,
    generatorCpuMs: (cpu.user + cpu.system) / 1000,
    ...(options.timeline ? { orders: placed.map((p) => ({ startedMs: p.startedMs, acceptMs: p.acceptMs, ...(p.terminalMs === undefined ? {} : { terminalMs: p.terminalMs }) })) } : {}),
    acceptedOrderIds: placed.map((p) => p.id),
    unconfirmedOrderIds: placed.filter((p) => p.kind.startsWith("threeDs") && !p.confirmationSent).map((p) => p.id),
    ordersPerSecond: placed.length / elapsedS,
    acceptMs: percentiles(placed.map((p) => p.acceptMs)),
    terminalMs: percentiles(placed.flatMap((p) => (p.terminalMs === undefined ? [] : [p.terminalMs]))),
    outcomes,
    errors,
    invariants: {
      ok: nonTerminal === 0 && chargedButNotConfirmed === 0 && confirmedNotCharged === 0 && confirmedWithoutCustomer === 0 && Object.keys(stockDrift).length === 0,
      nonTerminal,
      chargedButNotConfirmed,
      confirmedNotCharged,
      confirmedWithoutCustomer,
      stockDrift,
    },
  };
}

/** How long a watch may take in all, and how long a client waits before watching again after a "not now". */
const WATCH_MS = 60_000;
const REWATCH_PAUSE_MS = 100;

/**
 * Follows an order until it is terminal. A watch refused "not now" (the mesh shedding load,
 * or away for a moment) is opened again, as a client would, until WATCH_MS have passed.
 * `onActionRequired` hears of the card network asking for the customer's confirmation.
 */
async function watchUntilTerminal(storefront: Client<typeof StorefrontService>, record: Placed, onTerminal: () => void, onActionRequired?: () => void): Promise<void> {
  const giveUpAt = Date.now() + WATCH_MS;
  for (;;) {
    try {
      for await (const update of storefront.watchOrder({ orderId: record.id }, { timeoutMs: Math.max(1, giveUpAt - Date.now()) })) {
        if (update.eventType === PaymentActionRequiredSchema.typeName) onActionRequired?.();
        record.status = update.order!.status;
        if (record.status !== OrderStatus.PENDING) onTerminal();
      }
      return;
    } catch (err) {
      if (!notNow.has(ConnectError.from(err).code) || Date.now() >= giveUpAt) throw err;
      await new Promise((resolve) => setTimeout(resolve, REWATCH_PAUSE_MS));
    }
  }
}

/**
 * How long a customer asked to confirm waits for WatchOrder to say so before confirming
 * anyway: the watch may have opened after the event, or the bus be away. A confirmation that
 * comes before the saga waits for it is kept, so confirming early is safe.
 */
const CONFIRM_ANYWAY_MS = 1_000;

/**
 * A tok_3ds customer who confirms: once asked (or after CONFIRM_ANYWAY_MS), ConfirmPayment
 * with one confirmation id, retried on "not now" until WATCH_MS have passed. FAILED_PRECONDITION
 * (the order finished first, e.g. timed out during a fault) is an answer, not an error.
 * `settle` waits for the confirmation, or drops it if none was asked for yet.
 */
function confirmWhenAsked(storefront: Client<typeof StorefrontService>, record: Placed, errors: Record<string, number>) {
  let ask!: () => void;
  let drop!: () => void;
  const asked = new Promise<boolean>((resolve) => {
    ask = () => resolve(true);
    drop = () => resolve(false);
  });
  const timer = setTimeout(ask, CONFIRM_ANYWAY_MS);
  const confirmed = asked.then(async (go) => {
    clearTimeout(timer);
    if (!go) return;
    const confirmationId = randomUUID();
    record.confirmationSent = true;
    try {
      await patiently(() => storefront.confirmPayment({ orderId: record.id, confirmationId }, { timeoutMs: 10_000 }), WATCH_MS);
    } catch (err) {
      const code = ConnectError.from(err).code;
      if (code === Code.FailedPrecondition) return;
      const name = `ConfirmPayment ${Code[code] ?? "Unknown"}`;
      errors[name] = (errors[name] ?? 0) + 1;
    }
  });
  return {
    ask: () => ask(),
    async settle() {
      drop();
      await confirmed;
    },
  };
}

/** How long a closed loop's client waits after its order was refused before placing the next. */
const REJECTED_PAUSE_MS = 100;

/** What a read may answer while the mesh recovers: "not now", never "no". */
const notNow = new Set([Code.ResourceExhausted, Code.Unavailable, Code.DeadlineExceeded, Code.Aborted]);
/** How long the invariant check waits out one read's "not now". */
const PATIENCE_MS = 60_000;

/**
 * Retries a read (or a call idempotent by its id) the gateway rate-limited, or that found a
 * dependency away for a moment (a chaos run ends its load while a restarted service or
 * database comes back): the check must not fail for being quick.
 */
async function patiently<T>(read: () => Promise<T>, patienceMs = PATIENCE_MS): Promise<T> {
  const giveUpAt = Date.now() + patienceMs;
  for (;;) {
    try {
      return await read();
    } catch (err) {
      if (!notNow.has(ConnectError.from(err).code) || Date.now() >= giveUpAt) throw err;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

export function renderMarkdown(report: LoadReport): string {
  const ms = (p: Percentiles) => `${p.p50.toFixed(1)} / ${p.p90.toFixed(1)} / ${p.p99.toFixed(1)} / ${p.max.toFixed(1)}`;
  return [
    `## Load run ${report.startedAt}`,
    "",
    "| measure | value |",
    "|---|---|",
    `| orders placed | ${report.placed} |`,
    `| refused (RESOURCE_EXHAUSTED at PlaceOrder) | ${report.rejected} |`,
    `| throughput | ${report.ordersPerSecond.toFixed(1)} orders/s |`,
    `| accept latency p50 / p90 / p99 / max (ms) | ${ms(report.acceptMs)} |`,
    `| to terminal p50 / p90 / p99 / max (ms) | ${ms(report.terminalMs)} |`,
    `| outcomes | ${Object.entries(report.outcomes).map(([k, v]) => `${k} ${v}`).join(", ")} |`,
    `| errors by code | ${Object.entries(report.errors).map(([k, v]) => `${k} ${v}`).join(", ") || "none"} |`,
    `| invariants | ${report.invariants.ok ? "hold" : `VIOLATED ${JSON.stringify(report.invariants)}`} |`,
    "",
  ].join("\n");
}
