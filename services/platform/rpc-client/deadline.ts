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

const CONNECT_TIMEOUT = "connect-timeout-ms";
const GRPC_TIMEOUT = "grpc-timeout";
const grpcUnitMs: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1_000, m: 1, u: 0.001, n: 0.000001 };

/** The timeout of a Connect `connect-timeout-ms` value, in ms, or undefined if malformed. */
const connectTimeoutMs = (value: string | null) => (value !== null && /^\d{1,10}$/.test(value) ? Number(value) : undefined);

/** The timeout of a gRPC `grpc-timeout` value, in ms, or undefined if malformed. */
function grpcTimeoutMs(value: string | null): number | undefined {
  const grpc = value === null ? null : /^(\d{1,8})([HMSmun])$/.exec(value);
  return grpc ? Number(grpc[1]) * grpcUnitMs[grpc[2]!]! : undefined;
}

/** Parses the timeout headers of the Connect and gRPC protocols into milliseconds. */
export function timeoutFromHeaders(header: Headers): number | undefined {
  return connectTimeoutMs(header.get(CONNECT_TIMEOUT)) ?? grpcTimeoutMs(header.get(GRPC_TIMEOUT));
}

/** The longest timer Node arms: a longer one fires after 1 ms, with a TimeoutOverflowWarning. */
export const MAX_TIMER_MS = 2_147_483_647;

/**
 * Rewrites a timeout header longer than `maxTimeoutMs` to `maxTimeoutMs`, in place. connect-es
 * arms a timer with the caller's timeout as sent, so without this a deadline of days, say
 * `grpc-timeout: 99999999H`, overflows Node's timer and the call fails at once with
 * DEADLINE_EXCEEDED; or, were connect's own maxTimeoutMs set, with INVALID_ARGUMENT. A
 * caller asking for more time than we give gets what we give, as a cap, never an error.
 * Malformed values are left for connect-es to refuse.
 */
export function capTimeoutHeaders(header: Headers, maxTimeoutMs: number): void {
  const connect = connectTimeoutMs(header.get(CONNECT_TIMEOUT));
  if (connect !== undefined && connect > maxTimeoutMs) header.set(CONNECT_TIMEOUT, String(maxTimeoutMs));
  const grpc = grpcTimeoutMs(header.get(GRPC_TIMEOUT));
  if (grpc !== undefined && grpc > maxTimeoutMs) header.set(GRPC_TIMEOUT, grpcTimeout(maxTimeoutMs));
}

/** `ms` (at most MAX_TIMER_MS) as a grpc-timeout value, whose number has at most 8 digits. */
const grpcTimeout = (ms: number) => (ms <= 99_999_999 ? `${ms}m` : `${Math.floor(ms / 1_000)}S`);

/** Which timeout header a call's protocol reads, from its request's content type. */
export const timeoutHeaderOf = (header: Headers) => (header.get("content-type")?.startsWith("application/grpc") ? GRPC_TIMEOUT : CONNECT_TIMEOUT);

/** Tells the callee `ms` in `name`, one of the headers timeoutHeaderOf names. */
export function setTimeoutHeader(header: Headers, name: string, ms: number): void {
  header.set(name, name === GRPC_TIMEOUT ? grpcTimeout(ms) : String(ms));
}

/**
 * Server interceptor that records each call's deadline, capped at `maxTimeoutMs`, for the
 * client side to read. It wraps the whole handler, so clients used inside see it.
 */
export function createDeadlineInterceptor(maxTimeoutMs: number): Interceptor {
  return (next) => (req) => {
    const timeoutMs = Math.min(timeoutFromHeaders(req.header) ?? maxTimeoutMs, maxTimeoutMs);
    const store = { deadline: Date.now() + timeoutMs };
    const pending = storage.run(store, next, req);
    // A streaming handler's body runs as its messages are pulled, after this returned.
    return streamsResponse(req.method) ? pending.then((res) => (res.stream ? { ...res, message: bind(res.message, store) } : res)) : pending;
  };
}

/** Whether the method answers with a stream, whose messages are produced after the handler returned. */
const streamsResponse = (method: { methodKind: string }) => method.methodKind === "server_streaming" || method.methodKind === "bidi_streaming";

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
