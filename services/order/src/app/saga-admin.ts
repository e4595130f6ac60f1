import { randomUUID } from "node:crypto";
import { type Logger, pageRequest, readPage, type ActionHook, type SagaActionOutcome, type SagaRunner, type SagaWithSteps, type SagaRow, type SagaState } from "#platform";
import { SagaActionRefusedError, SagaNotFoundError } from "../domain/errors.js";
import { parseOrderId } from "../domain/order.js";
import { sagaAudit } from "../db/schema.js";
import type { PlaceOrderPayload } from "./place-order-saga.js";
import { redactPaymentTokens } from "./redact.js";

/** Who acts, as the admin edge identifies them, e.g. "ada@127.0.0.1". */
export type Actor = string;

type AuditedAction = "retry" | "compensate";

const DEFAULT_COMPENSATE_REASON = "compensated by an operator";

/**
 * The operator's view of place-order sagas, and the actions that unstick them. Each action
 * is audited in the transaction that decides it, so no action goes unrecorded and no record
 * claims an action that did not happen. Rows come back as stored: the views that show them
 * (rpc/saga-messages.ts) redact payment tokens, as the audit and its log line do here.
 */
export function createSagaAdmin(deps: { saga: SagaRunner<PlaceOrderPayload>; logger: Logger }) {
  const { saga } = deps;
  const logger = deps.logger.child({ component: "saga-admin" });

  const audit =
    (actor: Actor, action: AuditedAction, orderId: string): ActionHook =>
    async (tx, outcome) => {
      const detail = redactPaymentTokens(describeOutcome(outcome));
      await tx.insert(sagaAudit).values({ id: randomUUID(), actor, action, orderId, outcome: outcome.outcome === "not-found" ? "not_found" : outcome.outcome, detail });
      logger.info({ actor, action, orderId, outcome: outcome.outcome, detail }, "operator action on a saga");
    };

  async function act(action: AuditedAction, rawOrderId: string, actor: Actor, run: (orderId: string, hook: ActionHook) => Promise<SagaActionOutcome>) {
    const orderId = parseOrderId(rawOrderId);
    const outcome = await run(orderId, audit(actor, action, orderId));
    if (outcome.outcome === "not-found") throw new SagaNotFoundError(orderId);
    if (outcome.outcome === "refused") throw new SagaActionRefusedError(action, orderId, outcome.reason);
    return find(orderId);
  }

  async function find(orderId: string): Promise<SagaWithSteps> {
    const found = await saga.get(orderId, { signals: true });
    if (!found) throw new SagaNotFoundError(orderId);
    return found;
  }

  return {
    /** Sagas oldest first, optionally in one state or only those with a retry pending, a bounded page at a time. */
    async list(filter: { state: SagaState | undefined; retrying: boolean }, requestedSize: number, pageToken: string): Promise<{ sagas: SagaRow[]; nextPageToken: string }> {
      const page = await readPage(pageRequest({ pageSize: requestedSize, pageToken }, "ListSagas"), (limit, after) => saga.list({ ...filter, limit, after }));
      return { sagas: page.rows, nextPageToken: page.nextPageToken };
    },

    get: (orderId: string) => find(parseOrderId(orderId)),

    retry: (orderId: string, actor: Actor) => act("retry", orderId, actor, (id, hook) => saga.retry(id, hook)),

    compensate: (orderId: string, reason: string, actor: Actor) =>
      act("compensate", orderId, actor, (id, hook) => saga.compensate(id, reason.trim() || DEFAULT_COMPENSATE_REASON, hook)),
  };
}

function describeOutcome(outcome: SagaActionOutcome): string {
  switch (outcome.outcome) {
    case "accepted":
      return outcome.state;
    case "not-found":
      return "no saga for this order";
    case "refused":
      return outcome.reason;
  }
}

export type SagaAdmin = ReturnType<typeof createSagaAdmin>;
