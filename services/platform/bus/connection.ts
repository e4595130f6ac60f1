import { connect, type NatsConnection } from "@nats-io/transport-node";
import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from "@nats-io/jetstream";
import type { Logger } from "../logger.js";

export interface Bus {
  readonly nc: NatsConnection;
  readonly js: JetStreamClient;
  readonly jsm: JetStreamManager;
}

export interface BusConnection {
  /** Resolves once connected; services keep serving RPCs while NATS is away. */
  ready: Promise<Bus>;
  close(): Promise<void>;
}

/**
 * One NATS connection per process, retried forever: the first connect, and any reconnect
 * after NATS restarts. Publishes and consumers simply wait; the outbox holds events until
 * then, so an outage delays events and loses none.
 */
export function connectBus(options: { url: string; name: string; logger: Logger }): BusConnection {
  const { logger } = options;
  let closed = false;
  let connection: NatsConnection | undefined;
  const ready = (async (): Promise<Bus> => {
    for (let attempt = 1; ; attempt++) {
      try {
        connection = await connect({
          servers: options.url,
          name: options.name,
          maxReconnectAttempts: -1,
          reconnectTimeWait: 500,
          pingInterval: 10_000,
        });
        // JetStream may still be starting up after the server accepts connections.
        const bus = { nc: connection, js: jetstream(connection), jsm: await jetstreamManager(connection) };
        watchStatus(connection);
        logger.info({ url: options.url }, "connected to NATS");
        return bus;
      } catch (err) {
        await connection?.close().catch(() => {});
        if (closed) throw new Error("bus closed before it connected");
        if (attempt === 1 || attempt % 20 === 0) logger.warn({ err, url: options.url, attempt }, "NATS not reachable yet; retrying");
        await new Promise((resolve) => setTimeout(resolve, Math.min(250 * attempt, 2_000)));
      }
    }
  })();
  function watchStatus(nc: NatsConnection) {
    void (async () => {
      for await (const status of nc.status()) {
        if (status.type === "disconnect" || status.type === "reconnect") logger.info({ status: status.type }, "NATS connection status");
      }
    })();
  }
  ready.catch(() => {});
  return {
    ready,
    async close() {
      closed = true;
      const nc = connection;
      if (!nc || nc.isClosed()) return;
      // Drain flushes what is in flight; with NATS away it could wait forever, so bound it.
      const drained = nc.drain().then(() => true, () => false);
      const inTime = await Promise.race([drained, new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 2_000).unref())]);
      if (!inTime) await nc.close();
    },
  };
}
