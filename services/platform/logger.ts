import { pino, type DestinationStream, type Logger } from "pino";
import type { LogLevel } from "./config.js";
import { activeTraceIds } from "./telemetry.js";

export type { Logger };

/**
 * JSON logs to stdout, one object a line, so any collector can parse them. Every line
 * carries the service name; callers add context with `logger.child()`.
 */
export function createLogger(service: string, level: LogLevel, destination?: DestinationStream): Logger {
  // trace_id and span_id on every line logged inside a traced call, to join logs to traces.
  const options = { name: service, level, base: { service }, timestamp: pino.stdTimeFunctions.isoTime, mixin: () => activeTraceIds() ?? {} };
  return destination ? pino(options, destination) : pino(options);
}
