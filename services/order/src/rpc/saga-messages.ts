import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { SagaPhaseKind, SagaPhaseSchema, SagaState, SagaStatusSchema, SagaStepStatusSchema } from "#gen/shop/order/v1/order_service_pb.js";
import { SagaSchema, SagaSignalSchema } from "#gen/shop/order/v1/saga_admin_service_pb.js";
import { InvalidArgumentError, type SagaPhase, type SagaRow, type SagaSignalView, type SagaState as KitSagaState, type SagaStepView, type SagaWithSteps } from "#platform";
import { redactPaymentTokens } from "../app/redact.js";

const sagaStateToWire: Record<KitSagaState, SagaState> = {
  running: SagaState.RUNNING,
  compensating: SagaState.COMPENSATING,
  waiting: SagaState.WAITING,
  completed: SagaState.COMPLETED,
  compensated: SagaState.COMPENSATED,
  parked: SagaState.PARKED,
};
const sagaStateFromWire = new Map(Object.entries(sagaStateToWire).map(([kit, wire]) => [wire, kit as KitSagaState]));

/** A wire filter as the kit's state; SAGA_STATE_UNSPECIFIED means any. */
export function sagaStateFilter(state: SagaState): KitSagaState | undefined {
  if (state === SagaState.UNSPECIFIED) return undefined;
  const kit = sagaStateFromWire.get(state);
  if (!kit) throw new InvalidArgumentError("state", `unknown saga state ${state}`);
  return kit;
}

const phaseKindToWire: Record<SagaPhase["kind"], SagaPhaseKind> = {
  attempt: SagaPhaseKind.ATTEMPT,
  compensation: SagaPhaseKind.COMPENSATION,
  timer: SagaPhaseKind.TIMER,
  signal: SagaPhaseKind.SIGNAL,
};

const toPhase = (phase: SagaPhase) =>
  create(SagaPhaseSchema, {
    kind: phaseKindToWire[phase.kind],
    attempt: phase.attempt,
    startTime: timestampFromDate(phase.startedAt),
    ...(phase.endedAt ? { endTime: timestampFromDate(phase.endedAt) } : {}),
    outcome: phase.outcome ?? "",
    error: phase.error ?? "",
    backoffMs: BigInt(phase.backoffMs ?? 0),
    traceId: phase.traceId ?? "",
    waitName: phase.waitName ?? "",
    ...(phase.dueAt ? { dueTime: timestampFromDate(phase.dueAt) } : {}),
  });

const toStepStatus = (step: SagaStepView) =>
  create(SagaStepStatusSchema, { name: step.name, state: step.state, attempts: step.attempts, lastError: step.lastError ?? "", phases: step.phases.map(toPhase) });

const toSignal = (signal: SagaSignalView) =>
  create(SagaSignalSchema, {
    name: signal.name,
    signalId: signal.signalId,
    receiveTime: timestampFromDate(signal.receivedAt),
    ...(signal.consumedAt ? { consumeTime: timestampFromDate(signal.consumedAt) } : {}),
  });

/** A saga's progress as every view shows it: where it is, how often it tried, what it met next. */
function progress(saga: Omit<SagaRow, "payload">) {
  return {
    state: sagaStateToWire[saga.state],
    currentStep: saga.currentStep ?? "",
    attempts: saga.attempts,
    ...(saga.nextAttemptAt ? { nextAttemptTime: timestampFromDate(saga.nextAttemptAt) } : {}),
    failureReason: saga.failureReason ?? "",
    lastError: saga.lastError ?? "",
    version: saga.version,
  };
}

/** GetOrder's view of the order's saga, payment tokens redacted. */
export function toSagaStatus({ payload: _notShown, signals: _notShownEither, ...saga }: SagaWithSteps) {
  // GetOrder never shows the payload (nor the signals), so they are not copied through the
  // redaction (every GetOrder and WatchOrder poll comes here).
  const shown = redactPaymentTokens(saga);
  return create(SagaStatusSchema, { ...progress(shown), steps: shown.steps.map(toStepStatus) });
}

/** The admin view of a saga, payment tokens redacted; steps and signals only where they were read. */
export function toSagaMessage(saga: SagaRow & { steps?: SagaStepView[]; signals?: SagaSignalView[] }) {
  const shown = redactPaymentTokens(saga);
  return create(SagaSchema, {
    ...progress(shown),
    orderId: shown.aggregateId,
    sagaId: shown.id,
    type: shown.type,
    cancelRequested: shown.cancelRequested,
    steps: (shown.steps ?? []).map(toStepStatus),
    signals: (shown.signals ?? []).map(toSignal),
    payloadJson: JSON.stringify(shown.payload),
    createTime: timestampFromDate(shown.createdAt),
    updateTime: timestampFromDate(shown.updatedAt),
  });
}
