import { Code, ConnectError, type Client, type ConnectRouter, type HandlerContext } from "@connectrpc/connect";
import { equals } from "@bufbuild/protobuf";
import { OperatorService, SagaView, type WatchSagaResponse } from "#gen/shop/gateway/v1/operator_service_pb.js";
import { SagaAdminService, SagaSchema, type Saga } from "#gen/shop/order/v1/saga_admin_service_pb.js";
import { SagaState } from "#gen/shop/order/v1/order_service_pb.js";
import { detachedFromDeadline } from "#platform";
import { OPERATOR_HEADER, operatorKey } from "./operator-auth.js";
import type { OperatorDeadLetters } from "./dead-letters.js";
import type { RouteAdmin } from "./route-admin.js";
import { fromBackend } from "./backend-errors.js";
import type { CatalogWrites } from "./catalog-writes.js";
import { STATS_SECONDS, type GatewayStats } from "./stats.js";
import { TRACE_ID, type TraceStore } from "./trace-store.js";

export interface OperatorRouteDeps {
  /** Called with the operator certificate. */
  sagaAdmin: Client<typeof SagaAdminService>;
  deadLetters: OperatorDeadLetters;
  /** The strangler fig's route table, with this replica's counts. */
  routes: RouteAdmin;
  /** The operator's catalog writes, to the side the write route says. */
  catalogWrites: CatalogWrites;
  stats: GatewayStats;
  /** Unset where traces go to an OTLP endpoint instead: ListTraces is empty, GetTrace NOT_FOUND. */
  traces: TraceStore | undefined;
  /** How long a WatchSaga stream stays open at most, and how often it looks again. */
  watch: { maxMs: number; pollMs: number; maxOpen: number };
}

/** What each view asks the saga admin service for; RUNNING then leaves out the retrying ones. */
const viewQuery: Record<SagaView, { state: SagaState; retrying: boolean }> = {
  [SagaView.UNSPECIFIED]: { state: SagaState.UNSPECIFIED, retrying: false },
  [SagaView.RUNNING]: { state: SagaState.RUNNING, retrying: false },
  [SagaView.RETRYING]: { state: SagaState.UNSPECIFIED, retrying: true },
  [SagaView.WAITING]: { state: SagaState.WAITING, retrying: false },
  [SagaView.PARKED]: { state: SagaState.PARKED, retrying: false },
  [SagaView.COMPENSATING]: { state: SagaState.COMPENSATING, retrying: false },
};

/** Admin pages one RUNNING ListSagas reads at most to fill its page: bounded, so a long run of retrying sagas costs a few reads, then the page goes out short with its token. */
const MAX_ADMIN_PAGES = 5;

/** A saga admin call: order's refusal of the console's certificate is FAILED_PRECONDITION. */
const fromOrder = <T>(call: () => Promise<T>) => fromBackend("order", call);

const isFinished = (saga: Saga | undefined) => saga?.state === SagaState.COMPLETED || saga?.state === SagaState.COMPENSATED;

/** A count in [0, max]; 0 means `fallback`. */
function bounded(value: number, field: string, max: number, fallback: number): number {
  if (value < 0 || value > max) throw new ConnectError(`${field}: must be from 0 to ${max}`, Code.InvalidArgument);
  return value === 0 ? fallback : value;
}

/**
 * OperatorService, the console's operator backend. Every call arrives with a verified
 * operator (createOperatorAuthInterceptor); the saga actions go to the saga admin service
 * under the operator certificate, naming that operator for its audit.
 */
