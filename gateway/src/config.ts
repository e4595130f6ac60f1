import type { WatchLimits } from "./watch-slots.js";
import { deployable, meshServices, listenPort, peerUrlOf } from "#mesh";
import { ConfigError, commonConfig, integer, oneOf, optionalString, port, requiredOneOf, url, type CommonConfig, type Env, type MeshTlsFiles } from "#platform";
import { defaultMaxTokenLifetimeSeconds } from "./auth.js";

const gatewayEntry = deployable("gateway");
const statusOrder = [...gatewayEntry.calls, ...meshServices.flatMap(({ name }) => ((gatewayEntry.calls as readonly string[]).includes(name) ? [] : [name]))];

export type AuthConfig = ({ mode: "local"; secret: string } | { mode: "jwks"; jwksUrl: string; issuer: string; audience: string }) & {
  /** The longest a token may live, from its iat (or from now, without one) to its exp; unset: 24 h. */
  maxTokenLifetimeSeconds?: number;
};

/** Public in this source: whoever holds it can mint a token for any customer. */
const BUILT_IN_LOCAL_SECRET = "meshwork-local-development-secret-not-for-production";
const MIN_LOCAL_SECRET_LENGTH = 32;
const LOOPBACK_HOSTS = new Set(["127.0.0.1", "::1", "localhost"]);

/**
 * The built-in secret only where nobody else can reach the gateway; a secret of one's own
 * long enough that it cannot be guessed offline from a single token.
 */
function localSecret(env: Env, host: string): string {
  const secret = optionalString(env, "AUTH_LOCAL_SECRET", BUILT_IN_LOCAL_SECRET);
  if (secret === BUILT_IN_LOCAL_SECRET && !LOOPBACK_HOSTS.has(host)) {
    throw new ConfigError(`AUTH_LOCAL_SECRET must be set when HOST is "${host}": the built-in secret is public and only serves a gateway bound to loopback (127.0.0.1, ::1, localhost)`);
  }
  if (secret.length < MIN_LOCAL_SECRET_LENGTH) throw new ConfigError(`AUTH_LOCAL_SECRET must be at least ${MIN_LOCAL_SECRET_LENGTH} characters, got ${secret.length}`);
  return secret;
}

/**
 * How an operator proves who they are on the operator listener: a bearer JWT whose
 * `rolesClaim` (an array) holds `role`. Local mode verifies it with a secret of its own,
 * never the customers' (whoever can get a demo token must not get an operator's); JWKS
 * mode with the keys of the identity provider the customers' tokens come from, but for an
 * audience of its own (OPERATOR_AUDIENCE) and a required issuer, so no customer's token,
 * nor one another issuer signed with keys at that URL, is an operator's.
 */
export type OperatorAuthConfig = ({ mode: "local"; secret: string } | { mode: "jwks"; jwksUrl: string; issuer: string; audience: string }) & {
  rolesClaim: string;
  role: string;
  maxTokenLifetimeSeconds: number;
};

/** The operator listener: the console's operator views and OperatorService, apart from the public port. */
export interface OperatorConfig {
  host: string;
  port: number;
  auth: OperatorAuthConfig;
  /**
   * The console's certificate (spiffe://meshwork/console, CONSOLE_CERT_FILE and
   * CONSOLE_KEY_FILE) the listener's backend calls the saga admin RPCs with: never the
   * operator's, which the internet-facing gateway must not hold. Unset under MESH_TLS=off.
   */
  tls: MeshTlsFiles | undefined;
  /**
   * Whether the listener serves TLS with the gateway's own mesh certificate, and then admits
   * a client with the operator certificate as well as an operator's token (OPERATOR_TLS).
   */
  serveTls: boolean;
  /**
   * NATS as the console's user (CONSOLE_NATS_URL), for the dead letters and the strangler fig's
   * route table writes; unset: ListDeadLetters, ReplayDeadLetter and SetRoute are
   * FAILED_PRECONDITION, and ListRoutes reads the gateway's own copy of the table.
   */
  natsUrl: string | undefined;
  /** Whether it keeps the dev trace store, receiving every process's spans (DEV_TRACES_TOKEN is their write token). */
  traceIngestToken: string | undefined;
}


