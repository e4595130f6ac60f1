import type { ConnectRouter } from "@connectrpc/connect";
import type { DescService } from "@bufbuild/protobuf";
import { connectBus, type BusConnection } from "./messaging/connection.js";
import { startOutboxRelay } from "./messaging/outbox-relay.js";
import type { StreamSpec } from "./messaging/streams.js";
import { openDatabase, type Database } from "./data/db.js";
import type { OutboxTable } from "./messaging/outbox.js";
import { READINESS, startReadinessMonitor } from "./rpc-server/readiness.js";
import { registerInstance } from "./discovery/registry.js";
import { ServingStatus } from "./rpc-server/health.js";
import { createMetrics, type Metrics } from "./process/metrics.js";
import type { Logger } from "./process/logger.js";
import { startServer, type RunningServer } from "./rpc-server/server.js";
import type { ConnectionLimits } from "./rpc-server/connection-limits.js";
import { loadMeshCredentials, type MeshCredentials, type MeshTlsFiles } from "./trust/mesh-tls.js";
import type { PeerTls } from "./rpc-client/clients.js";
import { defaultRetention, retentionPolicies, startRetentionSweep, type RetainedTables, type RetentionSettings } from "./data/retention.js";

/** What every service process needs, whichever bounded context it serves. */
export interface ServiceRuntime {
  logger: Logger;
  databaseUrl: string;
  natsUrl: string;
  streamReplicas: number;
  host: string;
  advertiseUrl?: string | undefined;
  version?: string;
  port: number;
  maxRequestBytes: number;
  shutdownGraceMs: number;
  /** Unset: the kit's defaults (in-process tests pass none). */
  connectionLimits?: ConnectionLimits;
  trustedProxies?: readonly string[];
  /** mTLS credentials of this process, or "off" behind a sidecar mesh (then trustedProxies names the sidecar). */
  meshTls: MeshTlsFiles | "off";
  /** The plaintext port for probes and scrapes; 0 picks a free one. */
  opsPort: number;
  /** Unset: the kit's defaults (in-process tests pass none). */
  retention?: RetentionSettings;
}

/** The mesh side of a process: its credentials (none under MESH_TLS=off), as servers and clients use them. */
export interface MeshSecurity {
  readonly credentials: MeshCredentials | undefined;
  /** Client TLS that presents this process's certificate and accepts only `peer`; undefined when a sidecar does mTLS. */
  peerTls(peer: string): PeerTls | undefined;
  /** The mesh server option for startServer. */
  readonly server: { tls: MeshCredentials } | { forwardedBy: readonly string[] };
  close(): void;
}

export function createMeshSecurity(runtime: Pick<ServiceRuntime, "meshTls" | "trustedProxies" | "logger">): MeshSecurity {
  const credentials = runtime.meshTls === "off" ? undefined : loadMeshCredentials(runtime.meshTls, { logger: runtime.logger });
  return {
    credentials,
    peerTls: (peer) => credentials && { credentials, peer },
    server: credentials ? { tls: credentials } : { forwardedBy: runtime.trustedProxies ?? [] },
    close: () => credentials?.close(),
  };
}

export interface ServiceDefinition<TSchema extends Record<string, unknown>> {
  /**
   * The service's identity, as the mesh manifest names it: the `service` of its metrics, its
   * NATS connection's name, its Postgres application_name and its events' ce-source. Its logs
   * and traces are named by runService, whose logger must name the same service.
   */
  name: string;
  /** Postgres schema the service owns; not its identity (order's schema is "orders"). */
  schemaName: string;
  tables: TSchema;
  migrationsFolder: string;
  /** Services reported by grpc.health.v1. */
  services: readonly DescService[];
  /** The mesh identity that acts for customers, which alone may name one (startServer's customerAgent). */
  customerAgent?: string;
  /** The outbox whose rows a relay publishes to the service's stream. */
  outbox?: { table: OutboxTable; stream: StreamSpec };
  /** Tables besides the outbox whose old rows the retention sweep deletes. */
  retained?: Omit<RetainedTables, "outbox">;
  /**
   * Builds the service on its migrated database: returns its routes and, for background
   * work such as a saga runner, what to stop after the server drains and before the pool
   * closes, and how much of that work is under way (`backlog`, which admission control
   * weighs: calls with side effects are refused while it is past its adaptive limit).
   */
  setup(context: Database<TSchema> & { bus: BusConnection; metrics: Metrics; mesh: MeshSecurity }): Promise<{ routes: (router: ConnectRouter) => void; stop?: () => Promise<void>; backlog?: () => number }>;
}

/**
 * The shared skeleton of a service: migrate its schema, connect to NATS (in the
 * background: RPCs are served while NATS is away), relay its outbox, sweep its expired rows
 * (services/platform/data/retention.ts), set it up, serve.
 * Closing reverses the order: drain RPCs, stop background work and the relay, then close
 * the NATS connection and the pool.
 */
