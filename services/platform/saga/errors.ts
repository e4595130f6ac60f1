import { DomainError } from "../domain/errors.js";

/**
 * A definitive "no" from a step (out of stock, card declined). It is not retried: the saga
 * compensates instead, and `reason` becomes the saga's failure reason.
 */
export class StepRejectedError extends Error {
  override readonly name: string = "StepRejectedError";
}

/**
 * A signal wait ran out: a definitive "no". Before the point of no return the saga
 * compensates; past it, where a step can only go forward, the saga is parked for an operator.
 */
export class SignalTimeoutError extends StepRejectedError {
  override readonly name = "SignalTimeoutError";
}

/**
 * The saga is suspended on a wait and released (state waiting): the attempt stops here and
 * the step runs again from the top once the wait is over. Control flow, not a failure: the
 * runner neither counts nor retries nor logs it as one.
 */
export class SagaSuspended extends Error {
  override readonly name = "SagaSuspended";
  constructor(
    readonly sagaId: string,
    /** How soon the saga is due, as the database saw it. */
    readonly wakeInMs: number,
  ) {
    super(`saga ${sagaId} is waiting`);
  }
}

/** This runner's claim on a saga lapsed and another took it over; it must stop acting. */
export class LeaseLostError extends Error {
  constructor(sagaId: string) {
    super(`lost the lease on saga ${sagaId}`);
  }
}

/**
 * An action on a saga on a version this build does not define (a newer replica started
 * it): where its point of no return lies is that version's to say, so this build refuses.
 */
export class SagaVersionUnknownError extends DomainError {
  override readonly name = "SagaVersionUnknownError";
  readonly kind = "failed_precondition";
}
