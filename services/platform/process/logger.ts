import { pino, type DestinationStream, type Logger } from "pino";
import { DrizzleQueryError } from "drizzle-orm/errors";
import { causeChain } from "../data/db-errors.js";
import type { LogLevel } from "./config.js";
import { activeTraceIds } from "./telemetry.js";

export type { Logger };

/**
 * JSON logs to stdout, one object a line, so any collector can parse them. Every line
 * carries the service name; callers add context with `logger.child()`.
 */
export function createLogger(service: string, level: LogLevel, destination?: DestinationStream): Logger {
  // trace_id and span_id on every line logged inside a traced call, to join logs to traces.
  const options = {
    name: service,
    level,
    base: { service },
    timestamp: pino.stdTimeFunctions.isoTime,
    mixin: () => activeTraceIds() ?? {},
    serializers: { err: serializeError },
  };
  return destination ? pino(options, destination) : pino(options);
}

/**
 * pino's error serializer, minus a failed query's bind parameters. drizzle writes them into
 * the error's message, stack and `params`, and they are customers' data: the order saga's
 * payload, for one, holds the payment token. The query text stays, for debugging.
 */
function serializeError(err: unknown): unknown {
  const serialized = pino.stdSerializers.err(err as Error) as unknown as Record<string, unknown>;
  for (const current of causeChain(err)) {
    if (!(current instanceof DrizzleQueryError)) continue;
    const shown = `params: ${current.params}`;
    const hidden = `params: [${current.params.length} hidden]`;
    for (const key of ["message", "stack"]) {
      if (typeof serialized[key] === "string") serialized[key] = (serialized[key] as string).split(shown).join(hidden);
    }
    if (current === err) serialized["params"] = hidden;
  }
  return serialized;
}
