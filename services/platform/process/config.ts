/**
 * Typed environment readers. Services compose these inside their own `loadConfig()`, the
 * only place that reads the environment, so a bad deployment fails at start with a message
 * that names the variable instead of failing later on the first request.
 */
import { isAddressOrSubnet } from "../rpc-server/client-address.js";
import { defaultConnectionLimits, type ConnectionLimits } from "../rpc-server/connection-limits.js";
import type { MeshTlsFiles } from "../trust/mesh-tls.js";
import { defaultRetention, type RetentionSettings } from "../data/retention.js";

export type Env = Readonly<Record<string, string | undefined>>;

export class ConfigError extends Error {
  override readonly name = "ConfigError";
}

function read(env: Env, name: string): string | undefined {
  const value = env[name]?.trim();
  return value === "" ? undefined : value;
}

function requiredString(env: Env, name: string): string {
  const value = read(env, name);
  if (value === undefined) throw new ConfigError(`${name} is required but not set`);
  return value;
}

export function optionalString(env: Env, name: string, fallback: string): string {
  return read(env, name) ?? fallback;
}

export function integer(env: Env, name: string, fallback: number, range: { min: number; max: number }): number {
  const raw = read(env, name);
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < range.min || value > range.max) {
    throw new ConfigError(`${name} must be an integer from ${range.min} to ${range.max}, got "${raw}"`);
  }
  return value;
}

export function port(env: Env, name: string, fallback: number): number {
  return integer(env, name, fallback, { min: 0, max: 65535 });
}

export function url(env: Env, name: string, fallback?: string): string {
  const raw = read(env, name) ?? fallback;
  if (raw === undefined) throw new ConfigError(`${name} is required but not set`);
  try {
    new URL(raw);
  } catch {
    throw new ConfigError(`${name} must be a URL, got "${raw}"`);
  }
  return raw;
}

export function oneOf<T extends string>(env: Env, name: string, allowed: readonly T[], fallback: T): T {
  const raw = read(env, name) ?? fallback;
  if (!(allowed as readonly string[]).includes(raw)) {
    throw new ConfigError(`${name} must be one of ${allowed.join(", ")}, got "${raw}"`);
  }
  return raw as T;
}

export function requiredOneOf<T extends string>(env: Env, name: string, allowed: readonly T[]): T {
  if (read(env, name) === undefined) throw new ConfigError(`${name} is required but not set; one of ${allowed.join(", ")}`);
  return oneOf(env, name, allowed, allowed[0]!);
}

/** A comma-separated list of IP addresses and CIDR subnets; unset or blank: none. */
export function addressList(env: Env, name: string): string[] {
  const entries = (read(env, name) ?? "").split(",").map((entry) => entry.trim()).filter(Boolean);
  const bad = entries.find((entry) => !isAddressOrSubnet(entry));
  if (bad !== undefined) throw new ConfigError(`${name} must list IP addresses or CIDR subnets, got "${bad}"`);
  return entries;
}

/** Timeouts and caps on inbound connections; see ConnectionLimits for what each bounds. */
export function connectionLimits(env: Env): ConnectionLimits {
  const d = defaultConnectionLimits;
  const ms = (name: string, fallback: number) => integer(env, name, fallback, { min: 100, max: 3_600_000 });
  const count = (name: string, fallback: number) => integer(env, name, fallback, { min: 1, max: 1_000_000 });
  const limits: ConnectionLimits = {
    detectTimeoutMs: ms("PROTOCOL_DETECT_TIMEOUT_MS", d.detectTimeoutMs),
    headersTimeoutMs: ms("HEADERS_TIMEOUT_MS", d.headersTimeoutMs),
    requestTimeoutMs: ms("REQUEST_TIMEOUT_MS", d.requestTimeoutMs),
    idleTimeoutMs: ms("IDLE_TIMEOUT_MS", d.idleTimeoutMs),
    maxConnections: count("MAX_CONNECTIONS", d.maxConnections),
    maxConnectionsPerAddress: count("MAX_CONNECTIONS_PER_ADDRESS", d.maxConnectionsPerAddress),
    maxConcurrentStreams: count("MAX_CONCURRENT_STREAMS", d.maxConcurrentStreams),
    maxStreamDurationMs: integer(env, "MAX_STREAM_DURATION_MS", d.maxStreamDurationMs, { min: 1_000, max: 24 * 3_600_000 }),
  };
  // The request timeout counts from the request's first byte, headers included (Node's rule).
  if (limits.headersTimeoutMs > limits.requestTimeoutMs) {
    throw new ConfigError(`HEADERS_TIMEOUT_MS (${limits.headersTimeoutMs}) must not exceed REQUEST_TIMEOUT_MS (${limits.requestTimeoutMs})`);
  }
  return limits;
}