/**
 * The operator listener's settings; undefined where it is off. It runs where it has what it
 * needs: in local mode its own token secret (OPERATOR_LOCAL_SECRET, which npm start
 * generates per mesh), and under mTLS the console's certificate its backend calls the admin
 * RPCs with. Without them it is off, unless OPERATOR_PORT asks for it, which then fails
 * naming what is missing; OPERATOR_PORT=off turns it off whatever is set. Off loopback it
 * must serve TLS: its callers send bearer tokens.
 */
function operatorConfig(env: Env, common: CommonConfig, auth: AuthConfig): OperatorConfig | undefined {
  const asked = optionalString(env, gatewayEntry.operatorPort.variable, "");
  if (asked === "off") return undefined;
  const secret = optionalString(env, "OPERATOR_LOCAL_SECRET", "");
  const certFile = optionalString(env, "CONSOLE_CERT_FILE", "");
  const keyFile = optionalString(env, "CONSOLE_KEY_FILE", "");
  const missing = [...(auth.mode === "local" && secret === "" ? ["OPERATOR_LOCAL_SECRET"] : []), ...(common.meshTls !== "off" && (certFile === "" || keyFile === "") ? ["CONSOLE_CERT_FILE and CONSOLE_KEY_FILE"] : [])];
  if (missing.length > 0) {
    if (asked === "") return undefined;
    throw new ConfigError(`OPERATOR_PORT is set, but the operator listener needs ${missing.join(" and ")}; or set OPERATOR_PORT=off`);
  }
  const rolesClaim = optionalString(env, "OPERATOR_ROLES_CLAIM", "roles");
  const role = optionalString(env, "OPERATOR_ROLE", "operator");
  const maxTokenLifetimeSeconds = integer(env, "OPERATOR_MAX_TOKEN_LIFETIME_SECONDS", 12 * 60 * 60, { min: 60, max: 7 * 24 * 60 * 60 });
  let operatorAuth: OperatorAuthConfig;
  if (auth.mode === "local") {
    if (secret.length < MIN_LOCAL_SECRET_LENGTH) throw new ConfigError(`OPERATOR_LOCAL_SECRET must be at least ${MIN_LOCAL_SECRET_LENGTH} characters, got ${secret.length}`);
    if (secret === auth.secret || secret === BUILT_IN_LOCAL_SECRET) throw new ConfigError("OPERATOR_LOCAL_SECRET must differ from AUTH_LOCAL_SECRET and the built-in secret: whoever can get a demo token must not be able to sign an operator's");
    operatorAuth = { mode: "local", secret, rolesClaim, role, maxTokenLifetimeSeconds };
  } else {
    // Without an issuer any token the keys at AUTH_JWKS_URL verify would do, whoever issued it.
    const issuer = optionalString(env, "OPERATOR_ISSUER", auth.issuer);
    if (issuer === "") throw new ConfigError("OPERATOR_ISSUER (or AUTH_ISSUER) must be set when the operator listener verifies tokens with AUTH_MODE=jwks: operators' tokens are accepted only from a named issuer");
    const audience = optionalString(env, "OPERATOR_AUDIENCE", "meshwork-operator");
    if (audience === auth.audience) throw new ConfigError(`OPERATOR_AUDIENCE must differ from AUTH_AUDIENCE ("${audience}"): a customer's token must not be an operator's`);
    operatorAuth = { mode: "jwks", jwksUrl: auth.jwksUrl, issuer, audience, rolesClaim, role, maxTokenLifetimeSeconds };
  }
  const tls = common.meshTls === "off" ? undefined : { certFile, keyFile, caFile: common.meshTls.caFile };
  // Off in local mode: that is a developer's machine (npm start), whose browser does not trust
  // the dev CA, and the listener is on its loopback in plain HTTP. Deployed (jwks) with mesh
  // certificates, on: the operator certificate then signs in too, beside the IdP's tokens.
  const serveTls = oneOf(env, "OPERATOR_TLS", ["on", "off"] as const, common.meshTls !== "off" && auth.mode === "jwks" ? "on" : "off") === "on";
  if (serveTls && common.meshTls === "off") throw new ConfigError("OPERATOR_TLS=on serves the gateway's mesh certificate, which MESH_TLS=off leaves it without");
  const host = optionalString(env, "OPERATOR_HOST", "127.0.0.1");
  if (!serveTls && !LOOPBACK_HOSTS.has(host)) throw new ConfigError(`OPERATOR_HOST "${host}" is not loopback (127.0.0.1, ::1, localhost): off loopback the operator listener must serve TLS (OPERATOR_TLS=on), or its callers' bearer tokens cross the network in clear`);
  return {
    host,
    port: port(env, gatewayEntry.operatorPort.variable, gatewayEntry.operatorPort.default),
    auth: operatorAuth,
    tls,
    serveTls,
    natsUrl: env["CONSOLE_NATS_URL"] ? url(env, "CONSOLE_NATS_URL") : undefined,
    traceIngestToken: common.devTraces === undefined || common.devTraces === "in-process" ? undefined : common.devTraces.token,
  };
}