export async function startService<TSchema extends Record<string, unknown>>(
  runtime: ServiceRuntime,
  definition: ServiceDefinition<TSchema>,
): Promise<ServiceServer> {
  const { name } = definition;
  const logger = namingService(runtime.logger, name);
  const database = await openDatabase({
    url: runtime.databaseUrl,
    applicationName: name,
    schemaName: definition.schemaName,
    tables: definition.tables,
    migrationsFolder: definition.migrationsFolder,
    logger,
  });
  const mesh = createMeshSecurity(runtime);
  const bus = connectBus({ url: runtime.natsUrl, name, logger });
  const metrics = createMetrics(name);
  registerDatabaseMetrics(metrics, database, definition);
  const relay =
    definition.outbox &&
    startOutboxRelay({
      sql: database.sql,
      outbox: definition.outbox.table,
      schemaName: definition.schemaName,
      stream: { ...definition.outbox.stream, replicas: runtime.streamReplicas },
      source: name,
      bus,
      logger,
    });
  const retentionSettings = runtime.retention ?? defaultRetention;
  const retention = startRetentionSweep({
    sql: database.sql,
    policies: retentionPolicies(retentionSettings, { ...definition.retained, ...(definition.outbox ? { outbox: definition.outbox.table } : {}) }),
    settings: retentionSettings,
    logger,
    metrics,
  });
  let stop: (() => Promise<void>) | undefined;
  const shutDown = async () => {
    await retention.stop();
    await stop?.();
    await relay?.stop();
    await bus.close();
    await database.close();
    mesh.close();
  };
  try {
    const built = await definition.setup({ ...database, bus, metrics, mesh });
    stop = built.stop;
    const server = await startServer(
      {
        logger,
        routes: built.routes,
        services: definition.services,
        maxRequestBytes: runtime.maxRequestBytes,
        shutdownGraceMs: runtime.shutdownGraceMs,
        metrics,
        mesh: mesh.server,
        ...(definition.customerAgent ? { customerAgent: definition.customerAgent } : {}),
        ...(built.backlog ? { admission: { backlog: built.backlog } } : {}),
        ...(runtime.connectionLimits ? { connectionLimits: runtime.connectionLimits } : {}),
        ...(runtime.trustedProxies ? { trustedProxies: runtime.trustedProxies } : {}),
      },
      { host: runtime.host, port: runtime.port },
    );
    const ops = await startOpsServer({ logger, health: server.health, metrics, shutdownGraceMs: runtime.shutdownGraceMs }, { host: runtime.host, port: runtime.opsPort });
    let closing: Promise<void> | undefined;
    const readiness = startReadinessMonitor({
      health: server.health,
      names: definition.services.map((service) => service.typeName),
      probes: [
        { name: "postgres", check: () => database.sql`select 1` },
        { name: "nats", check: () => bus.ready.then(({ nc }) => nc.rtt()) },
      ],
      logger,
    });
    await readiness.firstCheck; // announce a known readiness, not a guess
    const registration = registerInstance({
      bus,
      services: definition.services.map((service) => service.typeName),
      address: runtime.advertiseUrl ?? server.url,
      version: runtime.version ?? "dev",
      health: () => ServingStatus[server.health.get(READINESS) ?? ServingStatus.NOT_SERVING] ?? "UNKNOWN",
      logger,
    });
    return {
      ...server,
      ops,
      // Leave the registry first, so peers stop choosing this instance while it drains.
      close: () => (closing ??= registration.stop().then(() => readiness.stop()).then(() => server.close()).then(() => ops.close()).then(shutDown)),
    };
  } catch (err) {
    await shutDown();
    throw err;
  }
}

/**
 * The runtime's logger, checked to be this service's: runService's names the service its
 * telemetry names, and a different name would split one service's logs and traces from its
 * metrics. A logger that names no service (a test's) is given this one.
 */
function namingService(logger: Logger, name: string): Logger {
  const named: unknown = logger.bindings()["service"];
  if (named === undefined) return logger.child({ service: name });
  if (named !== name) throw new Error(`the logger is service "${String(named)}"'s, but this is "${name}"`);
  return logger;
}

/** A running service: its mesh port, and the plaintext ops port beside it. */
export interface ServiceServer extends RunningServer {
  readonly ops: RunningServer;
}

/**
 * The ops port: grpc.health.v1 alone (sharing the mesh port's health, so probes see the
 * readiness peers see) and GET /metrics, in plaintext, because kubelet's gRPC probes and
 * Prometheus present no client certificate. It serves no RPC of the service, so nothing
 * on it needs an identity; a NetworkPolicy keeps it to probes and the scraper.
 */
export function startOpsServer(
  options: { logger: Logger; health: RunningServer["health"]; metrics: Metrics; shutdownGraceMs: number },
  listen: { host: string; port: number },
): Promise<RunningServer> {
  return startServer(
    {
      logger: options.logger.child({ server: "ops" }),
      routes: () => {},
      services: [],
      health: options.health,
      reflection: false,
      metricsEndpoint: options.metrics,
      maxRequestBytes: 4 * 1024,
      shutdownGraceMs: options.shutdownGraceMs,
    },
    listen,
  );
}

/** The pool's connections by state, and the outbox's backlog and the age of its oldest row. */
function registerDatabaseMetrics<TSchema extends Record<string, unknown>>(metrics: Metrics, database: Database<TSchema>, definition: ServiceDefinition<TSchema>) {
  const { sql } = database;
  metrics.gauge("db_pool_connections", "The pool's open Postgres connections, by state", ["state"], async () =>
    (await sql`select coalesce(state, 'unknown') as state, count(*)::int as n from pg_stat_activity where application_name = ${definition.name} and pid <> pg_backend_pid() group by 1`).map(
      (row) => ({ labels: { state: String(row["state"]) }, value: Number(row["n"]) }),
    ),
  );
  if (!definition.outbox) return;
  const table = sql(`${definition.schemaName}.outbox`);
  const backlog = async () => (await sql`select count(*)::int as n, coalesce(extract(epoch from now() - min(created_at)), 0)::float8 as age from ${table} where published_at is null`)[0];
  metrics.gauge("outbox_pending_events", "Outbox rows not yet published", [], async () => [{ value: Number((await backlog())?.["n"] ?? 0) }]);
  metrics.gauge("outbox_oldest_pending_seconds", "Age of the oldest unpublished outbox row", [], async () => [{ value: Number((await backlog())?.["age"] ?? 0) }]);
}
