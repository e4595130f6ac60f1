import { ConfigError, port, type Env } from "#platform/process/config.js";
import { freePort } from "../infra/tcp.js";
import type { MeshTlsFiles } from "#platform/trust/mesh-tls.js";
import { deployable, meshDeployables, urlVariable, type Deployable, type MeshServiceName } from "#mesh";
import { captureUrlVariable, legacyAdminUrlVariable, legacyDeployables } from "./mesh-databases.js";

export interface MeshService {
  name: string;
  port: number;
  /** Its plaintext probe and scrape port. */
  opsPort: number;
  /** Its operator listener's port, for a deployable with one (the gateway). */
  operatorPort?: number;
  /** Entry point, relative to the repository root. */
  main: string;
  /** Environment for this service alone, over the shared one (e.g. the address it advertises). */
  env?: Record<string, string>;
}

/** The deployables on the ports their variables (e.g. ORDER_PORT, ORDER_OPS_PORT) give, else the manifest's defaults. */
function meshServices(env: Env): MeshService[] {
  return meshDeployables.map((d) => ({
    name: d.name,
    main: d.main,
    port: port(env, d.port.variable, d.port.default),
    opsPort: port(env, d.opsPort.variable, d.opsPort.default),
    // OPERATOR_PORT=off: the gateway runs no operator listener.
    ...("operatorPort" in d && env[d.operatorPort.variable]?.trim() !== "off" ? { operatorPort: port(env, d.operatorPort.variable, d.operatorPort.default) } : {}),
  }));
}

/** The deployables on free ports, for a disposable mesh beside a developer's own. */
export async function meshOnFreePorts(): Promise<MeshService[]> {
  const services: MeshService[] = [];
  for (const d of meshDeployables) services.push({ name: d.name, main: d.main, port: await freePort(), opsPort: await freePort(), ...("operatorPort" in d ? { operatorPort: await freePort() } : {}) });
  return services;
}

/** The *_PORT variables (and OPERATOR_PORT) that put services where `services` says. */
export const portEnv = (services: readonly MeshService[]) =>
  Object.fromEntries(
    services.flatMap((s) => {
      const d: Deployable = deployable(s.name as MeshServiceName);
      return [[d.port.variable, String(s.port)], ...(d.operatorPort && s.operatorPort !== undefined ? [[d.operatorPort.variable, String(s.operatorPort)]] : [])];
    }),
  );

/** What each process of a mesh is given that is its own: credentials, resolved per service. */
export interface MeshCredentialSource {
  /** The service's own Postgres role's URL; undefined for a deployable without a schema. */
  databaseUrl(name: string): string | undefined;
  /** NATS with the service's own user; never asked for a legacy deployable, which uses no NATS. */
  natsUrl(name: string): string;
  /** A legacy app's capturer's own variables (the catalog: OLDSHOP_CDC_URL, its replication role's URL); none: none. */
  captureEnv?(name: string): Record<string, string>;
  /** Its certificate, key and the mesh CA; undefined under MESH_TLS=off. */
  tls(name: string): MeshTlsFiles | undefined;
  /** The gateway's token-signing secret in local auth mode. */
  gatewayAuthSecret?: string;
  /**
   * The gateway's operator listener: the secret operator tokens are signed with (local auth
   * mode), and the console's NATS URL and certificate (spiffe://meshwork/console), which its
   * backend acts with: never the operator's, which the internet-facing gateway must not hold.
   * Without it, the gateway runs no operator listener (OPERATOR_PORT=off).
   */
  operator?: { authSecret: string; consoleNatsUrl: string; consoleTls: MeshTlsFiles | undefined };
  /**
   * The dev trace store's write token: every process then sends its spans to the gateway's
   * operator listener (DEV_TRACES_URL), which keeps them for the console. Unset: none does.
   */
  devTracesToken?: string;
}

/**
 * Variables a child must never inherit from the shell that started the mesh: an admin
 * DATABASE_URL, someone else's NATS user or certificate. Each process gets its own instead.
 */
