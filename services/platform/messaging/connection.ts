import { connect, type NatsConnection } from "@nats-io/transport-node";
import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from "@nats-io/jetstream";
import type { Logger } from "../process/logger.js";

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
 * A user's private inbox prefix: replies to its requests, and deliveries of its consumers,
 * go to subjects under it, which its permissions let only that user subscribe to.
 */
export const natsInboxPrefix = (user: string) => `_INBOX_${user}`;

/** NATS_URL with its password masked, for logs. */
export function redactNatsUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = "***";
    return parsed.href;
  } catch {
    return "(unparsable NATS URL)";
  }
}

/**
 * NATS_URL is nats://<user>:<password>@host:port. nats.js ignores a URL's userinfo (it would
 * even read the port from a password that starts with digits), so the credentials are taken
 * out here and given to connect as user and pass.
 */
function connectOptions(url: string) {
  const parsed = new URL(url);
  const server = `${parsed.protocol}//${parsed.host}`;
  if (!parsed.username) return { servers: server };
  const user = decodeURIComponent(parsed.username);
  return { servers: server, user, pass: decodeURIComponent(parsed.password), inboxPrefix: natsInboxPrefix(user) };
}

/**
 * One NATS connection per process, retried forever: the first connect, and any reconnect
 * after NATS restarts. Publishes and consumers simply wait; the outbox holds events until
 * then, so an outage delays events and loses none. A refused sign-in is retried, and
 * logged, the same way.
 */
export function connectBus(options: { url: string; name: string; logger: Logger }): BusConnection {
  const { logger } = options;
  const credentials = connectOptions(options.url);
  const url = redactNatsUrl(options.url);
  let closed = false;
  let connection: NatsConnection | undefined;
  const ready = (async (): Promise<Bus> => {
    for (let attempt = 1; ; attempt++) {
      try {
        connection = await connect({
          ...credentials,
          name: options.name,
          maxReconnectAttempts: -1,
          reconnectTimeWait: 500,
          pingInterval: 10_000,
        });
        // JetStream may still be starting up after the server accepts connections.
        const bus = { nc: connection, js: jetstream(connection), jsm: await jetstreamManager(connection) };
        watchStatus(connection);
        logger.info({ url }, "connected to NATS");
        return bus;
      } catch (err) {
        await connection?.close().catch(() => {});
        if (closed) throw new Error("bus closed before it connected");
        if (attempt === 1 || attempt % 20 === 0) logger.warn({ err, url, attempt }, "NATS not reachable yet; retrying");
        await new Promise((resolve) => setTimeout(resolve, Math.min(250 * attempt, 2_000)));
      }
    }
  })();
  function watchStatus(nc: NatsConnection) {
    void (async () => {
      for await (const status of nc.status()) {
        if (status.type === "disconnect" || status.type === "reconnect") logger.info({ status: status.type }, "NATS connection status");
        // A permission the server refused, say: the operation fails too, but this names the subject.
        else if (status.type === "error") logger.warn({ err: status.error }, "NATS reported an error");
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
