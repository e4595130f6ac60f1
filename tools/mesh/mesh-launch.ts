import { randomBytes } from "node:crypto";
import { localSecret } from "../infra/local-secrets.js";
import { natsUserUrl, startLocalNats, type LocalNats } from "../infra/local-nats.js";
import { withOwnCredentials, type MeshService } from "./topology.js";
import { meshDeployables } from "#mesh";
import { provisionLegacyDatabases, provisionMeshDatabases } from "./mesh-databases.js";
import type { MeshPki } from "./mesh-pki.js";
import { meshNatsUsers } from "../infra/nats-accounts.js";
import { CONSOLE } from "#platform/trust/mesh-identity.js";

/** Where a launcher's per-service secrets come from. */
export interface MeshSecrets {
  /** A deployable's (or the operator's, or the console's) password for NATS or Postgres. */
  password(kind: "nats" | "postgres", name: string): string;
  /** The gateway's token-signing key in local auth mode. */
  gatewayAuthSecret(): string;
  /** The key operator tokens are signed with in local auth mode: never the customers'. */
  operatorAuthSecret(): string;
  /** The dev trace store's write token. */
  devTracesToken(): string;
}

/** Kept in `dir` (0600 files), so restarts, `npm run service` and the tools agree. */
export function persistentMeshSecrets(dir: string): MeshSecrets {
  return {
    password: (kind, name) => localSecret(dir, `${name}.${kind}`),
    gatewayAuthSecret: () => localSecret(dir, "gateway.auth"),
    operatorAuthSecret: () => localSecret(dir, "operator.auth"),
    devTracesToken: () => localSecret(dir, "dev-traces.token"),
  };
}

/** Made up for one run, for a disposable mesh that nothing else joins. */
export function ephemeralMeshSecrets(): MeshSecrets {
  const made = new Map<string, string>();
  const secret = (key: string) => made.get(key) ?? made.set(key, randomBytes(24).toString("base64url")).get(key)!;
  return {
    password: (kind, name) => secret(`${name}.${kind}`),
    gatewayAuthSecret: () => secret("gateway.auth"),
    operatorAuthSecret: () => secret("operator.auth"),
    devTracesToken: () => secret("dev-traces.token"),
  };
}

/** The NATS users of the mesh: one per deployable, the operator and the console's backend. */
const natsUsers = meshNatsUsers(meshDeployables);

/** A nats-server of the mesh's own, admitting each deployable, the operator and the console as its own user. */
export function startMeshNats(options: { port: number; storeDir: string; secrets: MeshSecrets; detached?: boolean }): Promise<LocalNats> {
  const passwords = Object.fromEntries(natsUsers.map((user) => [user.name, options.secrets.password("nats", user.name)]));
  return startLocalNats({ port: options.port, storeDir: options.storeDir, users: natsUsers, passwords, ...(options.detached ? { detached: true } : {}) });
}

/** A mesh NATS user's URL on a server of ours that is already running. */
export const natsUrlFor = (port: number, secrets: MeshSecrets) => (name: string) => natsUserUrl("127.0.0.1", port, name, secrets.password("nats", name));

/**
 * Gives each service what is its own alone: its Postgres role (provisioned now through the
 * admin URL, which goes no further), its NATS user, its certificate, and for the gateway its
 * signing key and its operator listener's credentials. The old shop's role, and the catalog's
 * capture role on the old shop's data, are provisioned on the legacy cluster's admin URL,
 * which goes no further either. With `devTraces` (npm start's, not a bench's: recording
 * every span costs CPU per order), every process sends its spans to the gateway's dev trace store.
 */
export async function withMeshCredentials(
  services: readonly MeshService[],
  options: { adminDatabaseUrl: string; legacyAdminDatabaseUrl: string; natsUrlFor: (name: string) => string; pki: MeshPki | undefined; secrets: MeshSecrets; devTraces?: boolean },
): Promise<MeshService[]> {
  const password = (name: string) => options.secrets.password("postgres", name);
  const [meshUrl, legacy] = await Promise.all([provisionMeshDatabases(options.adminDatabaseUrl, password), provisionLegacyDatabases(options.legacyAdminDatabaseUrl, password)]);
  return withOwnCredentials(services, {
    databaseUrl: (name) => meshUrl(name) ?? legacy.databaseUrl(name),
    captureEnv: legacy.captureEnv,
    natsUrl: options.natsUrlFor,
    tls: (name) => options.pki?.files(name),
    gatewayAuthSecret: options.secrets.gatewayAuthSecret(),
    // The console's own user and certificate: the gateway never gets the operator's.
    operator: { authSecret: options.secrets.operatorAuthSecret(), consoleNatsUrl: options.natsUrlFor(CONSOLE), consoleTls: options.pki?.console },
    ...(options.devTraces ? { devTracesToken: options.secrets.devTracesToken() } : {}),
  });
}
