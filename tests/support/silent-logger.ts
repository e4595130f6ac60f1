import { pino } from "pino";

/** The logger tests hand to what they start: silent unless TEST_LOG_LEVEL asks otherwise. */
export const silentLogger = pino({ level: process.env["TEST_LOG_LEVEL"] ?? "silent" });
