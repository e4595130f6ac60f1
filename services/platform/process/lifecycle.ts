import { ConfigError, type CommonConfig, type Env } from "./config.js";
import { createLogger, type Logger } from "./logger.js";
import { initTelemetry } from "./telemetry.js";

/** What a service's build() returns: something that can be drained and closed. */
export interface Closable {
  close(): Promise<void>;
}

/**
 * The body of every service's main.ts: read config (a bad variable exits with its name,
 * not a stack trace), build, then stop cleanly on SIGTERM or SIGINT. Orchestrators send
 * SIGTERM and wait a grace period before SIGKILL; a second signal exits at once.
 */
export async function runService<C extends CommonConfig>(
  name: string,
  loadConfig: (env: Env) => C,
  build: (config: C, logger: Logger) => Promise<Closable>,
): Promise<void> {
  let config: C;
  try {
    config = loadConfig(process.env);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    console.error(`${name}: configuration error: ${err.message}`);
    process.exit(2);
  }
  const telemetry = await initTelemetry({ serviceName: name, ...(config.otlpEndpoint ? { otlpEndpoint: config.otlpEndpoint } : {}), devTraces: config.devTraces });
  const logger = createLogger(name, config.logLevel);
  let service: Closable;
  try {
    service = await build(config, logger);
  } catch (err) {
    logger.fatal({ err }, "failed to start");
    process.exit(1);
  }
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) {
      logger.warn({ signal }, "second signal; exiting now");
      process.exit(1);
    }
    stopping = true;
    logger.info({ signal }, "shutting down");
    service
      .close()
      .then(() => telemetry.shutdown())
      .then(
      () => process.exit(0),
      (err: unknown) => {
        logger.error({ err }, "shutdown failed");
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);
  // Started by the local supervisor: if it dies without stopping us, stop as if told to.
  if (process.connected) process.once("disconnect", () => onSignal("SIGTERM"));
}