export const logLevels = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;
export type LogLevel = (typeof logLevels)[number];

/** Settings every Meshwork process shares. */
export interface CommonConfig {
  natsUrl: string;
  /** JetStream replicas for the streams this process creates: 1 locally, 3 in a cluster. */
  streamReplicas: number;
  /** Interface to listen on; 0.0.0.0 in a container. */
  host: string;
  logLevel: LogLevel;
  /** Bytes; larger request messages are refused with RESOURCE_EXHAUSTED. */
  maxRequestBytes: number;
  /** How long SIGTERM waits for in-flight calls before closing connections. */
  shutdownGraceMs: number;
  /** OTLP/HTTP collector for traces, e.g. http://otel-collector:4318; unset: no export. */
  otlpEndpoint: string | undefined;
  /**
   * The dev trace store to send spans to (DEV_TRACES_URL, its OTLP/HTTP traces URL, with
   * DEV_TRACES_TOKEN, which only lets spans be written), as `npm start` gives every process;
   * "in-process" in the process that holds the store. Unset where OTEL_EXPORTER_OTLP_ENDPOINT
   * is: traces then go there alone.
   */
  devTraces: DevTraces | undefined;
  /** The address peers should use, announced in the service registry; unset: the listen address. */
  advertiseUrl: string | undefined;
  /** Announced in the service registry. */
  version: string;
  /** Timeouts and caps on every inbound connection. */
  connectionLimits: ConnectionLimits;
  /**
   * The proxies or ingress in front of this process (TRUSTED_PROXIES, addresses or CIDR
   * subnets): their X-Forwarded-For names the client. Empty: the TCP peer is the client.
   */
  trustedProxies: string[];
  /** Plaintext port for grpc.health.v1 probes and /metrics scrapes (OPS_PORT); 0 picks a free one. */
  opsPort: number;
  /**
   * How the mesh port knows its callers. Files: mTLS with this process's certificate
   * (MESH_TLS=on, the default). "off": a sidecar mesh does mTLS, and the callers' identities
   * come from its x-forwarded-client-cert, believed only from TRUSTED_PROXIES.
   */
  meshTls: MeshTlsFiles | "off";
}

/**
 * A peer's address: `name` if set, else 127.0.0.1 on its default port. Under mTLS it must be
 * https://, since a cleartext address would carry calls that present and check no identity.
 */
export function peerUrl(env: Env, name: string, defaultPort: number, tls: MeshTlsFiles | "off"): string {
  const scheme = tls === "off" ? "http" : "https";
  const value = url(env, name, `${scheme}://127.0.0.1:${defaultPort}`);
  if (new URL(value).protocol !== `${scheme}:`) throw new ConfigError(`${name} must be a ${scheme}:// address ${tls === "off" ? "with MESH_TLS=off" : "under mTLS"}, got "${value}"`);
  return value;
}

/** MESH_TLS and the files it needs; off requires the sidecar's address, so it never fails open. */
export function meshTls(env: Env, trustedProxies: readonly string[]): MeshTlsFiles | "off" {
  if (oneOf(env, "MESH_TLS", ["on", "off"] as const, "on") === "off") {
    if (trustedProxies.length === 0) throw new ConfigError("MESH_TLS=off needs TRUSTED_PROXIES naming the sidecar proxy (e.g. 127.0.0.1) whose x-forwarded-client-cert names the callers");
    return "off";
  }
  return { certFile: requiredString(env, "TLS_CERT_FILE"), keyFile: requiredString(env, "TLS_KEY_FILE"), caFile: requiredString(env, "TLS_CA_FILE") };
}

