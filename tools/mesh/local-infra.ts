import { fork } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { integer, type Env } from "#platform/process/config.js";
import { findNatsServer, natsInstallHint } from "../infra/local-nats.js";
import { natsUrlFor, startMeshNats, type MeshSecrets } from "./mesh-launch.js";
import { DEFAULT_CERT_LIFETIME_MS, startMeshPki, type MeshPki } from "./mesh-pki.js";
import { isListening } from "../infra/tcp.js";
import { localSecret } from "../infra/local-secrets.js";
import { legacyClusterSettings } from "../infra/legacy-database.js";

export const repoRoot = resolve(import.meta.dirname, "../..");
/** The local mesh's state: Postgres and NATS data, the PKI, the generated secrets. */
export const dataDir = join(repoRoot, ".data");
export const secretsDir = join(dataDir, "secrets");
export const pkiDir = join(dataDir, "pki");

export interface Dependency {
  name: string;
  url: string;
  /** How it was obtained, for the start-up table. */
  source: string;
  stop(): Promise<void>;
}

const nothingToStop = async () => {};

/** A Postgres cluster for local runs: the URL variable that replaces it, and where it runs embedded otherwise. */
interface LocalCluster {
  name: string;
  urlVariable: string;
  portVariable: string;
  defaultPort: number;
  /** Its data directory under .data/, and the name of its superuser's secret. */
  dir: string;
  secret: string;
  settings?: Readonly<Record<string, string>>;
}

/**
 * Postgres for local runs, as an ADMIN URL, which only provisions the services' roles:
 * DATABASE_URL if set; else embedded Postgres under .data/, whose superuser password is a
 * generated secret, reused if it is already up (say, `npm start` runs while `npm run
 * service` starts).
 */
export const resolvePostgres = (env: Env, log: (line: string) => void) =>
  resolveCluster(env, log, { name: "postgres", urlVariable: "DATABASE_URL", portVariable: "EMBEDDED_POSTGRES_PORT", defaultPort: 54329, dir: "postgres", secret: "postgres-admin" });

/**
 * The old shop's own cluster, as an ADMIN URL (it provisions the old shop's role, the
 * catalog's capture role and the publication): OLDSHOP_DATABASE_URL if set; else a second
 * embedded Postgres under .data/oldshop-postgres with logical replication on, so that the
 * replication rights the capture needs grant nothing over the mesh's data.
 */
export const resolveLegacyPostgres = (env: Env, log: (line: string) => void) =>
  resolveCluster(env, log, {
    name: "oldshop-postgres",
    urlVariable: "OLDSHOP_DATABASE_URL",
    portVariable: "EMBEDDED_OLDSHOP_POSTGRES_PORT",
    defaultPort: 54330,
    dir: "oldshop-postgres",
    secret: "oldshop-postgres-admin",
    settings: legacyClusterSettings,
  });

async function resolveCluster(env: Env, log: (line: string) => void, cluster: LocalCluster): Promise<Dependency> {
  const given = env[cluster.urlVariable];
  if (given) return { name: cluster.name, url: given, source: `${cluster.urlVariable} (admin)`, stop: nothingToStop };
  const port = integer(env, cluster.portVariable, cluster.defaultPort, { min: 1, max: 65535 });
  const password = localSecret(secretsDir, cluster.secret);
  const url = `postgres://postgres:${password}@127.0.0.1:${port}/meshwork`;
  const clusterDir = join(dataDir, cluster.dir);
  if (await isListening("127.0.0.1", port)) {
    // Only our own cluster gets the superuser's password: whatever else listens there might ask for it in cleartext.
    if (!isRunning(readFirstLine(join(clusterDir, "postmaster.pid")))) throw new Error(portTaken("Postgres", port, cluster.portVariable));
    return { name: cluster.name, url, source: "embedded, already running", stop: nothingToStop };
  }
  const args = [clusterDir, String(port), join(secretsDir, cluster.secret), ...(cluster.settings ? [JSON.stringify(cluster.settings)] : [])];
  const child = fork(join(import.meta.dirname, "../infra/local-postgres-main.ts"), args, {
    execArgv: ["--import", "tsx"],
    stdio: ["ignore", "ignore", "pipe", "ipc"],
    detached: true, // Ctrl-C reaches the supervisor only; it stops Postgres last
  });
  const stderr: string[] = [];
  child.stderr?.on("data", (chunk: Buffer) => stderr.push(chunk.toString()));
  const exited = new Promise<void>((done) => child.once("exit", () => done()));
  await new Promise<void>((ready, fail) => {
    child.once("message", () => ready());
    child.once("exit", (code) => fail(new Error(`embedded Postgres (.data/${cluster.dir}) exited (${code}):\n${stderr.join("").slice(-2000)}`)));
  });
  child.stderr?.removeAllListeners("data");
  child.stderr?.resume();
  log(`embedded Postgres up on 127.0.0.1:${port}, data in .data/${cluster.dir}`);
  return {
    name: cluster.name,
    url,
    source: `embedded, .data/${cluster.dir}`,
    async stop() {
      child.kill("SIGTERM");
      await exited;
    },
  };
}