export function createOperatorRoutes(deps: OperatorRouteDeps) {
  const { sagaAdmin } = deps;
  const asOperator = (ctx: HandlerContext) => ({ signal: ctx.signal, headers: { [OPERATOR_HEADER]: ctx.values.get(operatorKey) } });
  let openWatches = 0;

  async function* watchSaga(orderId: string, ctx: HandlerContext): AsyncGenerator<WatchSagaResponse> {
    if (openWatches >= deps.watch.maxOpen) throw new ConnectError(`at most ${deps.watch.maxOpen} WatchSaga streams are open at once`, Code.ResourceExhausted);
    openWatches++;
    try {
      const until = Date.now() + deps.watch.maxMs;
      let last: Saga | undefined;
      while (!ctx.signal.aborted && Date.now() < until) {
        // Each read has the client's own deadline, not what is left of the stream's.
        const { saga } = await detachedFromDeadline(() => fromOrder(() => sagaAdmin.getSaga({ orderId }, { signal: ctx.signal })));
        if (saga && (!last || !equals(SagaSchema, saga, last))) {
          last = saga;
          yield { $typeName: "shop.gateway.v1.WatchSagaResponse", saga };
        }
        if (isFinished(saga)) return;
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, deps.watch.pollMs);
          ctx.signal.addEventListener("abort", () => (clearTimeout(timer), resolve()), { once: true });
        });
      }
    } finally {
      openWatches--;
    }
  }

  return (router: ConnectRouter) =>
    router.service(OperatorService, {
      async listSagas(req, ctx) {
        const query = viewQuery[req.view];
        if (!query) throw new ConnectError(`view: unknown saga view ${req.view}`, Code.InvalidArgument);
        const pageSize = bounded(req.pageSize, "page_size", 100, 20);
        const read = (size: number, pageToken: string) => fromOrder(() => sagaAdmin.listSagas({ ...query, pageSize: size, pageToken }, { signal: ctx.signal }));
        if (req.view !== SagaView.RUNNING) {
          const { sagas, nextPageToken } = await read(pageSize, req.pageToken);
          return { sagas, nextPageToken };
        }
        // "Running" is running with no failed attempt pending, which the admin service cannot
        // filter on: read on until the page is full, asking each time for what is missing, so
        // the last page's token resumes right after the last saga read. Past MAX_ADMIN_PAGES
        // the page holds fewer than page_size and next_page_token goes on.
        const sagas: Saga[] = [];
        let pageToken = req.pageToken;
        for (let reads = 0; reads < MAX_ADMIN_PAGES && sagas.length < pageSize; reads++) {
          const page = await read(pageSize - sagas.length, pageToken);
          sagas.push(...page.sagas.filter((saga) => saga.nextAttemptTime === undefined));
          pageToken = page.nextPageToken;
          if (!pageToken) break;
        }
        return { sagas, nextPageToken: pageToken };
      },
      async getSaga(req, ctx) {
        return { saga: (await fromOrder(() => sagaAdmin.getSaga({ orderId: req.orderId }, { signal: ctx.signal }))).saga };
      },
      watchSaga: (req, ctx) => watchSaga(req.orderId, ctx),
      async retrySaga(req, ctx) {
        return { saga: (await fromOrder(() => sagaAdmin.retrySaga({ orderId: req.orderId }, asOperator(ctx)))).saga };
      },
      async compensateSaga(req, ctx) {
        return { saga: (await fromOrder(() => sagaAdmin.compensateSaga({ orderId: req.orderId, reason: req.reason }, asOperator(ctx)))).saga };
      },
      async listDeadLetters() {
        return { deadLetters: await deps.deadLetters.list() };
      },
      async replayDeadLetter(req, ctx) {
        await deps.deadLetters.replay(req.sequence, ctx.values.get(operatorKey));
        return {};
      },
      async listRoutes(_req, ctx) {
        return deps.routes.list(ctx.signal);
      },
      async setRoute(req, ctx) {
        return { route: await deps.routes.set(req, ctx.values.get(operatorKey), ctx.signal) };
      },
      async updateProduct(req, ctx) {
        return deps.catalogWrites.update(req, ctx.values.get(operatorKey), ctx.signal);
      },
      async discardRefusedWrites(req, ctx) {
        return deps.catalogWrites.discard(req, ctx.values.get(operatorKey), ctx.signal);
      },
      getStats(req) {
        return deps.stats.read(bounded(req.windowSeconds, "window_seconds", STATS_SECONDS, 300));
      },
      listTraces(req) {
        return { traces: deps.traces?.list(bounded(req.limit, "limit", 100, 20)) ?? [] };
      },
      getTrace(req) {
        const traceId = req.traceId.toLowerCase();
        if (!TRACE_ID.test(traceId)) throw new ConnectError("trace_id: must be 32 hex digits", Code.InvalidArgument);
        const spans = deps.traces?.get(traceId);
        if (!spans) throw new ConnectError(`trace ${traceId} is not in the dev trace store (never received, or evicted)`, Code.NotFound);
        return { traceId, spans };
      },
    });
}