const perProcessVariables = [
  // A legacy cluster's admin URL (OLDSHOP_DATABASE_URL), and its capture role's URL, the capturer's alone.
  ...legacyDeployables.flatMap((d) => [legacyAdminUrlVariable(d.name), captureUrlVariable(d.name)]),
  "DATABASE_URL",
  "NATS_URL",
  "TLS_CERT_FILE", "TLS_KEY_FILE", "TLS_CA_FILE", "OPS_PORT", "AUTH_LOCAL_SECRET", "OPERATOR_LOCAL_SECRET", "CONSOLE_CERT_FILE", "CONSOLE_KEY_FILE", "CONSOLE_NATS_URL", "DEV_TRACES_URL", "DEV_TRACES_TOKEN"];

/** Environment every child shares: peers' addresses (https under mTLS) and the gateway's auth mode; no credential. */
export function childEnv(env: Env, services: MeshService[]): NodeJS.ProcessEnv {
  const scheme = env["MESH_TLS"] === "off" ? "http" : "https";
  const shared: NodeJS.ProcessEnv = { ...env };
  for (const name of perProcessVariables) delete shared[name];
  // Every service's address, unless the shell already set it (a proxy in the way, say).
  const urls = services.filter((s) => s.name !== "gateway").map((s) => [urlVariable(s.name), env[urlVariable(s.name)] ?? `${scheme}://127.0.0.1:${s.port}`]);
  return {
    ...shared,
    ...Object.fromEntries(urls),
    // On a developer's machine the gateway issues demo tokens; see the README.
    AUTH_MODE: env["AUTH_MODE"] ?? "local",
  };
}

const isLegacy = (name: string) => legacyDeployables.some((d) => d.name === name);

/** Each service with the environment that is its own alone, over any it already has. */
export function withOwnCredentials(services: readonly MeshService[], credentials: MeshCredentialSource): MeshService[] {
  // The gateway's operator listener receives every process's spans (and its own in-process).
  const operatorPort = services.find((s) => s.operatorPort !== undefined)?.operatorPort;
  const devTraces: Record<string, string> =
    credentials.devTracesToken && credentials.operator && operatorPort !== undefined ? { DEV_TRACES_URL: `http://127.0.0.1:${operatorPort}/v1/traces`, DEV_TRACES_TOKEN: credentials.devTracesToken } : {};
  return services.map((service) => {
    const databaseUrl = credentials.databaseUrl(service.name);
    const tls = credentials.tls(service.name);
    const own: Record<string, string> = {
      ...(isLegacy(service.name) ? {} : { NATS_URL: credentials.natsUrl(service.name) }),
      ...credentials.captureEnv?.(service.name),
      OPS_PORT: String(service.opsPort),
      ...(databaseUrl ? { DATABASE_URL: databaseUrl } : {}),
      ...(tls ? { TLS_CERT_FILE: tls.certFile, TLS_KEY_FILE: tls.keyFile, TLS_CA_FILE: tls.caFile } : {}),
      ...(service.name === "gateway" && credentials.gatewayAuthSecret ? { AUTH_LOCAL_SECRET: credentials.gatewayAuthSecret } : {}),
      ...(service.operatorPort !== undefined ? operatorEnv(credentials.operator) : {}),
      ...devTraces,
    };
    return { ...service, env: { ...own, ...service.env } };
  });
}

/** The operator listener's own: its token secret, and the console's NATS user and certificate; none: no listener. */
function operatorEnv(operator: MeshCredentialSource["operator"]): Record<string, string> {
  if (!operator) return { OPERATOR_PORT: "off" };
  return {
    OPERATOR_LOCAL_SECRET: operator.authSecret,
    CONSOLE_NATS_URL: operator.consoleNatsUrl,
    ...(operator.consoleTls ? { CONSOLE_CERT_FILE: operator.consoleTls.certFile, CONSOLE_KEY_FILE: operator.consoleTls.keyFile } : {}),
  };
}

/** For the CLIs: a bad *_PORT ends the command with the variable's name, not a stack trace. */
export function meshServicesOrExit(env: Env): MeshService[] {
  try {
    return meshServices(env);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    console.error(`meshwork: configuration error: ${err.message}`);
    process.exit(2);
  }
}
