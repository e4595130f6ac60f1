import { AsyncLocalStorage } from "node:async_hooks";
import type { Interceptor } from "@connectrpc/connect";

/**
 * The deadline of the RPC being served, so that calls it makes downstream never outlive
 * it: a caller that gave up leaves no work running on its behalf further down the mesh.
 */
const storage = new AsyncLocalStorage<{ deadline: number }>();

/** Milliseconds left for the RPC being served, or undefined outside one or without a deadline. */
export function remainingBudgetMs(): number | undefined {
  const current = storage.getStore();
  return current ? current.deadline - Date.now() : undefined;
}

/**
 * Runs work that must not inherit the current RPC's deadline, such as a saga started by a
 * request but driven long after the response went out.
 */
export function detachedFromDeadline<T>(work: () => T): T {
  return storage.exit(work);
}

/** Parses the timeout headers of the Connect and gRPC protocols into milliseconds. */
export function timeoutFromHeaders(header: Headers): number | undefined {
  const connect = header.get("connect-timeout-ms");
  if (connect && /^\d{1,10}$/.test(connect)) return Number(connect);
  const grpc = /^(\d{1,8})([HMSmun])$/.exec(header.get("grpc-timeout") ?? "");
  if (!grpc) return undefined;
  const unitMs: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1_000, m: 1, u: 0.001, n: 0.000001 };
  return Number(grpc[1]) * unitMs[grpc[2]!]!;
}

/**
 * Server interceptor that records each call's deadline, capped at `maxTimeoutMs`, for the
 * client side to read. It wraps the whole handler, so clients used inside see it.
 */
export function createDeadlineInterceptor(maxTimeoutMs: number): Interceptor {
  return (next) => async (req) => {
    const timeoutMs = Math.min(timeoutFromHeaders(req.header) ?? maxTimeoutMs, maxTimeoutMs);
    const store = { deadline: Date.now() + timeoutMs };
    const res = await storage.run(store, () => next(req));
    // A streaming handler's body runs as its messages are pulled, after this returned.
    return res.stream ? { ...res, message: bind(res.message, store) } : res;
  };
}

/** An async iterable whose every step runs with `store` as the current deadline. */
function bind<T>(iterable: AsyncIterable<T>, store: { deadline: number }): AsyncIterable<T> {
  return {
    [Symbol.asyncIterator]() {
      const iterator = storage.run(store, () => iterable[Symbol.asyncIterator]());
      return {
        next: () => storage.run(store, () => iterator.next()),
        return: (value?: unknown) => storage.run(store, () => iterator.return?.(value) ?? Promise.resolve({ done: true as const, value: value as T })),
      };
    },
  };
}
