/** postgres.js's own codes, and the socket's, for a connection that failed or went away. */
const connectionCodes = new Set(["CONNECTION_CLOSED", "CONNECTION_ENDED", "CONNECTION_DESTROYED", "CONNECT_TIMEOUT", "ECONNREFUSED", "ECONNRESET", "ECONNABORTED", "EPIPE", "ETIMEDOUT"]);

/**
 * SQLSTATEs for a server that is away or refusing work: class 08 (connection exception),
 * 57P01-57P03 (shutting down, crashed, starting up) and 53300 (too many connections). Not
 * 57P04 (the database was dropped) or 57P05 (an idle session timed out): no retry mends the
 * first, and the second fails no statement.
 */
const unavailableSqlStates = /^(08...|57P0[123]|53300)$/;

/**
 * Whether an error means the database could not be reached, rather than that a query was
 * wrong: the caller may retry later. drizzle wraps driver errors, so the cause chain is
 * followed. Every part of the kit that tells an outage from a bug asks this: the RPC edge
 * (UNAVAILABLE), the saga runner (a transient failure) and the event consumer (a nak that
 * spends none of the event's deliveries).
 */
export function isDatabaseUnavailable(err: unknown): boolean {
  for (const current of causeChain(err)) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === "string" && (connectionCodes.has(code) || unavailableSqlStates.test(code))) return true;
  }
  return false;
}

/** An error and its causes, outermost first; a few deep, as drizzle and the driver wrap. */
export function* causeChain(err: unknown): Generator<Error> {
  for (let current = err, depth = 0; current instanceof Error && depth < 5; current = current.cause, depth++) yield current;
}

/**
 * The SQLSTATE of an error the server sent (e.g. "55P03", lock not available), wrapped or not;
 * undefined for another error (a socket's EPIPE is five capitals too, but not the server's).
 */
export function sqlStateOf(err: unknown): string | undefined {
  for (const current of causeChain(err)) {
    const code = (current as { code?: unknown }).code;
    if (current.name === "PostgresError" && typeof code === "string") return code;
  }
  return undefined;
}
