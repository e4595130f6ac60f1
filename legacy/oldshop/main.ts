/**
 * The old shop, the legacy monolith the mesh strangles: reads its environment, serves, and
 * on SIGTERM or SIGINT (or its supervisor's IPC channel closing) finishes the requests in
 * flight and exits.
 */
import { pino } from "pino";
import { ConfigError, loadConfig } from "./src/config.js";
import { startOldShop } from "./src/server.js";

const logger = pino({ name: "oldshop", level: process.env["LOG_LEVEL"] ?? "info" });
let config;
try {
  config = loadConfig(process.env);
} catch (err) {
  if (!(err instanceof ConfigError)) throw err;
  console.error(`oldshop: configuration error: ${err.message}`);
  process.exit(2);
}
const shop = await startOldShop({ ...config, logger });
let closing: Promise<void> | undefined;
const stop = (reason: string) =>
  (closing ??= (async () => {
    logger.info({ reason }, "stopping");
    const forced = setTimeout(() => process.exit(1), 10_000).unref();
    await shop.close();
    clearTimeout(forced);
    process.exit(0);
  })());
process.on("SIGTERM", () => void stop("SIGTERM"));
process.on("SIGINT", () => void stop("SIGINT"));
// Under the supervisor: its going away without a word must not leave the old shop running.
process.on("disconnect", () => void stop("supervisor gone"));
