import { create } from "@bufbuild/protobuf";
import { GetOrderTimelineResponseSchema, TimelinePhaseSchema, TimelineStepSchema, type GetOrderTimelineResponse } from "#gen/shop/gateway/v1/storefront_service_pb.js";
import { SagaState, type GetOrderResponse, type SagaPhase, type SagaStepStatus } from "#gen/shop/order/v1/order_service_pb.js";

/**
 * A customer's view of their order's saga: each step's name and state, and its phases'
 * kinds, times and outcomes. Field by field, never by spreading: errors, trace ids, backoff
 * and attempt counts are the operators' (GetOrderResponse.saga says so), and a field added
 * to SagaPhase later stays out of the public answer until someone chooses to show it.
 */
export function customerTimeline({ order, saga }: GetOrderResponse): GetOrderTimelineResponse {
  return create(GetOrderTimelineResponseSchema, {
    ...(order ? { order } : {}),
    sagaState: saga?.state ?? SagaState.UNSPECIFIED,
    steps: (saga?.steps ?? []).map(customerStep),
  });
}

const customerStep = (step: SagaStepStatus) => create(TimelineStepSchema, { name: step.name, state: step.state, phases: step.phases.map(customerPhase) });

const customerPhase = (phase: SagaPhase) =>
  create(TimelinePhaseSchema, {
    kind: phase.kind,
    ...(phase.startTime ? { startTime: phase.startTime } : {}),
    ...(phase.endTime ? { endTime: phase.endTime } : {}),
    outcome: phase.outcome,
    waitName: phase.waitName,
    ...(phase.dueTime ? { dueTime: phase.dueTime } : {}),
  });
