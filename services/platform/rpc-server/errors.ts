import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { isDatabaseUnavailable } from "../data/db-errors.js";
import type { Logger } from "../process/logger.js";
import { DomainError, type ErrorKind } from "../domain/errors.js";

/** The status each kind of domain failure is reported with; a new kind without one fails to compile. */
const codeByKind: Record<ErrorKind, Code> = {
  invalid_argument: Code.InvalidArgument,
  not_found: Code.NotFound,
  failed_precondition: Code.FailedPrecondition,
  already_exists: Code.AlreadyExists,
  unavailable: Code.Unavailable,
};

const genericMessages = new Map<Code, string>([
  [Code.Unavailable, "a dependency is unavailable; retry later"],
  [Code.DeadlineExceeded, "a dependency did not answer in time"],
  [Code.Unknown, "internal error"],
  [Code.Internal, "internal error"],
]);

/** A domain error whose kind has a code: one built around the type checker (`as any`) has none, and is a bug. */
function isClassifiedError(err: unknown): err is DomainError {
  return err instanceof DomainError && Object.hasOwn(codeByKind, err.kind);
}

/**
 * The error as it may be passed on: its code, message and details, without its metadata.
 * A ConnectError that came back from a dependency carries that dependency's response
 * headers and trailers as metadata (content-type, content-length, date, grpc-status, ...).
 * They describe the other hop's HTTP exchange; relayed, they would become this server's
 * trailers (a gRPC trailer block with content-length makes grpc-js and curl reset the
 * stream) or, for Connect unary, its response headers (a wrong content-length for the body).
 * Nothing in them is meant for the next caller, so none of it passes.
 */
export function withoutMetadata(err: ConnectError): ConnectError {
  if (err.metadata.keys().next().done) return err;
  const relayed = new ConnectError(err.rawMessage, err.code, undefined, undefined, err.cause);
  relayed.details = err.details;
  return relayed;
}

/**
 * Maps any error to what may go on the wire. Domain errors (domain/errors.ts) keep their
 * message, which is written for clients, and get their kind's code; ConnectErrors pass
 * through with their code, message and details only (see withoutMetadata); a database that
 * cannot be reached is UNAVAILABLE; anything else is a bug whose detail stays in the log,
 * and the client sees a bare INTERNAL.
 */
export function toConnectError(err: unknown, logger: Logger): ConnectError {
  if (err instanceof ConnectError) {
    // Usually a dependency's failure surfacing through one of our clients: keep the code,
    // which tells the caller whether to retry, but not the message, which names hosts.
    const generic = genericMessages.get(err.code);
    if (!generic) return withoutMetadata(err);
    logger.warn({ err }, "dependency call failed");
    return new ConnectError(generic, err.code);
  }
  if (isClassifiedError(err)) return new ConnectError(err.message, codeByKind[err.kind]);
  if (isDatabaseUnavailable(err)) {
    // An outage, not a bug: UNAVAILABLE tells the caller a retry may succeed.
    logger.warn({ err }, "database unavailable");
    return new ConnectError(genericMessages.get(Code.Unavailable)!, Code.Unavailable);
  }
  logger.error({ err }, "unhandled error");
  return new ConnectError("internal error", Code.Internal);
}

/**
 * Server interceptor that applies `toConnectError` to every handler, so none can leak: to
 * what a unary handler throws, and to what a streaming handler throws between messages,
 * after this interceptor has already returned the stream.
 */
export function createErrorMappingInterceptor(logger: Logger): Interceptor {
  // The call's logger is made only for a failure: most calls succeed.
  const mapped = (err: unknown, rpc: string) => toConnectError(err, logger.child({ rpc }));
  return (next) => (req) => {
    let pending: ReturnType<typeof next>;
    try {
      pending = next(req);
    } catch (err) {
      return Promise.reject(mapped(err, req.url));
    }
    return pending.then(
      (res) => (res.stream ? { ...res, message: mappingErrors(res.message, (err) => mapped(err, req.url)) } : res),
      (err: unknown) => {
        throw mapped(err, req.url);
      },
    );
  };
}

/** A stream whose failure, however it comes, is thrown as `map` turns it. */
export async function* mappingErrors<T>(messages: AsyncIterable<T>, map: (err: unknown) => unknown): AsyncIterable<T> {
  try {
    yield* messages;
  } catch (err) {
    throw map(err);
  }
}
