import type { ConnectRouter, HandlerContext } from "@connectrpc/connect";
import { SagaAdminService } from "#gen/shop/order/v1/saga_admin_service_pb.js";
import { clientAddressKey, callerOf } from "#platform";
import type { SagaAdmin } from "../app/saga-admin.js";
import { sagaStateFilter, toSagaMessage } from "./saga-messages.js";

/** The header in which the saga CLI names the operator. */
export const OPERATOR_HEADER = "x-operator";

/**
 * Who is acting, for the audit: the verified identity of the caller's certificate (the
 * contract admits only operators), the person it names, and the address it called from.
 * The name is the operator's word; the identity is not.
 */
function actorOf(ctx: HandlerContext): string {
  const named = (ctx.requestHeader.get(OPERATOR_HEADER) ?? "").trim().slice(0, 64) || "unknown";
  return `${named} (${callerOf(ctx) ?? "no identity"})@${ctx.values.get(clientAddressKey)}`;
}

/** Maps shop.order.v1.SagaAdminService onto the saga admin use cases. */
export function createSagaAdminRoutes({ admin }: { admin: SagaAdmin }) {
  return (router: ConnectRouter) =>
    router.service(SagaAdminService, {
      async listSagas(req) {
        const page = await admin.list({ state: sagaStateFilter(req.state), retrying: req.retrying }, req.pageSize, req.pageToken);
        return { sagas: page.sagas.map(toSagaMessage), nextPageToken: page.nextPageToken };
      },
      async getSaga(req) {
        return { saga: toSagaMessage(await admin.get(req.orderId)) };
      },
      async retrySaga(req, ctx) {
        return { saga: toSagaMessage(await admin.retry(req.orderId, actorOf(ctx))) };
      },
      async compensateSaga(req, ctx) {
        return { saga: toSagaMessage(await admin.compensate(req.orderId, req.reason, actorOf(ctx))) };
      },
    });
}
