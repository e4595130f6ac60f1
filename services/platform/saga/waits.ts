import { TaskCancelledError } from "cockatiel";
import { SagaSuspended, SignalTimeoutError } from "./errors.js";
import type { WaitCheck, WaitSpec } from "./saga-statements.js";

/** The waits a step can make; see StepContext. */
export interface StepWaits {
  sleepUntil(name: string, at: Date): Promise<void>;
  sleep(name: string, ms: number): Promise<void>;
  awaitSignal(name: string, options: { timeoutMs: number }): Promise<Record<string, unknown>>;
}

/** The per-attempt timeout, which a wait stops while it reads and writes the saga's own rows. */
export interface AttemptClock {
  pause(): void;
  /** Starts the attempt's full time again: what follows a wait is new work. */
  restart(): void;
}

/**
 * Runs an attempt under a timeout of `ms` that its waits can pause: the time a step spends
 * at a wait is the saga's, not the participant's, so a wait is never mistaken for a slow
 * call and its suspension never for a timeout. The attempt's signal aborts on the timeout
 * and when `outer` does (the runner stopping), and the attempt is given up on at once then,
 * as cockatiel's aggressive timeout would, with its TaskCancelledError.
 */
export async function withinAttemptTimeout<T>(ms: number, outer: AbortSignal, attempt: (signal: AbortSignal, clock: AttemptClock) => Promise<T>): Promise<T> {
  const controller = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  let giveUp: (err: Error) => void = () => {};
  const givenUp = new Promise<never>((_, reject) => (giveUp = reject));
  const abort = (err: Error) => {
    controller.abort(err);
    giveUp(err);
  };
  const onOuterAbort = () => abort(new TaskCancelledError("the saga runner is stopping"));
  const clock: AttemptClock = {
    pause: () => clearTimeout(timer),
    restart() {
      clearTimeout(timer);
      timer = setTimeout(() => abort(new TaskCancelledError(`attempt timed out after ${ms} ms`)), ms);
    },
  };
  if (outer.aborted) onOuterAbort();
  outer.addEventListener("abort", onOuterAbort, { once: true });
  clock.restart();
  try {
    return await Promise.race([attempt(controller.signal, clock), givenUp]);
  } finally {
    clearTimeout(timer);
    outer.removeEventListener("abort", onOuterAbort);
  }
}

/**
 * A step's waits in the replay model: each looks its wait up by name (recording it when
 * first reached) and goes on if it is over; otherwise it suspends the saga and throws
 * SagaSuspended, and the step runs again from the top once the saga is due. The clock is
 * paused meanwhile and restarted if the step goes on.
 */
export function stepWaits(deps: {
  sagaId: string;
  /** The attempt's: one already given up on (it timed out) must not go on to suspend the saga. */
  signal: AbortSignal;
  clock: AttemptClock;
  check(wait: WaitSpec): Promise<WaitCheck>;
  suspend(wait: WaitSpec, seen: number): Promise<number>;
}): StepWaits {
  const { sagaId, clock } = deps;
  const names = new Set<string>();
  async function reach(wait: WaitSpec): Promise<WaitCheck> {
    if (!wait.name) throw new TypeError("a wait needs a name");
    if (names.has(wait.name)) throw new TypeError(`wait "${wait.name}" is reached twice in one run of the step; names must be unique within a step`);
    names.add(wait.name);
    clock.pause();
    deps.signal.throwIfAborted();
    const found = await deps.check(wait);
    if (found.outcome === null) throw new SagaSuspended(sagaId, await deps.suspend(wait, found.seen));
    clock.restart();
    return found;
  }
  return {
    async sleepUntil(name, at) {
      await reach({ name, kind: "timer", due: { at } });
    },
    async sleep(name, ms) {
      await reach({ name, kind: "timer", due: { afterMs: ms } });
    },
    async awaitSignal(name, { timeoutMs }) {
      const found = await reach({ name, kind: "signal", due: { afterMs: timeoutMs } });
      if (found.outcome === "timed-out") throw new SignalTimeoutError(`signal "${name}" did not arrive within ${timeoutMs} ms`);
      return found.payload ?? {};
    },
  };
}
