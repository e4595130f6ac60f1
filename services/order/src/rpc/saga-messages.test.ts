import { describe, expect, it } from "vitest";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { SagaPhaseKind, SagaState } from "#gen/shop/order/v1/order_service_pb.js";
import type { SagaWithSteps } from "#platform";
import { sagaStateFilter, toSagaMessage, toSagaStatus } from "./saga-messages.js";

const at = (s: number) => new Date(Date.UTC(2026, 0, 1, 12, 0, s));

/** A saga waiting in its charge step for the customer's confirmation, after one failed charge. */
const waiting: SagaWithSteps = {
  id: "9b0c8f8e-8a3e-4c55-9f0e-3f1c2a6b7d10",
  type: "place-order",
  version: 2,
  aggregateId: "0b7f6c1e-2c1d-4a8e-9d0a-6b1e2f3a4c5d",
  state: "waiting",
  payload: { orderId: "o1", paymentToken: "tok_3ds" },
  failureReason: null,
  lastError: "charge: card tok_3ds unreachable",
  currentStep: "charge",
  attempts: 2,
  nextAttemptAt: null,
  cancelRequested: false,
  wakeAt: at(40),
  waitingFor: "payment-confirmed",
  signalsReceived: 0,
  leaseOwner: null,
  leaseExpiresAt: null,
  createdAt: at(0),
  updatedAt: at(3),
  steps: [
    {
      sagaId: "9b0c8f8e-8a3e-4c55-9f0e-3f1c2a6b7d10",
      stepIndex: 1,
      name: "charge",
      state: "started",
      attempts: 2,
      lastError: null,
      updatedAt: at(3),
      phases: [
        { kind: "attempt", attempt: 1, startedAt: at(1), endedAt: at(2), outcome: "retrying", error: "card tok_3ds unreachable", backoffMs: 120, traceId: "4bf92f3577b34da6a3ce929d0e0e4736" },
        { kind: "attempt", attempt: 2, startedAt: at(2), endedAt: at(3), outcome: "waiting" },
        { kind: "signal", attempt: 0, startedAt: at(3), outcome: "waiting", waitName: "payment-confirmed", dueAt: at(40) },
      ],
    },
  ],
  signals: [{ name: "other", signalId: "s-1", receivedAt: at(2), consumedAt: null }],
};

describe("saga views", () => {
  it("shows a waiting saga's state, version and timeline, payment tokens redacted", () => {
    const status = toSagaStatus(waiting);
    expect(status).toMatchObject({ state: SagaState.WAITING, version: 2, currentStep: "charge", lastError: "charge: card [redacted] unreachable" });
    const [retried, suspended, wait] = status.steps[0]!.phases;
    expect(retried).toMatchObject({ kind: SagaPhaseKind.ATTEMPT, attempt: 1, outcome: "retrying", error: "card [redacted] unreachable", backoffMs: 120n, traceId: "4bf92f3577b34da6a3ce929d0e0e4736" });
    expect(timestampDate(retried!.startTime!)).toEqual(at(1));
    expect(suspended).toMatchObject({ kind: SagaPhaseKind.ATTEMPT, attempt: 2, outcome: "waiting" });
    expect(wait).toMatchObject({ kind: SagaPhaseKind.SIGNAL, attempt: 0, outcome: "waiting", waitName: "payment-confirmed" });
    expect(wait!.endTime).toBeUndefined();
    expect(timestampDate(wait!.dueTime!)).toEqual(at(40));
  });

  it("gives operators the signals too, received and not yet taken", () => {
    const saga = toSagaMessage(waiting);
    expect(saga).toMatchObject({ state: SagaState.WAITING, version: 2, payloadJson: JSON.stringify({ orderId: "o1", paymentToken: "[redacted]" }) });
    expect(saga.signals).toHaveLength(1);
    expect(saga.signals[0]).toMatchObject({ name: "other", signalId: "s-1" });
    expect(timestampDate(saga.signals[0]!.receiveTime!)).toEqual(at(2));
    expect(saga.signals[0]!.consumeTime).toBeUndefined();
  });

  it("filters by WAITING like any other state", () => {
    expect(sagaStateFilter(SagaState.WAITING)).toBe("waiting");
    expect(sagaStateFilter(SagaState.UNSPECIFIED)).toBeUndefined();
  });
});