/** Where every other deployable listens, by name: the peers the gateway calls, and those whose health it reports. */
export type MeshUrls = Record<(typeof gatewayEntry)["calls"][number], string> & Record<string, string>;

export interface GatewayConfig extends CommonConfig {
  port: number;
  /** Where every other deployable listens: the gateway calls some and reports the health of all. */
  meshUrls: MeshUrls;
  auth: AuthConfig;
  /** Sustained calls per second per client, and the burst above it. */
  rateLimit: { perSecond: number; burst: number };
  corsOrigins: string[];
  /** The longest deadline a public caller may ask for. */
  maxTimeoutMs: number;
  /** Open WatchOrder streams per customer and per client address. */
  watchLimits: WatchLimits;
  /** Unset: OPERATOR_PORT=off. */
  operator: OperatorConfig | undefined;
}

/** The only place the gateway reads the environment. */
export function loadConfig(env: Env): GatewayConfig {
  // No default: demo tokens for anyone must be asked for, never fallen into.
  const mode = requiredOneOf(env, "AUTH_MODE", ["local", "jwks"] as const);
  const common = commonConfig(env);
  const maxTokenLifetimeSeconds = integer(env, "AUTH_MAX_TOKEN_LIFETIME_SECONDS", defaultMaxTokenLifetimeSeconds, { min: 60, max: 30 * 24 * 60 * 60 });
  const auth: AuthConfig =
    mode === "local"
      ? { mode, secret: localSecret(env, common.host), maxTokenLifetimeSeconds }
      : { mode, jwksUrl: url(env, "AUTH_JWKS_URL"), issuer: optionalString(env, "AUTH_ISSUER", ""), audience: optionalString(env, "AUTH_AUDIENCE", "meshwork"), maxTokenLifetimeSeconds };
  const operator = operatorConfig(env, common, auth);
  return {
    ...common,
    // The gateway holds the dev trace store (on its operator listener): its own spans go there in-process.
    devTraces: operator?.traceIngestToken ? "in-process" : common.devTraces,
    // The public edge gets a tighter body limit than the internal services.
    maxRequestBytes: integer(env, "MAX_REQUEST_BYTES", 64 * 1024, { min: 1024, max: 16 * 1024 * 1024 }),
    port: listenPort(env, "gateway"),
    // The peers it calls first, then the rest: the order the mesh status lists them in.
    meshUrls: Object.fromEntries(statusOrder.map((name) => [name, peerUrlOf(env, name, common.meshTls)])) as MeshUrls,
    auth,
    rateLimit: {
      perSecond: integer(env, "RATE_LIMIT_PER_SECOND", 20, { min: 1, max: 100_000 }),
      burst: integer(env, "RATE_LIMIT_BURST", 40, { min: 1, max: 100_000 }),
    },
    corsOrigins: optionalString(env, "CORS_ORIGINS", "*").split(",").map((o) => o.trim()).filter(Boolean),
    maxTimeoutMs: integer(env, "MAX_TIMEOUT_MS", 10_000, { min: 100, max: 120_000 }),
    // A customer follows the few orders it just placed; an address may carry many customers
    // (an office behind NAT; the chaos load holds about 120 watches from 127.0.0.1).
    watchLimits: {
      perCustomer: integer(env, "WATCH_MAX_PER_CUSTOMER", 16, { min: 1, max: 1_000_000 }),
      perAddress: integer(env, "WATCH_MAX_PER_ADDRESS", 256, { min: 1, max: 1_000_000 }),
    },
    operator,
  };
}