/** Where a process's spans go for the dev trace viewer; see CommonConfig.devTraces. */
export type DevTraces = { url: string; token: string } | "in-process";

/** DEV_TRACES_URL with DEV_TRACES_TOKEN (both or neither), unless an OTLP collector takes the traces. */
function devTraces(env: Env): DevTraces | undefined {
  if (read(env, "OTEL_EXPORTER_OTLP_ENDPOINT") !== undefined || read(env, "DEV_TRACES_URL") === undefined) return undefined;
  const token = requiredString(env, "DEV_TRACES_TOKEN");
  if (token.length < 32) throw new ConfigError(`DEV_TRACES_TOKEN must be at least 32 characters, got ${token.length}`);
  return { url: url(env, "DEV_TRACES_URL"), token };
}

export function commonConfig(env: Env): CommonConfig {
  const trustedProxies = addressList(env, "TRUSTED_PROXIES");
  return {
    natsUrl: url(env, "NATS_URL"),
    streamReplicas: integer(env, "STREAM_REPLICAS", 1, { min: 1, max: 5 }),
    host: optionalString(env, "HOST", "127.0.0.1"),
    logLevel: oneOf(env, "LOG_LEVEL", logLevels, "info"),
    maxRequestBytes: integer(env, "MAX_REQUEST_BYTES", 1024 * 1024, { min: 1024, max: 64 * 1024 * 1024 }),
    shutdownGraceMs: integer(env, "SHUTDOWN_GRACE_MS", 10_000, { min: 0, max: 120_000 }),
    otlpEndpoint: env["OTEL_EXPORTER_OTLP_ENDPOINT"] ? url(env, "OTEL_EXPORTER_OTLP_ENDPOINT") : undefined,
    devTraces: devTraces(env),
    advertiseUrl: env["ADVERTISE_URL"] ? url(env, "ADVERTISE_URL") : undefined,
    version: optionalString(env, "SERVICE_VERSION", "dev"),
    connectionLimits: connectionLimits(env),
    trustedProxies,
    opsPort: port(env, "OPS_PORT", 0),
    meshTls: meshTls(env, trustedProxies),
  };
}

/**
 * How long the retention sweep keeps each kind of row (see services/platform/data/retention.ts).
 * RETENTION_SWEEP_MS=0 turns the sweep off. The inbox's keep period is not set directly: it
 * is derived from the streams' max age, plus RETENTION_INBOX_MARGIN_HOURS.
 */
export function retentionSettings(env: Env): RetentionSettings {
  const d = defaultRetention;
  const hour = 60 * 60 * 1000;
  const day = 24 * hour;
  return {
    sweepMs: integer(env, "RETENTION_SWEEP_MS", d.sweepMs, { min: 0, max: 24 * hour }),
    batchRows: integer(env, "RETENTION_BATCH_ROWS", d.batchRows, { min: 1, max: 100_000 }),
    outboxKeepMs: integer(env, "RETENTION_OUTBOX_HOURS", d.outboxKeepMs / hour, { min: 1, max: 24 * 3650 }) * hour,
    sagaKeepMs: integer(env, "RETENTION_SAGA_DAYS", d.sagaKeepMs / day, { min: 1, max: 3650 }) * day,
    auditKeepMs: integer(env, "RETENTION_AUDIT_DAYS", d.auditKeepMs / day, { min: 1, max: 3650 }) * day,
    inboxMarginMs: integer(env, "RETENTION_INBOX_MARGIN_HOURS", d.inboxMarginMs / hour, { min: 1, max: 24 * 365 }) * hour,
  };
}

/** What a service with a database needs: the common settings plus its DATABASE_URL. */
export interface ServiceConfig extends CommonConfig {
  databaseUrl: string;
  retention: RetentionSettings;
}

export function serviceConfig(env: Env): ServiceConfig {
  return { ...commonConfig(env), databaseUrl: url(env, "DATABASE_URL"), retention: retentionSettings(env) };
}