const readFirstLine = (file: string) => {
  try {
    return readFileSync(file, "utf8").split("\n", 1)[0]!.trim();
  } catch {
    return "";
  }
};

/**
 * Whether `pid` names a live process we may signal: the server a pid file of ours says we
 * started (as root, Postgres runs as the postgres user, whom root may signal; a process of
 * another user would be EPERM, and is not ours).
 */
function isRunning(pid: string): boolean {
  if (!/^\d+$/.test(pid)) return false;
  try {
    process.kill(Number(pid), 0);
    return true;
  } catch {
    return false;
  }
}

const portTaken = (what: string, port: number, variable: string) =>
  `127.0.0.1:${port} is taken, but not by this checkout's ${what} (.data/); stop whatever listens there, or set ${variable} to another port`;

/** NATS as a launcher hands it out: each deployable's own credentialed URL. */
export interface NatsDependency extends Dependency {
  urlFor(name: string): string;
}

/**
 * NATS for local runs: NATS_URL if set (with credentials of its own: every process then
 * uses it as given); else the mesh's own nats-server on 127.0.0.1:EMBEDDED_NATS_PORT
 * (54222), with a user per deployable, started from PATH with its store under .data/nats,
 * or reused if already up. Never whatever happens to listen on 4222: an open broker there is
 * exactly what the mesh must not trust.
 */
export async function resolveNats(env: Env, log: (line: string) => void, secrets: MeshSecrets): Promise<NatsDependency> {
  const given = env["NATS_URL"];
  if (given) return { name: "nats", url: given, urlFor: () => given, source: "NATS_URL", stop: nothingToStop };
  const port = integer(env, "EMBEDDED_NATS_PORT", 54222, { min: 1, max: 65535 });
  const url = `nats://127.0.0.1:${port}`;
  const urlFor = natsUrlFor(port, secrets);
  const pidFile = join(dataDir, "nats.pid");
  if (await isListening("127.0.0.1", port)) {
    // Only the server we started gets the services' passwords, which NATS sends as they are.
    if (!isRunning(readFirstLine(pidFile))) throw new Error(portTaken("NATS", port, "EMBEDDED_NATS_PORT"));
    return { name: "nats", url, urlFor, source: "mesh's own, already running", stop: nothingToStop };
  }
  if (!findNatsServer()) throw new Error(natsInstallHint);
  const nats = await startMeshNats({ port, storeDir: join(dataDir, "nats"), secrets, detached: true });
  writeFileSync(pidFile, `${nats.process.pid}\n`, { mode: 0o600 });
  log(`started nats-server -js on ${url} with a user per service, store in .data/nats`);
  return { name: "nats", url, urlFor, source: "started, a user per service", stop: () => nats.stop() };
}

/**
 * The local mesh's PKI under .data/pki, re-issued hot (MESH_CERT_LIFETIME_MS, a day by
 * default); none under MESH_TLS=off, where a sidecar mesh holds the certificates.
 */
export function resolvePki(env: Env, log: (line: string) => void): Promise<MeshPki | undefined> {
  if (env["MESH_TLS"] === "off") return Promise.resolve(undefined);
  const lifetimeMs = integer(env, "MESH_CERT_LIFETIME_MS", DEFAULT_CERT_LIFETIME_MS, { min: 60_000, max: 90 * 24 * 3_600_000 });
  return startMeshPki(pkiDir, { lifetimeMs, log });
}
